package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/inspect"
	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/replication"
)

// Decoding on a hot standby (PostgreSQL 16 and newer, docs/postgres.md). The slot, the stream and
// the snapshot reads are the standby's; what pgstream writes into the WAL and reads back through the
// slot cannot be written there and goes to source.primary_url: heartbeats, the watermarks around
// chunks read while streaming, snapshot requests, the publication's creation, and
// pg_log_standby_snapshot() while the slot is created.

// errNoPrimary is what a write meant for the WAL meets on a standby without source.primary_url.
var errNoPrimary = errors.New("the source is a standby, where nothing can be written, and source.primary_url is not set")

// standbyWriteProblems lists the features of cfg that write into the WAL, which a standby source
// (src) without source.primary_url cannot have, each with the option that turns it off.
func standbyWriteProblems(cfg Config, src replication.Config, st StartState) []inspect.Problem {
	if _, ok := src.Primary(); ok {
		return nil
	}
	const setPrimary = "set source.primary_url to the standby's primary (pgstream writes there and reads it back through the standby's slot)"
	var probs []inspect.Problem
	streams := cfg.Snapshot.Mode != SnapshotInitialOnly
	if cfg.Heartbeat.Interval > 0 && streams {
		probs = append(probs, inspect.Problem{Check: "heartbeat",
			Message: "the source is a standby: heartbeats are written into the WAL, which cannot be done on a standby",
			Fix:     setPrimary + ", or turn heartbeats off with a negative source.heartbeat_interval"})
	}
	if *cfg.Snapshot.NewTables && streams {
		probs = append(probs, inspect.Problem{Check: "snapshot.new_tables",
			Message: "the source is a standby: a table that joins the publication is snapshotted through a request and between watermarks written into the WAL, which cannot be done on a standby",
			Fix:     setPrimary + ", or set snapshot.new_tables: false"})
	}
	if cfg.Snapshot.SignalTable != "" && streams {
		probs = append(probs, inspect.Problem{Check: "snapshot.signal_table",
			Message: "the source is a standby: the tables a signal row names are read between watermarks written into the WAL, which cannot be done on a standby",
			Fix:     setPrimary + ", or remove snapshot.signal_table"})
	}
	switch {
	case st.Found && len(st.Checkpoint.Snapshot) > 0:
		probs = append(probs, inspect.Problem{Check: "snapshot",
			Message: fmt.Sprintf("the source is a standby: the checkpoint holds %d unfinished table snapshot(s), whose chunks are read between watermarks written into the WAL, which cannot be done on a standby", len(st.Checkpoint.Snapshot)),
			Fix:     setPrimary})
	case !st.Found && st.Slot.Exists && cfg.Snapshot.Mode != SnapshotNever:
		probs = append(probs, inspect.Problem{Check: "snapshot",
			Message: "the source is a standby and slot " + st.Slot.Name + " exists without a checkpoint: the tables would be read while streaming, between watermarks written into the WAL, which cannot be done on a standby",
			Fix:     setPrimary + "; or drop the slot, so that the first run creates it and reads the tables in the snapshot it exports; or set snapshot.mode: never"})
	}
	return probs
}

// writeTarget finds the connection on which to write what must come back through the slot: the
// source itself while it is a primary, the primary (source.primary_url) while it is a standby. It
// asks the source every time, so that a standby promoted meanwhile is written on directly. It is
// used by one goroutine and owns its connection to the primary.
type writeTarget struct {
	hasPrimary bool    // source.primary_url is set
	primary    sqlConn // to the primary, opened on first use
}

func newWriteTarget(src replication.Config) *writeTarget {
	pc, ok := src.Primary()
	return &writeTarget{hasPrimary: ok, primary: sqlConn{src: pc}}
}

// pick returns the connection to write on, given src, an ordinary connection to the source;
// standby reports that it is the primary's.
func (w *writeTarget) pick(ctx context.Context, src *pgconn.PgConn) (conn *pgconn.PgConn, standby bool, err error) {
	rec, err := pgsql.Value(ctx, src, "SELECT pg_is_in_recovery()::text")
	if err != nil {
		return nil, false, fmt.Errorf("read pg_is_in_recovery(): %w", err)
	}
	if rec != "true" {
		return src, false, nil
	}
	if !w.hasPrimary {
		return nil, true, errNoPrimary
	}
	c, err := w.primary.get(ctx)
	if err != nil {
		return nil, true, fmt.Errorf("connect to source.primary_url: %w", err)
	}
	return c, true, nil
}

func (w *writeTarget) close() { w.primary.close() }

// replayWarnAfter is how long waitReplayed waits before it says what it waits for.
const replayWarnAfter = 30 * time.Second

