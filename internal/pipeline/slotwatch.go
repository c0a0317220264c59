package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/replication"
)

// ErrSlotLost is returned by Run when the server invalidated the slot (wal_status lost, or an
// invalidation_reason): streaming on would skip what the slot no longer holds.
var ErrSlotLost = errors.New("replication slot lost")

// SlotState is the replication slot and the server settings that decide whether it is safe, as
// last polled. A field of a column or setting the server's version lacks stays zero (and out of
// the JSON where marked omitempty).
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
	// Conflicting (PostgreSQL 16 and later; nil before): the server invalidated the slot for a
	// conflict with recovery.
	Conflicting *bool `json:"conflicting,omitempty"`
	// InactiveSince (PostgreSQL 17 and later) is when the slot was last released by its consumer;
	// nil while one streams from it, and before 17.
	InactiveSince *time.Time `json:"inactive_since,omitempty"`
	// InvalidationReason (PostgreSQL 17 and later) is why the server invalidated the slot:
	// wal_removed, rows_removed, wal_level_insufficient, idle_timeout; "" while it is valid.
	InvalidationReason string `json:"invalidation_reason,omitempty"`
	// IdleReplicationSlotTimeout is the setting as the server shows it (PostgreSQL 18 and later;
	// "" before), IdleTimeoutSeconds the same in seconds; 0 disables it.
	IdleReplicationSlotTimeout string `json:"idle_replication_slot_timeout,omitempty"`
	IdleTimeoutSeconds         int64  `json:"idle_replication_slot_timeout_seconds,omitempty"`
	restartNull                bool   // restart_lsn is null: the server removed the slot's WAL
}

// Invalidated returns why the server invalidated the slot, "" while it is usable
// (replication.InvalidationCause).
func (st SlotState) Invalidated() string {
	return replication.InvalidationCause(st.WALStatus, st.InvalidationReason, st.Conflicting != nil && *st.Conflicting, st.restartNull)
}

// IdleTimeout is idle_replication_slot_timeout; 0 when disabled or unknown to the server.
func (st SlotState) IdleTimeout() time.Duration {
	return time.Duration(st.IdleTimeoutSeconds) * time.Second
}

