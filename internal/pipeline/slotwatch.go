package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/internal/inspect"
	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/replication"
)

// ErrSlotLost is returned by Run when the server invalidated the slot (wal_status lost, or an
// invalidation_reason): streaming on would skip what the slot no longer holds.
var ErrSlotLost = errors.New("replication slot lost")

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
	endangered func(st inspect.SlotState, margin int64)

	mu    sync.Mutex
	state inspect.SlotState
}

func (w *slotWatch) last() inspect.SlotState {
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
			st, err := inspect.PollSlot(ctx, c, w.src.Slot)
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
func (w *slotWatch) warnSettings(st inspect.SlotState) {
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
func (w *slotWatch) margin(st inspect.SlotState) int64 {
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
func (w *slotWatch) report(st inspect.SlotState) error {
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