// waitReplayed waits until the standby behind conn has replayed the WAL up to at
// (pg_last_wal_replay_lsn()), polling with a short pause, and says every replayWarnAfter what it is
// waiting for. A server that left recovery before replaying at (promoted) never will: that is an
// error. A server that was never in recovery has nothing to replay.
func waitReplayed(ctx context.Context, conn *pgconn.PgConn, at lsn.LSN, what string, log *zap.Logger) error {
	pause := 5 * time.Millisecond
	start := time.Now()
	warned := start
	for {
		v, err := pgsql.Value(ctx, conn, "SELECT pg_is_in_recovery()::text || ' ' || coalesce(pg_last_wal_replay_lsn()::text, '-')")
		if err != nil {
			return fmt.Errorf("wait for the standby to replay %s: %w", what, err)
		}
		var rec bool
		var replayed string
		if _, err := fmt.Sscanf(v, "%t %s", &rec, &replayed); err != nil {
			return fmt.Errorf("wait for the standby to replay %s: %q: %w", what, v, err)
		}
		if replayed == "-" {
			return nil // never a standby
		}
		pos, err := lsn.Parse(replayed)
		if err != nil {
			return fmt.Errorf("wait for the standby to replay %s: %w", what, err)
		}
		if pos >= at {
			return nil
		}
		if !rec {
			return fmt.Errorf("the standby was promoted after replaying %s, before %s at %s, which it will never replay", pos, what, at)
		}
		if now := time.Now(); now.Sub(warned) >= replayWarnAfter {
			warned = now
			log.Warn("waiting for the standby to replay what was written on the primary; is it still replicating from source.primary_url?",
				zap.String("what", what), zap.Stringer("at", at), zap.Stringer("replayed", pos), zap.Duration("waited", now.Sub(start).Round(time.Second)))
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(pause):
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// ensurePublicationOnPrimary creates or extends the publication on the primary of the standby that
// conn is connected to, and waits until the standby has replayed it: the slot is created on the
// standby afterwards, and decoding from it must find the publication.
func ensurePublicationOnPrimary(ctx context.Context, conn *replication.Conn, primary replication.Config, log *zap.Logger) error {
	pc, err := replication.Connect(ctx, primary)
	if err != nil {
		return fmt.Errorf("connect to source.primary_url: %w", err)
	}
	defer pc.Close(context.Background())
	if err := pc.EnsurePublication(ctx); err != nil {
		return fmt.Errorf("on the primary: %w", err)
	}
	v, err := pgsql.Value(ctx, pc.PgConn(), "SELECT pg_current_wal_lsn()::text")
	if err != nil {
		return fmt.Errorf("read the primary's WAL position: %w", err)
	}
	at, err := lsn.Parse(v)
	if err != nil {
		return fmt.Errorf("read the primary's WAL position: %w", err)
	}
	return waitReplayed(ctx, conn.PgConn(), at, "the publication", log)
}

// standbySnapshotInterval is how often pg_log_standby_snapshot() is called on the primary while a
// slot is being created on its standby.
const standbySnapshotInterval = time.Second

// whileCreatingSlot runs beside the creation of a slot on a standby, until stop is called. The
// creation waits for the primary's next running-transactions record to reach the standby; the
// primary's background writer logs one every 15 seconds, but only while the primary is busy. With
// source.primary_url, pg_log_standby_snapshot() is called there every standbySnapshotInterval, so
// that the creation returns promptly; without it, or without the privilege, the wait is logged with
// the way to make it prompt, so that it never looks like a hang.
func whileCreatingSlot(ctx context.Context, src replication.Config, log *zap.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		waitFix := "set source.primary_url, so that pgstream calls pg_log_standby_snapshot() there, or run SELECT pg_log_standby_snapshot() on the primary"
		if pc, ok := src.Primary(); ok {
			if nudgePrimary(ctx, pc, log) {
				return
			}
			waitFix = "grant the role EXECUTE on pg_log_standby_snapshot() on the primary, or run SELECT pg_log_standby_snapshot() there"
		}
		log.Info("creating the slot on a standby waits for the primary's next running-transactions record (its background writer logs one "+
			"every 15 seconds, and only while the primary is busy)", zap.String("slot", src.Slot), zap.String("to_make_it_prompt", waitFix))
		start := time.Now()
		t := time.NewTicker(replayWarnAfter)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				log.Warn("still creating the slot on the standby: waiting for the primary's next running-transactions record",
					zap.String("slot", src.Slot), zap.Duration("waited", now.Sub(start).Round(time.Second)), zap.String("to_make_it_prompt", waitFix))
			}
		}
	}()
	return func() { cancel(); <-done }
}

