package pipeline

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/events"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/walparse"
)

// errShutdownTimeout ends the sink workers that did not acknowledge everything within
// pipeline.shutdown_timeout.
var errShutdownTimeout = errors.New("shutdown timeout")

// parts are the pipeline's parts, each built whole by build once open has found where to start.
// Run owns them; other goroutines read them through Pipeline.parts.
type parts struct {
	cfg   Config
	log   *zap.Logger
	now   func() time.Time
	obs   observers
	stats *stats

	sess    *session      // the replication connection (the replication goroutine's)
	app     *applier      // decoded messages to batches (the replication goroutine's)
	sn      *snapshotter  // table snapshots
	ck      *checkpointer // the durable position
	catalog *lazyCatalog  // catalog queries on an ordinary connection
	tracker *checkpoint.Tracker
	fan     *fanout      // the sink workers
	slots   *slotWatch   // polls the slot
	beats   *heartbeater // nil when heartbeats are off

	exported  string  // snapshot exported by the slot's creation, "" when there is none
	startFrom lsn.LSN // where streaming starts
}

// build builds the parts from what open found. It does no I/O.
func (p *Pipeline) build(o *opened) *parts {
	cfg := p.cfg
	tracker := checkpoint.NewTracker(len(p.specs), o.pos)
	fan := newFanout(p.specs, tracker, cfg.MaxWriteEvents, p.obs, &p.stats, &p.commits, p.now)
	var follow timelineReader
	if o.st.Standby {
		follow = &timelineFollower{src: p.src, log: p.log}
	}
	ck := &checkpointer{store: p.store, snap: p.snap.state, interval: cfg.CheckpointInterval, now: p.now, log: p.log,
		ident: o.ident(p.src.Slot), tracker: tracker, follow: follow, health: p.obs.health}
	ck.durable.Store(&o.pos)
	sn := newSnapshotter(snapDeps{cfg: cfg, src: p.src, log: p.log, now: p.now, db: o.sys.DBName, tracker: tracker, push: fan.push,
		catalog: o.catalog, save: ck.save, watermarks: o.watermarks, health: p.obs.health, metrics: p.obs.metrics, progress: p.snap})
	var beats *heartbeater
	if heartbeatsOn(cfg) {
		beats = newHeartbeater(cfg.Heartbeat, p.src, p.runID, &p.stats.txs, p.log, p.now, p.obs)
	}
	var onHeartbeat func(*walparse.LogicalMessage)
	if beats != nil {
		onHeartbeat = beats.received
	}
	var markers *events.Markers
	if cfg.TransactionMarkers {
		markers = events.NewMarkers(events.Options{Database: o.sys.DBName, Now: p.now})
	}
	app := &applier{tx: newTxState(o.start.SkipThrough), cur: newBatch(), hooks: sn, handOver: fan.push, txs: &p.stats.txs,
		enc:       events.NewEncoder(events.Options{Database: o.sys.DBName, Now: p.now}, o.catalog),
		maxEvents: cfg.MaxBatchEvents, maxBytes: cfg.MaxBatchBytes, endLSN: cfg.EndLSN, heartbeatToSinks: cfg.Heartbeat.ToSinks,
		onHeartbeat: onHeartbeat, markers: markers}
	sess := &session{src: p.src, cfg: cfg, log: p.log, now: p.now, store: p.store, ck: ck, app: app, tracker: tracker,
		snap: p.snap.state, health: p.obs.health, conn: o.conn, serverEnd: o.sys.XLogPos, pub: &p.pub,
		dec: walparse.NewDecoder(walparse.Options{ProtoVersion: protoVersion}), clock: statusClock{interval: o.statusInterval}}
	sess.publish()
	exported := o.exported
	slots := &slotWatch{src: p.src, log: p.log, obs: p.obs, interval: cfg.WALGuard.PollInterval, minSafe: cfg.WALGuard.MinSafeWALSize,
		reconnectMax: cfg.ReconnectMax, initialSnapshot: func() bool { return exported != "" && !p.snap.state.finished() }, endangered: sn.slotEndangered}
	return &parts{cfg: cfg, log: p.log, now: p.now, obs: p.obs, stats: &p.stats, sess: sess, app: app, sn: sn, ck: ck,
		catalog: o.catalog, tracker: tracker, fan: fan, slots: slots, beats: beats, exported: exported, startFrom: o.start.From}
}

