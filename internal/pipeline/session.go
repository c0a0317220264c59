package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/backoff"
	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/replication"
	"github.com/pgstream/pgstream/walparse"
)

// session owns the replication connection: it opens it, receives frames and hands the decoded
// messages to the applier, confirms the durable position to the server in status updates, and
// reconnects after failures that a reconnect may cure. It is used by the replication goroutine
// only. Its receive deadline is the next status update, so that a slow sink never costs the
// session its wal_sender_timeout.
type session struct {
	src     replication.Config
	cfg     Config
	log     *zap.Logger
	now     func() time.Time
	store   Store
	ck      *checkpointer
	app     *applier
	tracker *checkpoint.Tracker
	catalog *lazyCatalog
	snap    *snapState // the snapshot record: is every table snapshot done
	health  *health.Board

	conn      *replication.Conn
	dec       *walparse.Decoder
	written   lsn.LSN // newest position received
	serverEnd lsn.LSN // newest WAL end the server reported on this connection
	streaming bool
	received  uint64 // replication bytes received
	clock     statusClock
	pub       *sessionPub // the Pipeline's: readable before and after the session
}

// statusClock schedules the status updates and the receive slices of the replication goroutine.
type statusClock struct {
	interval time.Duration // between status updates, within wal_sender_timeout
	next     time.Time     // the next status update is due
	sliceEnd time.Time     // end of the current receive slice
	replyNow bool          // the server asked for a reply
}

// sessionPub is what the session publishes for other goroutines (scrapes, /status).
type sessionPub struct {
	heardEnd   atomic.Uint64 // serverEnd
	received   atomic.Uint64 // received, published every status update and every 256 frames
	confirmed  atomic.Uint64 // the flush position of the newest status update
	connected  atomic.Bool   // streaming
	reconnects atomic.Uint64
	lastErr    atomic.Pointer[string] // why the connection was lost last
}

// publish makes the positions and counters the replication goroutine keeps readable by others.
func (s *session) publish() {
	s.pub.heardEnd.Store(uint64(s.serverEnd))
	s.pub.received.Store(s.received)
}

// initialOnlyDone reports that snapshot.mode is initial_only and the snapshot is complete.
func (s *session) initialOnlyDone() bool {
	return s.cfg.Snapshot.Mode == SnapshotInitialOnly && s.snap.finished()
}

// dial opens the replication connection (kept in s.conn, so that closeConn releases it whatever
// follows) and identifies the server.
func (s *session) dial(ctx context.Context) (replication.SystemInfo, error) {
	conn, err := replication.Connect(ctx, s.src)
	if err != nil {
		return replication.SystemInfo{}, err
	}
	s.conn = conn
	sys, err := conn.IdentifySystem(ctx)
	s.serverEnd = sys.XLogPos
	s.publish()
	return sys, err
}

// statusInterval returns the configured interval between status updates, shortened to stay well
// inside the server's wal_sender_timeout.
func statusInterval(ctx context.Context, catalog *lazyCatalog, configured time.Duration, log *zap.Logger) time.Duration {
	timeout, err := catalog.walSenderTimeout(ctx)
	if err != nil || timeout <= 0 {
		return configured
	}
	if limit := timeout / 3; configured > limit {
		log.Info("status interval shortened to stay within wal_sender_timeout",
			zap.Duration("status_interval", limit), zap.Duration("wal_sender_timeout", timeout))
		return limit
	}
	return configured
}

func (s *session) startStreaming(ctx context.Context, from lsn.LSN) error {
	if err := s.conn.StartReplication(ctx, from, protoVersion); err != nil {
		return err
	}
	s.streaming = true
	s.written = max(s.written, from)
	s.clock.next = s.now()
	s.pub.connected.Store(true)
	s.health.Set(ComponentSource, true, "")
	return nil
}

func (s *session) closeConn() {
	if s.conn == nil {
		return
	}
	closeReplication(s.conn)
	s.conn = nil
	s.streaming = false
	s.pub.connected.Store(false)
}