// nudgePrimary calls pg_log_standby_snapshot() on the primary every standbySnapshotInterval until ctx
// ends, reconnecting after failures. It returns false at once when the role may not call it or the
// primary cannot be reached at first, so that the caller says how the wait can be shortened.
func nudgePrimary(ctx context.Context, pc replication.Config, log *zap.Logger) bool {
	conn, err := replication.NewSQLConn(ctx, pc)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("connect to source.primary_url to log a standby snapshot failed", zap.Error(err))
		}
		return ctx.Err() != nil
	}
	defer func() { closeSQL(conn) }()
	v, err := pgsql.Value(ctx, conn, "SELECT has_function_privilege('pg_catalog.pg_log_standby_snapshot()', 'EXECUTE')::text || ' ' || current_user")
	var allowed bool
	var user string
	if err == nil {
		_, err = fmt.Sscanf(v, "%t %s", &allowed, &user)
	}
	if err != nil || !allowed {
		if ctx.Err() == nil {
			log.Warn("pgstream may not call pg_log_standby_snapshot() on the primary, which makes the creation of a slot on a standby prompt",
				zap.String("fix", "GRANT EXECUTE ON FUNCTION pg_catalog.pg_log_standby_snapshot() TO "+pgsql.QuoteIdent(user)+" (on the primary)"), zap.Error(err))
		}
		return ctx.Err() != nil
	}
	t := time.NewTicker(standbySnapshotInterval)
	defer t.Stop()
	for {
		if conn == nil || conn.IsClosed() {
			conn, err = replication.NewSQLConn(ctx, pc)
		}
		if err == nil {
			_, err = pgsql.Value(ctx, conn, "SELECT pg_log_standby_snapshot()::text")
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("pg_log_standby_snapshot() on the primary failed; trying again", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return true
		case <-t.C:
		}
	}
}

// timelineCheckTimeout bounds one read of the server's timeline.
const timelineCheckTimeout = 10 * time.Second

// timelineFollower keeps the checkpoint's timeline that of the server it describes, while the
// source is a standby. A standby moves to a new timeline when it is promoted, or when its primary
// fails over and it follows the new one; its walsender decodes on across the switch without
// ending the stream, so no reconnect tells. A checkpoint that kept the old timeline with a position
// past the switch would be refused at the next start, as a database that went back in time
// (checkpoint.Reconcile).
//
// So before each save the checkpointer asks the follower for the server's timeline
// (IDENTIFY_SYSTEM, on a replication connection of its own), after it has read the position to
// save. A server still on the checkpoint's timeline has decoded nothing from a later one, so the
// position is on it. A server on a later timeline whose history leaves the checkpoint's timeline at
// or after the durable position has everything the checkpoint holds, and what pgstream decoded
// from it since came from its own WAL: the new timeline is recorded. Any other answer is a server
// that went back in time, and stops the pipeline.
//
// It is used by one save at a time (the checkpointer serialises them).
type timelineFollower struct {
	src     replication.Config
	log     *zap.Logger
	conn    *replication.Conn
	failing bool // the last read failed; logged once until one succeeds
}

var _ timelineReader = (*timelineFollower)(nil)

// read runs IDENTIFY_SYSTEM, and TIMELINE_HISTORY when the timeline is not label.
func (f *timelineFollower) read(label int32) (checkpoint.Server, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), timelineCheckTimeout)
	defer cancel()
	srv, err := f.readServer(ctx, label)
	if err != nil {
		if !f.failing {
			f.failing = true
			f.log.Warn("reading the standby's timeline failed; the checkpoint waits until it can be read", zap.Error(err))
		}
		f.close()
		return srv, false
	}
	if f.failing {
		f.failing = false
		f.log.Info("the standby's timeline can be read again")
	}
	return srv, true
}

func (f *timelineFollower) readServer(ctx context.Context, label int32) (checkpoint.Server, error) {
	if f.conn == nil {
		c, err := replication.Connect(ctx, f.src)
		if err != nil {
			return checkpoint.Server{}, err
		}
		f.conn = c
	}
	sys, err := f.conn.IdentifySystem(ctx)
	if err != nil {
		return checkpoint.Server{}, err
	}
	srv := checkpoint.Server{SystemID: sys.SystemID, Database: sys.DBName, WALEnd: sys.XLogPos, Timeline: sys.Timeline}
	if sys.Timeline == label {
		return srv, nil
	}
	h, err := f.conn.TimelineHistory(ctx, sys.Timeline)
	for _, t := range h {
		srv.History = append(srv.History, checkpoint.TimelineSwitch{Timeline: t.Timeline, End: t.End})
	}
	return srv, err
}

func (f *timelineFollower) close() {
	if f.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = f.conn.Close(ctx)
		f.conn = nil
	}
}
