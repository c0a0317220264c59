package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/events"
	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/internal/metrics"
	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/replication"
	"github.com/pgstream/pgstream/walparse"
)

// protoVersion is the pgoutput protocol pgstream asks for: whole transactions, sent at commit.
const protoVersion = 1

// receiveSlice caps how long one Receive may block, so that a shutdown request or a failed sink is
// noticed promptly even when the server is quiet.
const receiveSlice = 250 * time.Millisecond

// errEndReached ends the receive loop when Config.EndLSN has been reached.
var errEndReached = errors.New("end position reached")

// Store is where the durable checkpoint lives.
type Store interface {
	Load() (checkpoint.Checkpoint, bool, error)
	Save(checkpoint.Checkpoint) error
	// Reconcile applies checkpoint.Reconcile, naming the store in its errors.
	Reconcile(cp checkpoint.Checkpoint, found bool, srv checkpoint.Server) (checkpoint.Start, error)
	// Handed applies checkpoint.Handed, naming the store in its errors.
	Handed(cp checkpoint.Checkpoint, srv checkpoint.Server, reach lsn.LSN) error
}

// Pipeline streams changes from one replication slot to the configured sinks. It is used once:
// New, then Run.
type Pipeline struct {
	cfg   Config
	src   replication.Config
	store Store
	specs []SinkSpec
	log   *zap.Logger
	now   func() time.Time

	// The parts, wired by New and open; Pipeline owns their lifecycle.
	sess    *session      // the replication connection (the replication goroutine's)
	app     *applier      // decoded messages to batches (the replication goroutine's)
	sn      *snapshotter  // table snapshots, built by open
	snap    *snapProgress // the snapshot record and progress, from New on
	ck      *checkpointer // the durable position
	catalog *lazyCatalog  // catalog queries on an ordinary connection
	tracker *checkpoint.Tracker
	workers []*worker // one per sink

	startFrom lsn.LSN // where streaming starts
	exported  string  // snapshot exported by the slot creation, "" when there is none
	stats     stats

	// Observation (Observe); nil when not observed.
	metrics    *metrics.Metrics
	health     *health.Board
	commits    commitTimes
	trackerRef atomic.Pointer[checkpoint.Tracker] // p.tracker, for scrapes from other goroutines
	slots      *slotWatch
	beats      *heartbeater // nil when heartbeats are off
}

type stats struct {
	txs     atomic.Uint64 // transactions handed over
	events  atomic.Uint64
	bytes   atomic.Uint64
	batches atomic.Uint64
}

// New checks the configuration. It does no I/O. The pipeline owns the sinks from here on: Run
// closes them when it returns.
func New(cfg Config, src replication.Config, store Store, specs []SinkSpec, log *zap.Logger) (*Pipeline, error) {
	cfg, src = cfg.WithDefaults(), src.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := src.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("pipeline: a checkpoint store is required")
	}
	if len(specs) == 0 {
		return nil, errors.New("no sinks configured: add at least one entry under sinks (e.g. {type: stdout})")
	}
	if log == nil {
		log = zap.NewNop()
	}
	p := &Pipeline{cfg: cfg, src: src, store: store, specs: specs, log: log, now: time.Now}
	p.snap = newSnapProgress(cfg.Snapshot, log, p.now)
	p.ck = &checkpointer{store: store, snap: p.snap.state, interval: cfg.CheckpointInterval, now: p.now, log: log}
	p.sess = &session{src: src, cfg: cfg, log: log, now: p.now, store: store, ck: p.ck, snap: p.snap.state}
	// The slot watch runs once open has built p.sn.
	p.slots = &slotWatch{p: p, interval: cfg.WALGuard.PollInterval, minSafe: cfg.WALGuard.MinSafeWALSize, reconnectMax: cfg.ReconnectMax,
		initialSnapshot: func() bool { return p.exported != "" && !p.snap.state.finished() },
		endangered:      func(st SlotState, margin int64) { p.sn.slotEndangered(st, margin) }}
	return p, nil
}

// Durable returns the newest position the checkpoint store holds (and the server may be told).
func (p *Pipeline) Durable() checkpoint.Position { return p.ck.Durable() }

