package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgstream/pgstream/replication"
)

// ErrSlotLost is returned by Run when the server invalidated the slot (wal_status lost): the WAL
// after the checkpoint is gone, and streaming on would skip it.
var ErrSlotLost = errors.New("replication slot lost")

// SlotState is the replication slot and the server settings that decide whether it is safe, as
// last polled.
type SlotState struct {
	Polled             time.Time `json:"polled"`
	WALStatus          string    `json:"wal_status"`              // reserved, extended, unreserved, lost
	SafeWALSize        *int64    `json:"safe_wal_size,omitempty"` // nil: unlimited
	RetainedWAL        int64     `json:"retained_wal_bytes"`      // current WAL position - restart_lsn
	ServerVersion      string    `json:"server_version"`
	WalSenderTimeout   string    `json:"wal_sender_timeout"`
	MaxSlotWALKeepSize string    `json:"max_slot_wal_keep_size"`
	// MaxSlotWALKeepBytes is max_slot_wal_keep_size in bytes; -1: unlimited.
	MaxSlotWALKeepBytes int64 `json:"max_slot_wal_keep_bytes"`
	InRecovery          bool  `json:"in_recovery"`
	// Failover reports whether the slot is a failover slot; nil before PostgreSQL 17, which has none.
	Failover *bool `json:"failover,omitempty"`
	// SynchronizedStandbySlots is the server's synchronized_standby_slots (PostgreSQL 17+): the
	// physical slots of the standbys that receive WAL before pgstream does.
	SynchronizedStandbySlots string `json:"synchronized_standby_slots,omitempty"`
}

// slotWatch polls the slot every interval on an ordinary connection of its own, reports it to
// the metrics and the health board (component "slot"), tells endangered when the slot's WAL is in
// danger, and ends with ErrSlotLost when the server invalidated the slot.
type slotWatch struct {
	p        *Pipeline
	interval time.Duration
	minSafe  int64 // safe_wal_size below this makes the slot not ready; 0: a fifth of max_slot_wal_keep_size
	// endangered, when set, is called on the watch's goroutine after every poll that finds the
	// slot's WAL in danger: wal_status unreserved, or safe_wal_size under margin.
	endangered func(st SlotState, margin int64)

	mu    sync.Mutex
	state SlotState
}

func (w *slotWatch) last() SlotState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

