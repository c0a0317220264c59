package pipeline

import (
	"context"
	"fmt"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/inspect"
	"github.com/pgstream/pgstream/replication"
)

// StartState is what pgstream finds at start-up (the server, its slot and the checkpoint) and what
// a run decides from them. Inspect fills it without changing anything, for run and check alike.
type StartState struct {
	System replication.SystemInfo
	// Problems are the preflight's findings: a run refuses to start while there are any.
	Problems   []inspect.Problem
	Slot       replication.SlotInfo
	Checkpoint checkpoint.Checkpoint
	Found      bool // a checkpoint exists
	// CreateSlot reports a first start (no checkpoint, no slot): a run creates the slot, exporting
	// its snapshot when Snapshot is set, and starts at its consistent point.
	CreateSlot bool
	// Snapshot reports that a run snapshots the published tables: there is no checkpoint yet and
	// snapshot.mode is not never.
	Snapshot bool
	// Start is where streaming resumes; zero when CreateSlot.
	Start checkpoint.Start
	// Standby reports that the server is a hot standby (pg_is_in_recovery()): decoding runs on it,
	// and what pgstream writes goes to source.primary_url.
	Standby bool
}

// Inspect reads the server (preflight), the slot and the checkpoint on conn, identified as sys, and
// decides as a run with cfg does where streaming starts. It changes nothing on the server or in the
// store. An error is a refusal a run would stop with (a lost or foreign slot, a checkpoint that does
// not match the server) or a failure to read; preflight findings are not errors, but
// StartState.Problems. On a standby without source.primary_url, the features that write into the
// WAL (heartbeats, snapshots read while streaming, new tables, the signal table) are findings too,
// and so is a role that may not write the heartbeats cfg asks for.
func Inspect(ctx context.Context, conn *replication.Conn, sys replication.SystemInfo, store Store, cfg Config) (StartState, error) {
	cfg = cfg.WithDefaults()
	mode := cfg.Snapshot.Mode
	st := StartState{System: sys, Problems: inspect.Preflight(ctx, conn)}
	var err error
	if st.Standby, err = inspect.InRecovery(ctx, conn.PgConn()); err != nil {
		return st, err
	}
	if st.Slot, err = conn.SlotInfo(ctx); err != nil {
		return st, err
	}
	if st.Checkpoint, st.Found, err = store.Load(); err != nil {
		return st, fmt.Errorf("load checkpoint: %w", err)
	}
	if st.Standby {
		st.Problems = append(st.Problems, standbyWriteProblems(cfg, conn.Config(), st)...)
	}
	if heartbeatsOn(cfg) && !inspect.HasCheck(st.Problems, "heartbeat") {
		probs, err := heartbeatGrant(ctx, cfg.Heartbeat, conn.Config())
		if err != nil {
			return st, err
		}
		st.Problems = append(st.Problems, probs...)
	}
	if st.Found {
		// The server's WAL end is read after the checkpoint: a pgstream streaming meanwhile (check
		// and status run beside one) moves its checkpoint up to positions the server had written
		// after an earlier IDENTIFY_SYSTEM, which would look like a database gone back in time.
		if st.System, err = conn.IdentifySystem(ctx); err != nil {
			return st, err
		}
		sys = st.System
	}
	st.Snapshot = !st.Found && mode != SnapshotNever
	if !st.Found && !st.Slot.Exists {
		st.CreateSlot = true
		return st, nil
	}
	if st.Slot.Exists {
		// An existing slot must use pgoutput, belong to this database and not be lost.
		if err := conn.CheckSlot(ctx, st.Slot); err != nil {
			return st, err
		}
	}
	srv, err := ServerState(ctx, conn, sys, st.Slot, st.Checkpoint, st.Found)
	if err != nil {
		return st, err
	}
	st.Start, err = store.Reconcile(st.Checkpoint, st.Found, srv)
	return st, promotedHint(err, st.Checkpoint, sys)
}

// ServerState describes the server and its slot as checkpoint.Reconcile needs them. It asks for
// the server's timeline history only when the checkpoint (found) was taken on another timeline.
func ServerState(ctx context.Context, conn *replication.Conn, sys replication.SystemInfo, slot replication.SlotInfo,
	cp checkpoint.Checkpoint, found bool) (checkpoint.Server, error) {
	srv := checkpoint.Server{SystemID: sys.SystemID, Database: sys.DBName, Slot: slot.Name,
		SlotExists: slot.Exists || slot.Created, SlotCreated: slot.Created, SlotConfirmedFlush: slot.ConfirmedFlush,
		WALEnd: sys.XLogPos, Timeline: sys.Timeline}
	if found && cp.Timeline != 0 && cp.Timeline < sys.Timeline {
		h, err := conn.TimelineHistory(ctx, sys.Timeline)
		if err != nil {
			return srv, fmt.Errorf("read the server's timeline history: %w", err)
		}
		for _, s := range h {
			srv.History = append(srv.History, checkpoint.TimelineSwitch{Timeline: s.Timeline, End: s.End})
		}
	}
	return srv, nil
}

// heartbeatsOn reports whether a run with cfg writes heartbeats.
func heartbeatsOn(cfg Config) bool {
	return cfg.Heartbeat.Interval > 0 && cfg.Snapshot.Mode != SnapshotInitialOnly
}