// SnapshotProgress is where the snapshots being read stand. Safe for concurrent use.
func (p *Pipeline) SnapshotProgress() SnapshotProgress { return p.snap.progress() }

// Run streams until ctx ends (a clean shutdown, returning nil) or an error that reconnecting cannot
// cure. On the way out it stops reading, lets every sink acknowledge what it holds, saves the
// checkpoint, sends a final status update and closes the connection, in that order.
func (p *Pipeline) Run(ctx context.Context) (err error) {
	if err := p.open(ctx); err != nil {
		p.health.SetErr(ComponentSource, err)
		p.sess.closeConn()
		if p.catalog != nil {
			p.catalog.close()
		}
		return errors.Join(append([]error{err}, p.closeSinks()...)...)
	}
	runCtx, fail := context.WithCancelCause(context.Background())
	defer fail(nil)

	p.ck.tracker, p.sess.tracker = p.tracker, p.tracker
	p.trackerRef.Store(p.tracker)
	var wg sync.WaitGroup
	for i, spec := range p.specs {
		w := newWorker(i, spec, p.tracker, p.cfg.MaxWriteEvents)
		w.metrics, w.health, w.onAck = p.metrics, p.health, p.acked
		p.workers = append(p.workers, w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.run(runCtx); err != nil {
				fail(err)
			}
		}()
	}
	ckStop := make(chan struct{})
	ckDone := make(chan error, 1)
	go func() {
		err := p.ck.run(runCtx, ckStop)
		if err != nil {
			fail(err)
		}
		ckDone <- err
	}()
	statsDone := make(chan struct{})
	statsStop := make(chan struct{})
	go func() {
		defer close(statsDone)
		p.logStats(statsStop)
	}()
	snapLogDone := make(chan struct{})
	go func() {
		defer close(snapLogDone)
		p.snap.logProgress(statsStop)
	}()
	sinksWatched := make(chan struct{})
	go func() {
		defer close(sinksWatched)
		p.watchSinks(statsStop)
	}()

	watchCtx, stopWatch := context.WithCancel(runCtx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		if err := p.slots.run(watchCtx); err != nil {
			fail(err)
		}
	}()

	streamErr := p.run(ctx, runCtx, fail)
	stopWatch()
	<-watchDone

	// Shutdown: reading has stopped. What the current batch holds belongs to a transaction that has
	// not committed in the stream yet; it is read again on the next start.
	p.app.cur.reset()
	for _, w := range p.workers {
		w.finish()
	}
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(p.cfg.ShutdownTimeout):
		p.log.Warn("sinks did not acknowledge everything within the shutdown timeout; the rest is sent again on the next start",
			zap.Duration("shutdown_timeout", p.cfg.ShutdownTimeout))
		fail(errors.New("shutdown timeout"))
		<-drained
	}
	close(ckStop)
	ckErr := <-ckDone
	if p.ck.follow != nil {
		p.ck.follow.close()
	}
	close(statsStop)
	<-statsDone
	<-snapLogDone
	<-sinksWatched

	if p.sess.streaming && p.sess.conn != nil && ckErr == nil {
		if err := p.sess.sendStatus(); err != nil {
			p.log.Debug("final status update failed", zap.Error(err))
		}
	}
	p.sess.closeConn()
	p.health.Set(ComponentSource, false, "stopped")
	if p.catalog != nil {
		p.catalog.close()
	}
	closeErrs := p.closeSinks()
	d := p.Durable()
	p.log.Info("stopped", zap.Stringer("checkpoint_commit_lsn", d.CommitLSN), zap.Stringer("confirmed_flush_lsn", d.EndLSN),
		zap.Uint64("events", p.stats.events.Load()))

	var errs []error
	if streamErr != nil {
		errs = append(errs, streamErr)
	}
	if cause := context.Cause(runCtx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, streamErr) {
		errs = append(errs, cause)
	}
	if ckErr != nil && !errors.Is(ckErr, context.Cause(runCtx)) {
		errs = append(errs, ckErr)
	}
	errs = append(errs, closeErrs...)
	return errors.Join(errs...)
}