// run polls until ctx ends. Failures to poll are logged and retried.
func (w *slotWatch) run(ctx context.Context) error {
	p := w.p
	var conn *pgconn.PgConn
	defer func() { closeSQL(conn) }()
	t := time.NewTicker(w.interval)
	defer t.Stop()
	warned := false
	for {
		if conn == nil || conn.IsClosed() {
			c, err := replication.NewSQLConn(ctx, p.src)
			if err != nil && ctx.Err() == nil {
				p.log.Warn("slot watch: connect failed", zap.Error(err))
			}
			conn = c
		}
		if conn != nil {
			st, err := PollSlot(ctx, conn, p.src.Slot)
			switch {
			case err != nil:
				if ctx.Err() == nil {
					p.log.Warn("slot watch: reading the slot failed", zap.Error(err))
				}
			default:
				if !warned {
					warned = true
					w.warnSettings(st)
				}
				if err := w.report(st); err != nil {
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// warnSettings logs, once, settings that make losing the slot likely.
func (w *slotWatch) warnSettings(st SlotState) {
	log := w.p.log
	if st.MaxSlotWALKeepSize == "-1" {
		log.Warn("max_slot_wal_keep_size is -1 (unlimited): if pgstream stops for long, the slot keeps WAL until the server's disk is full; set a limit and watch pgstream_slot_safe_wal_bytes",
			zap.String("max_slot_wal_keep_size", st.MaxSlotWALKeepSize))
	}
	if st.SafeWALSize != nil && *st.SafeWALSize < w.margin(st) {
		log.Warn("the slot is close to max_slot_wal_keep_size already: its WAL may be removed before pgstream catches up",
			zap.Int64("safe_wal_size", *st.SafeWALSize), zap.Int64("margin", w.margin(st)))
	}
}

// margin is the safe_wal_size under which the slot is not ready.
func (w *slotWatch) margin(st SlotState) int64 {
	if w.minSafe > 0 {
		return w.minSafe
	}
	if st.MaxSlotWALKeepBytes > 0 {
		return st.MaxSlotWALKeepBytes / 5
	}
	return 0
}

// report publishes st, tells endangered when the slot's WAL is in danger, and returns ErrSlotLost
// when the slot is lost.
func (w *slotWatch) report(st SlotState) error {
	p := w.p
	w.mu.Lock()
	w.state = st
	w.mu.Unlock()
	var safe *float64
	if st.SafeWALSize != nil {
		v := float64(*st.SafeWALSize)
		safe = &v
	}
	p.metrics.Slot(float64(st.RetainedWAL), safe, st.WALStatus)
	switch {
	case st.WALStatus == "lost":
		err := fmt.Errorf("%w: the server removed WAL that slot %s still needed (wal_status lost): the changes in it are gone. "+
			"Ways out: drop the slot and remove the checkpoint, then start again with snapshot.mode initial to re-read every table",
			ErrSlotLost, p.src.Slot)
		p.health.SetErr(ComponentSlot, err)
		return err
	case st.WALStatus == "unreserved":
		p.health.Set(ComponentSlot, false, "wal_status unreserved: the server will remove WAL the slot needs at its next checkpoint unless pgstream catches up")
		p.log.Warn("replication slot WAL unreserved: the slot is about to be invalidated", zap.String("slot", p.src.Slot),
			zap.Int64("retained_wal_bytes", st.RetainedWAL))
	case st.SafeWALSize != nil && *st.SafeWALSize < w.margin(st):
		p.health.Set(ComponentSlot, false, fmt.Sprintf("safe_wal_size %d bytes is under the margin of %d bytes (wal_guard.min_safe_wal_size): "+
			"the server may soon remove WAL the slot needs", *st.SafeWALSize, w.margin(st)))
	default:
		p.health.Set(ComponentSlot, true, "")
		return nil
	}
	if w.endangered != nil {
		w.endangered(st, w.margin(st))
	}
	return nil
}

// PollSlot reads the slot and the settings that matter for it on conn, an ordinary connection.
func PollSlot(ctx context.Context, conn *pgconn.PgConn, slot string) (SlotState, error) {
	const q = `SELECT coalesce(s.wal_status, ''), coalesce(s.safe_wal_size::text, ''),
  coalesce((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END - s.restart_lsn)::bigint::text, '0'),
  current_setting('server_version'), current_setting('wal_sender_timeout'), current_setting('max_slot_wal_keep_size'),
  pg_is_in_recovery()::text,
  (SELECT CASE WHEN setting::bigint < 0 THEN -1 ELSE setting::bigint * 1024 * 1024 END FROM pg_settings WHERE name = 'max_slot_wal_keep_size')::text,
  coalesce(to_jsonb(s) ->> 'failover', ''), coalesce(current_setting('synchronized_standby_slots', true), '')
FROM pg_replication_slots s WHERE s.slot_name = $1`
	res := conn.ExecParams(ctx, q, [][]byte{[]byte(slot)}, nil, nil, nil).Read()
	if res.Err != nil {
		return SlotState{}, res.Err
	}
	if len(res.Rows) == 0 {
		return SlotState{}, fmt.Errorf("slot %s does not exist", slot)
	}
	r := res.Rows[0]
	st := SlotState{Polled: time.Now(), WALStatus: string(r[0]), ServerVersion: string(r[3]), WalSenderTimeout: string(r[4]),
		MaxSlotWALKeepSize: string(r[5]), InRecovery: string(r[6]) == "true", SynchronizedStandbySlots: string(r[9])}
	if len(r[8]) > 0 { // the failover column exists (PostgreSQL 17+)
		f := string(r[8]) == "true"
		st.Failover = &f
	}
	if len(r[1]) > 0 {
		v, err := strconv.ParseInt(string(r[1]), 10, 64)
		if err != nil {
			return SlotState{}, fmt.Errorf("safe_wal_size %q: %w", r[1], err)
		}
		st.SafeWALSize = &v
	}
	var err error
	if st.MaxSlotWALKeepBytes, err = strconv.ParseInt(string(r[7]), 10, 64); err != nil {
		return SlotState{}, fmt.Errorf("max_slot_wal_keep_size %q: %w", r[7], err)
	}
	retained, err := strconv.ParseInt(string(r[2]), 10, 64)
	if err != nil {
		return SlotState{}, fmt.Errorf("retained WAL %q: %w", r[2], err)
	}
	st.RetainedWAL = retained
	return st, nil
}