// closeReplication closes a replication connection, waiting a bounded time for the server.
func closeReplication(conn *replication.Conn) {
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// stream runs the receive loop, reconnecting after failures that a reconnect may cure.
func (s *session) stream(ctx, runCtx context.Context) error {
	failures := 0
	policy := backoff.Policy{Min: s.cfg.ReconnectMin, Max: s.cfg.ReconnectMax}
	for {
		err := s.receiveLoop(ctx, runCtx)
		if errors.Is(err, errEndReached) {
			if s.initialOnlyDone() {
				s.log.Info("snapshot complete; snapshot.mode is initial_only: stopping")
				return nil
			}
			s.log.Info("end position reached", zap.Stringer("end_lsn", s.cfg.EndLSN))
			return nil
		}
		if ctx.Err() != nil || runCtx.Err() != nil {
			return nil // a shutdown, or a failure reported by its own goroutine
		}
		if !replication.IsRetryable(err) {
			return err
		}
		for {
			failures++
			if s.cfg.ReconnectAttempts > 0 && failures > s.cfg.ReconnectAttempts {
				return fmt.Errorf("giving up after %d reconnect attempts: %w", s.cfg.ReconnectAttempts, err)
			}
			wait := policy.Delay(failures)
			msg := err.Error()
			s.pub.lastErr.Store(&msg)
			s.health.Set(ComponentSource, false, "replication connection lost; reconnecting: "+msg)
			s.health.Beat(LoopReplication)
			s.log.Warn("replication connection lost; reconnecting", zap.Error(err), zap.Duration("backoff", wait), zap.Int("attempt", failures))
			s.closeConn()
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-runCtx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			err = s.reopen(ctx)
			if err == nil {
				s.pub.reconnects.Add(1)
				break
			}
			// After a network failure the server may still run our previous walsender on the slot
			// until wal_sender_timeout ends it, so an active slot is worth waiting for here.
			if !replication.IsRetryable(err) && !errors.Is(err, replication.ErrSlotActive) {
				return err
			}
		}
		failures = 0
	}
}

// reopen connects again after a failure and resumes from the durable position, dropping what was
// already handed to the sinks. The server may be another one than before: a standby promoted
// since (a new timeline of the same system), found among the hosts of source.url. Its timeline
// history must hold everything the sinks were handed; its copy of the slot may be behind the
// durable position, which is where streaming resumes all the same.
func (s *session) reopen(ctx context.Context) error {
	sys, err := s.dial(ctx)
	if err != nil {
		return err
	}
	conn := s.conn
	if sys.SystemID != s.ck.identity().SystemID {
		return fmt.Errorf("%w: server system identifier changed from %s to %s after a reconnect", checkpoint.ErrMismatch, s.ck.identity().SystemID, sys.SystemID)
	}
	slot, err := conn.SlotInfo(ctx)
	if err != nil {
		return err
	}
	d := s.ck.Durable()
	cp := s.ck.identity()
	cp.CommitLSN, cp.FlushLSN = d.CommitLSN, d.EndLSN
	srv, err := ServerState(ctx, conn, sys, slot, cp, true)
	if err != nil {
		return err
	}
	if _, err := s.store.Reconcile(cp, true, srv); err != nil {
		return promotedHint(err, cp, sys)
	}
	if err := s.store.Handed(cp, srv, s.app.tx.handedReach()); err != nil {
		return err
	}
	if s.src.Failover && !slot.Failover {
		if _, err := conn.EnsureFailover(ctx, slot); err != nil {
			return err
		}
		s.log.Info("made the replication slot a failover slot", zap.String("slot", slot.Name))
	}
	if sys.Timeline != cp.Timeline {
		fork := lsn.LSN(0)
		for _, h := range srv.History {
			if h.Timeline == cp.Timeline {
				fork = h.End
			}
		}
		s.log.Warn("the server is on a new timeline: a standby was promoted; resuming on it from the checkpoint",
			zap.Int32("timeline", sys.Timeline), zap.Int32("previous_timeline", cp.Timeline), zap.Stringer("fork_point", fork),
			zap.Stringer("slot_confirmed_flush_lsn", slot.ConfirmedFlush), zap.Stringer("checkpoint_flush_lsn", d.EndLSN))
		s.ck.setTimeline(sys.Timeline)
	}
	s.dec.Reset()
	s.app.reconnect()
	s.log.Info("resuming replication", zap.Stringer("from", d.EndLSN), zap.Stringer("skip_through", s.app.tx.skipThrough),
		zap.String("server", conn.PgConn().Conn().RemoteAddr().String()), zap.Int32("timeline", sys.Timeline))
	return s.startStreaming(ctx, d.EndLSN)
}

// promotedHint adds to a refusal to resume on a server whose slot is missing the likely cause
// when the server is on a later timeline than the checkpoint: a promoted standby without a copy
// of the slot.
func promotedHint(err error, cp checkpoint.Checkpoint, sys replication.SystemInfo) error {
	if !errors.Is(err, checkpoint.ErrSlotMissing) || cp.Timeline == 0 || sys.Timeline <= cp.Timeline {
		return err
	}
	return fmt.Errorf("%w (the server is on timeline %d, the checkpoint on %d: it is a promoted standby without a usable copy of the slot; "+
		"with source.failover on PostgreSQL 17 or newer and sync_replication_slots on the standby, pgstream check says whether a standby's copy is ready)",
		err, sys.Timeline, cp.Timeline)
}

func (s *session) receiveLoop(ctx, runCtx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-runCtx.Done():
			return context.Cause(runCtx)
		default:
		}
		if s.initialOnlyDone() {
			return errEndReached
		}
		now := s.now()
		if s.clock.replyNow || !now.Before(s.clock.next) {
			if err := s.sendStatus(); err != nil {
				return err
			}
		}
		if _, inflight := s.tracker.InFlight(); inflight >= s.cfg.MaxInFlightBytes {
			// Backpressure: leave the data in the socket until the sinks catch up, but keep the
			// status updates going so the server does not time the session out.
			t := time.NewTimer(min(s.clock.next.Sub(now), receiveSlice))
			select {
			case <-s.tracker.Changed():
			case <-t.C:
			case <-ctx.Done():
			case <-runCtx.Done():
			}
			t.Stop()
			continue
		}
		// The deadline moves in steps of receiveSlice, so most receives reuse the socket's.
		if !now.Before(s.clock.sliceEnd) {
			s.clock.sliceEnd = now.Add(receiveSlice)
			s.health.Beat(LoopReplication)
		}
		deadline := s.clock.next
		if s.clock.sliceEnd.Before(deadline) {
			deadline = s.clock.sliceEnd
		}
		f, err := s.conn.Receive(deadline)
		if errors.Is(err, replication.ErrDeadline) {
			continue
		}
		if err != nil {
			return err
		}
		if err := s.handle(ctx, f); err != nil {
			return err
		}
	}
}