// slotWatch polls the slot every interval on an ordinary connection of its own, reports it to
// the metrics and the health board (component "slot"), tells endangered when the slot's WAL is in
// danger, and ends with ErrSlotLost when the server invalidated the slot.
type slotWatch struct {
	src             replication.Config
	log             *zap.Logger
	obs             observers
	interval        time.Duration
	minSafe         int64         // safe_wal_size below this makes the slot not ready; 0: a fifth of max_slot_wal_keep_size
	reconnectMax    time.Duration // pipeline.reconnect_max: the longest the slot is idle between reconnect attempts
	initialSnapshot func() bool   // reports whether the initial snapshot is being read, with the slot idle meanwhile
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
	conn := sqlConn{src: w.src}
	defer conn.close()
	t := time.NewTicker(w.interval)
	defer t.Stop()
	warned := false
	for {
		c, err := conn.get(ctx)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("slot watch: connect failed", zap.Error(err))
		}
		if err == nil {
			st, err := PollSlot(ctx, c, w.src.Slot)
			switch {
			case err != nil:
				if ctx.Err() == nil {
					w.log.Warn("slot watch: reading the slot failed", zap.Error(err))
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

// warnSettings logs, once, settings that make losing the slot likely, each with what to change.
func (w *slotWatch) warnSettings(st SlotState) {
	log := w.log
	if st.MaxSlotWALKeepSize == "-1" {
		log.Warn("max_slot_wal_keep_size is -1 (unlimited): if pgstream stops for long, the slot keeps WAL until the server's disk is full; set a limit and watch pgstream_slot_safe_wal_bytes",
			zap.String("max_slot_wal_keep_size", st.MaxSlotWALKeepSize))
	}
	if st.SafeWALSize != nil && *st.SafeWALSize < w.margin(st) {
		log.Warn("the slot is close to max_slot_wal_keep_size already: its WAL may be removed before pgstream catches up",
			zap.Int64("safe_wal_size", *st.SafeWALSize), zap.Int64("margin", w.margin(st)))
	}
	for _, msg := range idleTimeoutRisks(st.IdleTimeout(), w.reconnectMax, w.initialSnapshot != nil && w.initialSnapshot()) {
		log.Warn(msg, zap.String("idle_replication_slot_timeout", st.IdleReplicationSlotTimeout), zap.Duration("reconnect_max", w.reconnectMax))
	}
}

// idleTimeoutRisks returns a warning for each way an idle_replication_slot_timeout of timeout (0:
// disabled) may invalidate the slot of a pgstream that is working as configured: a wait between
// reconnect attempts (up to reconnectMax) as long as the timeout, and an initial snapshot being
// read (snapshotting), during which no walsender holds the slot. Each says what to change.
func idleTimeoutRisks(timeout, reconnectMax time.Duration, snapshotting bool) []string {
	if timeout <= 0 {
		return nil
	}
	var risks []string
	if timeout <= reconnectMax {
		risks = append(risks, fmt.Sprintf("idle_replication_slot_timeout (%s) is not longer than pipeline.reconnect_max (%s): "+
			"while pgstream waits to reconnect the slot is idle, and the server invalidates it at its next checkpoint once the timeout has passed; "+
			"raise idle_replication_slot_timeout well above pipeline.reconnect_max (ALTER SYSTEM SET idle_replication_slot_timeout = '1d'; SELECT pg_reload_conf()), "+
			"set it to 0, or lower pipeline.reconnect_max", timeout, reconnectMax))
	}
	if snapshotting {
		risks = append(risks, fmt.Sprintf("idle_replication_slot_timeout (%s) is set while the initial snapshot is read: "+
			"no walsender holds the slot until streaming starts after the snapshot, so a snapshot that takes longer than the timeout loses the slot; "+
			"set idle_replication_slot_timeout to 0, or well above the snapshot's duration, until the snapshot is done (ALTER SYSTEM SET idle_replication_slot_timeout = 0; SELECT pg_reload_conf())", timeout))
	}
	return risks
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
	w.mu.Lock()
	w.state = st
	w.mu.Unlock()
	var safe *float64
	if st.SafeWALSize != nil {
		v := float64(*st.SafeWALSize)
		safe = &v
	}
	w.obs.metrics.Slot(float64(st.RetainedWAL), safe, st.WALStatus)
	switch {
	case st.Invalidated() != "":
		err := slotLostError(w.src.Slot, st.Invalidated())
		w.obs.health.SetErr(ComponentSlot, err)
		return err
	case st.WALStatus == "unreserved":
		w.obs.health.Set(ComponentSlot, false, "wal_status unreserved: the server will remove WAL the slot needs at its next checkpoint unless pgstream catches up")
		w.log.Warn("replication slot WAL unreserved: the slot is about to be invalidated", zap.String("slot", w.src.Slot),
			zap.Int64("retained_wal_bytes", st.RetainedWAL))
	case st.SafeWALSize != nil && *st.SafeWALSize < w.margin(st):
		w.obs.health.Set(ComponentSlot, false, fmt.Sprintf("safe_wal_size %d bytes is under the margin of %d bytes (wal_guard.min_safe_wal_size): "+
			"the server may soon remove WAL the slot needs", *st.SafeWALSize, w.margin(st)))
	default:
		w.obs.health.Set(ComponentSlot, true, "")
		return nil
	}
	if w.endangered != nil {
		w.endangered(st, w.margin(st))
	}
	return nil
}

// slotLostError is ErrSlotLost for slot, invalidated for cause (replication.InvalidationCause),
// with what it means and the way out.
func slotLostError(slot, cause string) error {
	what, avoid := replication.Invalidation(cause)
	return fmt.Errorf("%w: slot %s (invalidated: %s): %s; the changes after pgstream's checkpoint can no longer be streamed from it. "+
		"Way out: drop the slot (SELECT pg_drop_replication_slot(%s)) and remove the checkpoint, then start again with snapshot.mode initial to re-read every table. "+
		"To avoid it: %s", ErrSlotLost, slot, cause, what, pgsql.QuoteLiteral(slot), avoid)
}

// pollSlotSQL reads the slot (whole, so that the columns of every server version are seen) and the
// settings that matter for it. current_setting(…, true) is NULL for a setting the server lacks.
const pollSlotSQL = `SELECT ` + replication.SlotRowSQL + `,
  coalesce((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END - s.restart_lsn)::bigint::text, '0'),
  current_setting('server_version'), current_setting('wal_sender_timeout'), current_setting('max_slot_wal_keep_size'),
  pg_is_in_recovery()::text,
  (SELECT CASE WHEN setting::bigint < 0 THEN -1 ELSE setting::bigint * 1024 * 1024 END FROM pg_settings WHERE name = 'max_slot_wal_keep_size')::text,
  coalesce(current_setting('idle_replication_slot_timeout', true), ''),
  coalesce((SELECT setting || ' ' || coalesce(unit, '') FROM pg_settings WHERE name = 'idle_replication_slot_timeout'), ''),
  coalesce(current_setting('synchronized_standby_slots', true), '')
FROM pg_replication_slots s WHERE s.slot_name = $1`

// PollSlot reads the slot and the settings that matter for it on conn, an ordinary connection.
func PollSlot(ctx context.Context, conn *pgconn.PgConn, slot string) (SlotState, error) {
	res := conn.ExecParams(ctx, pollSlotSQL, [][]byte{[]byte(slot)}, nil, nil, nil).Read()
	if res.Err != nil {
		return SlotState{}, res.Err
	}
	if len(res.Rows) == 0 {
		return SlotState{}, fmt.Errorf("slot %s does not exist", slot)
	}
	st, err := parseSlotPoll(res.Rows[0])
	if err != nil {
		return SlotState{}, fmt.Errorf("slot %s: %w", slot, err)
	}
	st.Polled = time.Now()
	return st, nil
}

// parseSlotPoll decodes a row of pollSlotSQL.
func parseSlotPoll(r [][]byte) (SlotState, error) {
	if len(r) != 10 {
		return SlotState{}, fmt.Errorf("%d columns, want 10", len(r))
	}
	si, err := replication.ParseSlotRow(r[0])
	if err != nil {
		return SlotState{}, err
	}
	st := SlotState{WALStatus: si.WALStatus, SafeWALSize: si.SafeWALSize, Conflicting: si.Conflicting, InvalidationReason: si.InvalidationReason,
		ServerVersion: string(r[2]), WalSenderTimeout: string(r[3]), MaxSlotWALKeepSize: string(r[4]), InRecovery: string(r[5]) == "true",
		IdleReplicationSlotTimeout: string(r[7]), SynchronizedStandbySlots: string(r[9]), restartNull: si.RestartLSN == 0}
	var failover struct {
		Failover *bool `json:"failover"` // the column exists from PostgreSQL 17 on
	}
	if err := json.Unmarshal(r[0], &failover); err == nil {
		st.Failover = failover.Failover
	}
	if !si.InactiveSince.IsZero() {
		since := si.InactiveSince
		st.InactiveSince = &since
	}
	if st.RetainedWAL, err = strconv.ParseInt(string(r[1]), 10, 64); err != nil {
		return SlotState{}, fmt.Errorf("retained WAL %q: %w", r[1], err)
	}
	if st.MaxSlotWALKeepBytes, err = strconv.ParseInt(string(r[6]), 10, 64); err != nil {
		return SlotState{}, fmt.Errorf("max_slot_wal_keep_size %q: %w", r[6], err)
	}
	if len(r[8]) > 0 {
		d, err := settingDuration(string(r[8]))
		if err != nil {
			return SlotState{}, fmt.Errorf("idle_replication_slot_timeout: %w", err)
		}
		st.IdleTimeoutSeconds = int64(d / time.Second)
	}
	return st, nil
}

// settingDuration reads a time setting from pg_settings' "setting unit" (for example "60 s",
// "5 min", "200 ms"); a setting without a unit is in seconds.
func settingDuration(v string) (time.Duration, error) {
	num, unit, _ := strings.Cut(v, " ")
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("setting %q: %w", v, err)
	}
	per := map[string]time.Duration{"": time.Second, "us": time.Microsecond, "ms": time.Millisecond, "s": time.Second,
		"min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	d, ok := per[unit]
	if !ok {
		return 0, fmt.Errorf("setting %q: unknown unit %q", v, unit)
	}
	return time.Duration(n) * d, nil
}