// run runs the loops in one errgroup until reading stops, then shuts down in this order:
//
//  1. reading: the replication goroutine (the caller's) returns from the stream; the slot watch,
//     the heartbeats, the new-table poll and the snapshot readers stop;
//  2. sinks: every worker acknowledges what it holds, within pipeline.shutdown_timeout;
//  3. checkpoint: the checkpointer saves what every sink acknowledged, a last time;
//  4. reporting: the progress logs and the sinks' readiness stop;
//  5. the server is told the durable position in a final status update, and the connections close.
//
// The first loop to fail cancels the group's context: reading stops, and the same order follows.
func (pp *parts) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(context.Background())
	fail := func(err error) { g.Go(func() error { return err }) }
	sinks, reading, reporting := newStage(g, gctx), newStage(g, gctx), newStage(g, gctx)
	for _, w := range pp.fan.workers {
		sinks.start(w.run)
	}
	ckStop := make(chan struct{})
	var ckErr error
	ckStage := newStage(g, gctx)
	ckStage.start(func(ctx context.Context) error {
		ckErr = pp.ck.run(ctx, ckStop)
		return ckErr
	})
	reporting.start(pp.logStats)
	reporting.start(func(ctx context.Context) error { pp.sn.progress.logProgress(ctx.Done()); return nil })
	reporting.start(func(ctx context.Context) error { return watchSinks(ctx, pp.fan.workers, pp.obs.health, pp.now) })
	reading.start(pp.slots.run)

	streamErr := pp.stream(ctx, gctx, fail, reading)
	reading.stop()

	// What the current batch holds belongs to a transaction that has not committed in the stream
	// yet; it is read again on the next start.
	pp.app.cur.reset()
	pp.fan.finish()
	if !sinks.wait(pp.cfg.ShutdownTimeout) {
		pp.log.Warn("sinks did not acknowledge everything within the shutdown timeout; the rest is sent again on the next start",
			zap.Duration("shutdown_timeout", pp.cfg.ShutdownTimeout))
		fail(errShutdownTimeout)
		sinks.wait(0)
	}
	close(ckStop)
	ckStage.stop()
	if pp.ck.follow != nil {
		pp.ck.follow.close()
	}
	reporting.stop()
	if pp.sess.streaming && pp.sess.conn != nil && ckErr == nil {
		if err := pp.sess.sendStatus(); err != nil {
			pp.log.Debug("final status update failed", zap.Error(err))
		}
	}
	pp.sess.closeConn()
	pp.catalog.close()
	groupErr := g.Wait() // the first loop's failure
	errs := []error{streamErr}
	if groupErr != nil && !errors.Is(groupErr, context.Canceled) && !errors.Is(groupErr, streamErr) {
		errs = append(errs, groupErr)
	}
	if ckErr != nil && !errors.Is(ckErr, groupErr) {
		errs = append(errs, ckErr)
	}
	return errors.Join(errs...)
}