// closeSinks closes every sink; Run owns them from New on.
func (p *Pipeline) closeSinks() []error {
	var errs []error
	for _, s := range p.specs {
		if err := s.Sink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close sink %s: %w", s.Name, err))
		}
	}
	return errs
}

// StartState is what pgstream finds at start-up (the server, its slot and the checkpoint) and what
// a run decides from them. Inspect fills it without changing anything, for run and check alike.
type StartState struct {
	System replication.SystemInfo
	// Problems are the preflight's findings: a run refuses to start while there are any.
	Problems   []replication.Problem
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
// WAL (heartbeats, snapshots read while streaming, new tables, the signal table) are findings too.
func Inspect(ctx context.Context, conn *replication.Conn, sys replication.SystemInfo, store Store, cfg Config) (StartState, error) {
	cfg = cfg.WithDefaults()
	mode := cfg.Snapshot.Mode
	st := StartState{System: sys, Problems: conn.Preflight(ctx)}
	var err error
	if st.Standby, err = conn.InRecovery(ctx); err != nil {
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

// open connects, checks the server, reconciles the checkpoint with the slot and starts streaming.
func (p *Pipeline) open(ctx context.Context) error {
	sys, err := p.sess.dial(ctx)
	if err != nil {
		return err
	}
	conn := p.sess.conn
	st, err := Inspect(ctx, conn, sys, p.store, p.cfg)
	if len(st.Problems) > 0 {
		return &PreflightError{Problems: st.Problems}
	}
	if err != nil {
		return err
	}
	primary, hasPrimary := p.src.Primary()
	if st.Standby {
		to := "nowhere: heartbeats, snapshots while streaming and new tables are off"
		if hasPrimary {
			to = replication.RedactURL(primary.URL)
		}
		p.log.Info("the source is a standby: decoding runs on it", zap.String("server_version", conn.PgConn().ParameterStatus("server_version")),
			zap.String("writes_go_to", to))
	}
	if st.Standby && hasPrimary {
		err = ensurePublicationOnPrimary(ctx, conn, primary, p.log)
	} else {
		err = conn.EnsurePublication(ctx)
	}
	if err != nil {
		return err
	}
	p.catalog = &lazyCatalog{cfg: p.src}
	// Heartbeats the role may not write are refused before a slot is created for nothing.
	var beats *heartbeater
	if p.cfg.Heartbeat.Interval > 0 && p.cfg.Snapshot.Mode != SnapshotInitialOnly {
		conn, err := p.catalog.pg(ctx)
		if err != nil {
			return err
		}
		hb := newHeartbeater(p)
		if err := hb.check(ctx, conn); err != nil {
			return err
		}
		beats = hb
	}
	if st.Slot.Exists && p.src.Failover && !st.Slot.Failover {
		if st.Slot, err = conn.EnsureFailover(ctx, st.Slot); err != nil {
			return err
		}
		p.log.Info("made the replication slot a failover slot", zap.String("slot", st.Slot.Name))
	}
	cp, found, start := st.Checkpoint, st.Found, st.Start
	snapshotNow := st.Snapshot
	if st.CreateSlot {
		// A first start: the slot begins at its consistent point and the checkpoint with it. The
		// snapshot it exports is the database exactly as of that point.
		stop := func() {}
		if st.Standby {
			stop = whileCreatingSlot(ctx, p.src, p.log)
		}
		var slot replication.SlotInfo
		if snapshotNow {
			slot, p.exported, err = conn.EnsureSlotExport(ctx)
		} else {
			slot, err = conn.EnsureSlot(ctx)
		}
		stop()
		if err != nil {
			return err
		}
		p.log.Info("created replication slot", zap.String("slot", slot.Name), zap.Stringer("consistent_point", slot.ConfirmedFlush),
			zap.Bool("failover", p.src.Failover))
		srv, err := ServerState(ctx, conn, sys, slot, cp, found)
		if err != nil {
			return err
		}
		if start, err = p.store.Reconcile(cp, found, srv); err != nil {
			return err
		}
	}
	p.ck.ident = checkpoint.Checkpoint{SystemID: sys.SystemID, Timeline: sys.Timeline, Database: sys.DBName, Slot: p.src.Slot}
	if st.Standby {
		p.ck.follow = &timelineFollower{src: p.src, log: p.log}
	}
	pos := checkpoint.Position{CommitLSN: start.SkipThrough, EndLSN: start.From}
	// The snapshot state is read by SnapshotProgress from other goroutines from the start.
	tables := cp.Snapshot
	if !found {
		tables = nil
	}
	published := cp.Published
	pubChanged := false
	if !found || cp.Published == nil {
		// A first start, or a checkpoint that predates the list: the tables published now are the
		// ones taken into account (snapshotted below, or streamed from here on).
		pub, err := publishedTables(ctx, p.catalog, p.src.Publication)
		if err != nil {
			return err
		}
		published = make([]uint32, len(pub))
		for i, t := range pub {
			published[i] = t.OID
		}
		pubChanged = found
		if snapshotNow {
			// The plan is saved before the first row is read: a crash from here on resumes it.
			tables = snapshot.Plan(pub, start.From, uint32(p.cfg.Snapshot.ChunkPages))
		}
	}
	publishedList := p.snap.state.load(tables, published, pubChanged)
	if !found || start.Fresh {
		cp := p.ck.ident
		cp.CommitLSN, cp.FlushLSN, cp.UpdatedAt, cp.Snapshot = pos.CommitLSN, pos.EndLSN, p.now(), tables
		cp.Published = publishedList
		if err := p.store.Save(cp); err != nil {
			return fmt.Errorf("save checkpoint: %w", err)
		}
	}
	p.ck.durable.Store(&pos)
	// The tracker starts at the durable position, and the snapshot parts are built once it is
	// known, the last of what they need.
	p.tracker = checkpoint.NewTracker(len(p.specs), pos)
	p.sn = newSnapshotter(snapDeps{cfg: p.cfg, src: p.src, log: p.log, now: p.now, db: sys.DBName, tracker: p.tracker, push: p.push,
		catalog: p.catalog, save: p.ck.save, watermarks: !st.Standby || hasPrimary, health: p.health, metrics: p.metrics, progress: p.snap})

	p.app = &applier{tx: newTxState(start.SkipThrough), cur: newBatch(), hooks: p.sn, handOver: p.push, txs: &p.stats.txs,
		enc:       events.NewEncoder(events.Options{Database: sys.DBName, Now: p.now}, p.catalog),
		maxEvents: p.cfg.MaxBatchEvents, maxBytes: p.cfg.MaxBatchBytes, endLSN: p.cfg.EndLSN}
	p.app.heartbeatToSinks = p.cfg.Heartbeat.ToSinks
	if beats != nil {
		p.beats, p.app.onHeartbeat = beats, beats.received
	}
	if p.cfg.TransactionMarkers {
		p.app.markers = events.NewMarkers(events.Options{Database: sys.DBName, Now: p.now})
	}
	p.sess.dec = walparse.NewDecoder(walparse.Options{ProtoVersion: protoVersion})
	p.sess.app, p.sess.catalog = p.app, p.catalog
	p.sess.statusInterval = p.src.StatusInterval
	p.sess.adjustStatusInterval(ctx)
	p.startFrom = start.From
	p.log.Info("starting replication", zap.String("slot", p.src.Slot), zap.String("publication", p.src.Publication),
		zap.String("database", sys.DBName), zap.Stringer("from", start.From), zap.Stringer("skip_through", start.SkipThrough),
		zap.Bool("fresh", !found), zap.Int("snapshot_tables", len(tables)))
	return nil
}

// run reads the snapshot exported at the slot's creation (if any), then streams; chunks of
// unfinished or requested snapshots, and those the exported snapshot left when the slot's WAL was
// in danger, are read while streaming.
func (p *Pipeline) run(ctx, runCtx context.Context, fail context.CancelCauseFunc) error {
	initialOnly := p.cfg.Snapshot.Mode == SnapshotInitialOnly
	var rest []chunkJob // chunks the exported snapshot left to be read while streaming
	if p.exported != "" {
		var err error
		if rest, err = p.sn.snapshotExported(ctx, runCtx, p.exported, p.startFrom, p.sn.pendingSnapshot()); err != nil {
			return err
		}
		if ctx.Err() != nil || runCtx.Err() != nil {
			return nil
		}
		if initialOnly && len(rest) == 0 {
			p.log.Info("snapshot.mode is initial_only: stopping; the next run streams from the consistent point", zap.Stringer("consistent_point", p.startFrom))
			return nil
		}
	}
	pending := p.sn.pendingSnapshot()
	if initialOnly && len(pending) == 0 {
		p.log.Info("snapshot.mode is initial_only and no snapshot is pending: nothing to do")
		return nil
	}
	if p.exported != "" {
		// The replication connection sat idle in its export for the whole snapshot, where a server's
		// idle_in_transaction_session_timeout may have ended it: stream on a new one.
		p.sess.closeConn()
		if err := p.sess.reopen(ctx); err != nil {
			return err
		}
	} else if err := p.sess.startStreaming(ctx, p.startFrom); err != nil {
		return err
	}
	switch {
	case len(rest) > 0:
		p.sn.jobs.add(rest...)
	case len(pending) > 0:
		p.log.Info("resuming snapshot while streaming", zap.Int("tables", len(pending)))
		p.sn.jobs.add(p.sn.pendingJobs(ctx, pending)...)
	}
	rctx, stop := context.WithCancel(ctx)
	wait := p.sn.startResnap(rctx, fail)
	var pollWG sync.WaitGroup
	if p.beats != nil && !initialOnly {
		pollWG.Add(1)
		go func() {
			defer pollWG.Done()
			p.beats.run(rctx)
		}()
	}
	if *p.cfg.Snapshot.NewTables && !initialOnly {
		pollWG.Add(1)
		go func() {
			defer pollWG.Done()
			p.sn.pollPublication(rctx)
		}()
	}
	defer func() { stop(); wait(); pollWG.Wait() }()
	return p.sess.stream(ctx, runCtx)
}

// push hands b to every sink worker and returns its sequence number. Only one goroutine at a time
// pushes: the snapshot coordinator before streaming starts, the replication goroutine after.
func (p *Pipeline) push(b *batch) uint64 {
	b.refs.Store(int32(len(p.workers)))
	seq := p.tracker.Add(b.pos, b.bytes)
	b.seq = seq
	if b.numbered != nil {
		b.numbered(seq)
	}
	if p.metrics != nil && !b.commitTime.IsZero() {
		p.commits.add(seq, b.commitTime)
	}
	p.stats.events.Add(uint64(len(b.events)))
	p.stats.bytes.Add(uint64(b.bytes))
	p.stats.batches.Add(1)
	// b belongs to the workers from here on: the last one to finish recycles it.
	for _, w := range p.workers {
		w.push(b)
	}
	return seq
}

func (p *Pipeline) logStats(stop <-chan struct{}) {
	if p.cfg.StatsInterval < 0 {
		<-stop
		return
	}
	t := time.NewTicker(p.cfg.StatsInterval)
	defer t.Stop()
	var lastEvents uint64
	last := p.now()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			ev := p.stats.events.Load()
			d := p.Durable()
			batches, bytes := p.tracker.InFlight()
			p.log.Info("progress",
				zap.Uint64("events", ev), zap.Uint64("transactions", p.stats.txs.Load()),
				zap.Float64("events_per_sec", float64(ev-lastEvents)/now.Sub(last).Seconds()),
				zap.Stringer("checkpoint_commit_lsn", d.CommitLSN), zap.Stringer("confirmed_flush_lsn", d.EndLSN),
				zap.Int("batches_in_flight", batches), zap.Int("bytes_in_flight", bytes))
			lastEvents, last = ev, now
		}
	}
}

// PreflightError lists everything the preflight found wrong with the server, each with its fix.
type PreflightError struct {
	Problems []replication.Problem
}

func (e *PreflightError) Error() string {
	s := fmt.Sprintf("the server is not ready for pgstream (%d problem(s)):", len(e.Problems))
	for _, pr := range e.Problems {
		s += fmt.Sprintf("\n  - %s: %s\n    fix: %s", pr.Check, pr.Message, pr.Fix)
	}
	return s
}