// sendStatus confirms the durable position, never past the WAL end the server reported: a position
// the server has not written must not become the slot's.
func (s *session) sendStatus() error {
	d := s.ck.Durable()
	flushed := min(d.EndLSN, s.serverEnd)
	written := min(max(s.written, d.EndLSN), s.serverEnd)
	// Published first: what the metrics show as heard is never behind what the server was told.
	s.publish()
	if err := s.conn.SendStatus(written, flushed, flushed, false); err != nil {
		return fmt.Errorf("send status update: %w", err)
	}
	s.pub.confirmed.Store(uint64(flushed))
	s.clock.replyNow = false
	s.clock.next = s.now().Add(s.clock.interval)
	return nil
}

func (s *session) handle(ctx context.Context, f replication.Frame) error {
	switch f.Kind {
	case replication.KindKeepalive:
		s.serverEnd = max(s.serverEnd, f.ServerWALEnd)
		s.publish()
		s.written = max(s.written, f.ServerWALEnd)
		if f.ReplyRequested {
			s.clock.replyNow = true
		}
		// Nothing open and nothing in flight: every change before the server's WAL end is durable,
		// so the slot may move on and release WAL even when no published table changes.
		if s.app.idle() {
			if batches, _ := s.tracker.InFlight(); batches == 0 {
				s.tracker.AdvanceIdle(f.ServerWALEnd)
			}
			if s.cfg.EndLSN != 0 && f.ServerWALEnd >= s.cfg.EndLSN {
				return errEndReached
			}
		}
		return nil
	case replication.KindXLogData:
		s.serverEnd = max(s.serverEnd, f.ServerWALEnd)
		if s.received += uint64(len(f.Data)); s.received&0xFFFF < uint64(len(f.Data)) {
			s.publish() // about every 64 KiB
		}
		s.written = max(s.written, f.WALStart)
		msg, err := s.dec.Decode(f.Data)
		if err != nil {
			return fmt.Errorf("decode pgoutput message at %s: %w", f.WALStart, err)
		}
		return s.app.apply(ctx, msg, f.WALStart)
	}
	return fmt.Errorf("unexpected replication frame %q", f.Kind)
}