// stream reads the snapshot exported at the slot's creation (if any), then streams; chunks of
// unfinished or requested snapshots, and those the exported snapshot left when the slot's WAL was
// in danger, are read while streaming. The loops it starts while streaming join reading.
func (pp *parts) stream(ctx, runCtx context.Context, fail func(error), reading *stage) error {
	initialOnly := pp.cfg.Snapshot.Mode == SnapshotInitialOnly
	startFrom := pp.startFrom
	var rest []chunkJob // chunks the exported snapshot left to be read while streaming
	if pp.exported != "" {
		var err error
		if rest, err = pp.sn.snapshotExported(ctx, runCtx, pp.exported, startFrom, pp.sn.pendingSnapshot()); err != nil {
			return err
		}
		if ctx.Err() != nil || runCtx.Err() != nil {
			return nil
		}
		if initialOnly && len(rest) == 0 {
			pp.log.Info("snapshot.mode is initial_only: stopping; the next run streams from the consistent point", zap.Stringer("consistent_point", startFrom))
			return nil
		}
	}
	pending := pp.sn.pendingSnapshot()
	if initialOnly && len(pending) == 0 {
		pp.log.Info("snapshot.mode is initial_only and no snapshot is pending: nothing to do")
		return nil
	}
	if pp.exported != "" {
		// The replication connection sat idle in its export for the whole snapshot, where a server's
		// idle_in_transaction_session_timeout may have ended it: stream on a new one.
		pp.sess.closeConn()
		if err := pp.sess.reopen(ctx); err != nil {
			return err
		}
	} else if err := pp.sess.startStreaming(ctx, startFrom); err != nil {
		return err
	}
	switch {
	case len(rest) > 0:
		pp.sn.jobs.add(rest...)
	case len(pending) > 0:
		pp.log.Info("resuming snapshot while streaming", zap.Int("tables", len(pending)))
		pp.sn.jobs.add(pp.sn.pendingJobs(ctx, pending)...)
	}
	reading.start(func(ctx context.Context) error {
		wait := pp.sn.startResnap(ctx, fail)
		<-ctx.Done()
		wait()
		return nil
	})
	if pp.beats != nil && !initialOnly {
		reading.start(func(ctx context.Context) error { pp.beats.run(ctx); return nil })
	}
	if *pp.cfg.Snapshot.NewTables && !initialOnly {
		reading.start(func(ctx context.Context) error { pp.sn.pollPublication(ctx); return nil })
	}
	return pp.sess.stream(ctx, runCtx)
}

// logStats logs the progress every pipeline.stats_interval until ctx ends.
func (pp *parts) logStats(ctx context.Context) error {
	if pp.cfg.StatsInterval < 0 {
		return nil
	}
	t := time.NewTicker(pp.cfg.StatsInterval)
	defer t.Stop()
	var lastEvents uint64
	last := pp.now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			ev := pp.stats.events.Load()
			d := pp.ck.Durable()
			batches, bytes := pp.tracker.InFlight()
			pp.log.Info("progress",
				zap.Uint64("events", ev), zap.Uint64("transactions", pp.stats.txs.Load()),
				zap.Float64("events_per_sec", float64(ev-lastEvents)/now.Sub(last).Seconds()),
				zap.Stringer("checkpoint_commit_lsn", d.CommitLSN), zap.Stringer("confirmed_flush_lsn", d.EndLSN),
				zap.Int("batches_in_flight", batches), zap.Int("bytes_in_flight", bytes))
			lastEvents, last = ev, now
		}
	}
}

// stage is loops of one errgroup that stop together, at their place in the shutdown order. An
// error from any of them fails the whole group.
type stage struct {
	g      *errgroup.Group
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newStage(g *errgroup.Group, parent context.Context) *stage {
	ctx, cancel := context.WithCancel(parent)
	return &stage{g: g, ctx: ctx, cancel: cancel}
}

// start runs f in the group with the stage's context.
func (s *stage) start(f func(ctx context.Context) error) {
	s.wg.Add(1)
	s.g.Go(func() error {
		defer s.wg.Done()
		return f(s.ctx)
	})
}

// wait waits for the stage's loops to return on their own, at most d (0: without a bound), and
// reports whether they did.
func (s *stage) wait(d time.Duration) bool {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	if d <= 0 {
		<-done
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// stop ends the stage's loops and waits for them.
func (s *stage) stop() {
	s.cancel()
	s.wg.Wait()
}
