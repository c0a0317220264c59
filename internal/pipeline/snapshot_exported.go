package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/inspect"
	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/replication"
)

// The initial snapshot read inside the snapshot the slot's creation exported, and the guard that
// ends those reads when the slot's WAL is in danger.

// exportGuard lets the slot watch end the reads inside the exported snapshot while they run: the
// slot cannot move before streaming starts, and streaming starts only after them. Safe for
// concurrent use.
type exportGuard struct {
	mu     sync.Mutex
	cancel context.CancelCauseFunc // ends the reads; nil while none run
}

// arm makes trip end the reads with cancel until disarm is called.
func (g *exportGuard) arm(cancel context.CancelCauseFunc) (disarm func()) {
	g.mu.Lock()
	g.cancel = cancel
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		g.cancel = nil
		g.mu.Unlock()
	}
}

// trip ends the reads with cause, once; false when none run or they were ended already.
func (g *exportGuard) trip(cause error) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cancel == nil {
		return false
	}
	g.cancel(cause)
	g.cancel = nil
	return true
}

// slotDanger is why the reads inside the exported snapshot gave way to streaming: the slot watch
// found the slot's WAL in danger.
type slotDanger struct {
	st     inspect.SlotState
	margin int64
}

func (d *slotDanger) Error() string {
	if d.st.SafeWALSize != nil && *d.st.SafeWALSize < d.margin {
		return fmt.Sprintf("the slot's safe_wal_size %d bytes is under the margin of %d bytes (wal_status %s)", *d.st.SafeWALSize, d.margin, d.st.WALStatus)
	}
	return fmt.Sprintf("the slot's wal_status is %s: the server removes WAL the slot needs at its next checkpoint", d.st.WALStatus)
}

// slotEndangered is told by the slot watch that the slot's WAL is in danger (st, margin). While
// the initial snapshot is read inside the slot's exported snapshot, the slot cannot move, so the
// reads stop and exportedReader.read leaves the chunks not read to be read between watermarks while
// streaming. Otherwise there is nothing to do: streaming moves the slot. Safe for concurrent use.
func (g *exportGuard) slotEndangered(st inspect.SlotState, margin int64) {
	g.trip(&slotDanger{st: st, margin: margin})
}

// exportedReader reads the initial snapshot inside the snapshot the slot's creation exported,
// before streaming starts, with up to snapshot.workers connections. read runs on the goroutine that
// runs the pipeline and starts the readers' goroutines, which hand their batches to it over a
// channel: it alone pushes them. Its guard is the one thing other goroutines touch (the slot watch,
// through slotEndangered); the rest is read only once built.
type exportedReader struct {
	d       snapDeps
	chunks  *chunkReader
	planner *chunkPlanner
	guard   *exportGuard // lets the slot watch end the reads
}

// slotEndangered ends the reads when they run (exportGuard.slotEndangered). Safe for concurrent
// use.
func (e *exportedReader) slotEndangered(st inspect.SlotState, margin int64) {
	e.guard.slotEndangered(st, margin)
}

// exportedBatch is a batch a reader of the exported snapshot hands over.
type exportedBatch struct {
	b    *batch
	job  int  // index in jobs
	last bool // the chunk's last batch
}

// read reads every pending chunk inside the snapshot the slot creation exported, with up to
// Snapshot.Workers connections, before streaming starts: the rows as of the slot's consistent
// point, so that the stream from there on adds every later change exactly once. It returns once
// every sink holds every row and the checkpoint records the snapshot complete, or on shutdown (nil)
// or failure.
//
// When the slot watch finds the slot's WAL in danger meanwhile (slotEndangered), the reads stop at
// once and it returns the chunks whose rows were not all handed over, to be read between
// watermarks while streaming: chunks not started, and chunks being read, whose rows handed over
// so far stay delivered (they precede every streamed change) and are read again. Streaming starts
// at the consistent point, so that the slot moves while the rest is read.
func (e *exportedReader) read(ctx, runCtx context.Context, name string, startFrom lsn.LSN, tables []checkpoint.TableSnapshot) (rest []chunkJob, err error) {
	jobs := e.planner.queue(ctx, tables)
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(runCtx, func() { cancel(context.Cause(runCtx)) })
	defer stop()

	n := max(1, min(e.d.cfg.Snapshot.Workers, len(jobs)))
	conns, err := e.connect(wctx, name, n)
	defer func() {
		for _, c := range conns {
			closeSQL(c)
		}
	}()
	if err != nil {
		return nil, err
	}
	e.d.log.Info("snapshot started", zap.Int("tables", len(tables)), zap.Int("chunks", len(jobs)),
		zap.Int("workers", n), zap.Stringer("consistent_point", startFrom), zap.String("exported_snapshot", name))
	defer e.d.progress.reading()()
	if e.d.watermarks {
		// Only when the chunks not read can be read between watermarks while streaming.
		defer e.guard.arm(cancel)()
	}
	items, failed := e.startReaders(wctx, cancel, conns, jobs)
	e.d.health.Set(ComponentSource, true, "snapshotting")
	defer e.d.health.Done(LoopSnapshot)
	lastSeq, handed := e.handOver(wctx, items, jobs)
	if err := failed(); err != nil {
		return nil, err
	}
	if ctx.Err() != nil || runCtx.Err() != nil {
		return nil, nil
	}
	var danger *slotDanger
	if errors.As(context.Cause(wctx), &danger) {
		for i, j := range jobs {
			if !handed[i] {
				rest = append(rest, j)
			}
		}
		if len(rest) > 0 {
			e.gaveWay(danger, len(jobs)-len(rest), rest)
			return rest, nil
		}
		// Every chunk was handed over before the reads were ended: the snapshot is complete.
	}
	return nil, e.finish(ctx, runCtx, conns, lastSeq, len(jobs))
}

// connect opens n connections that import the exported snapshot name. It returns the connections
// opened so far with an error too: the caller closes them.
func (e *exportedReader) connect(ctx context.Context, name string, n int) ([]*pgconn.PgConn, error) {
	conns := make([]*pgconn.PgConn, 0, n)
	for range n {
		c, err := replication.NewSQLConn(ctx, e.d.src)
		if err != nil {
			return conns, fmt.Errorf("open snapshot connection: %w", err)
		}
		conns = append(conns, c)
		if err := pgsql.ImportSnapshot(ctx, c, name); err != nil {
			return conns, fmt.Errorf("import the slot's exported snapshot %s: %w (the replication connection that exported it must stay open; restart pgstream to resume the snapshot while streaming)", name, err)
		}
	}
	return conns, nil
}

// startReaders starts a reader per connection, taking the jobs in order, and returns the channel
// of their batches, closed once they all stopped, and failed, which returns the first read that
// failed (and ended the others through cancel) once the channel is closed.
func (e *exportedReader) startReaders(ctx context.Context, cancel context.CancelCauseFunc, conns []*pgconn.PgConn, jobs []chunkJob) (<-chan exportedBatch, func() error) {
	items := make(chan exportedBatch)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	maxEvents, maxBytes := e.d.cfg.MaxBatchEvents, e.d.cfg.MaxBatchBytes
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := snapshot.NewReader(c, e.d.db, e.d.now)
			pt := &pubTables{publication: e.d.src.Publication}
			send := func(it exportedBatch) bool {
				select {
				case items <- it:
					return true
				case <-ctx.Done():
					discard(it.b)
					return false
				}
			}
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) {
					return
				}
				j := &jobs[i]
				err := e.chunks.readChunk(ctx, c, r, pt, *j, func(full *batch) bool { return send(exportedBatch{b: full, job: i}) }, maxEvents, maxBytes,
					func(last *batch) bool { return send(exportedBatch{b: last, job: i, last: true}) })
				if err != nil {
					if ctx.Err() == nil {
						err = fmt.Errorf("snapshot of %s, chunk %d: %w", j.table.Name(), j.idx, err)
						firstErr.CompareAndSwap(nil, &err)
						cancel(err)
					}
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(items) }()
	return items, func() error {
		if err := firstErr.Load(); err != nil {
			return *err
		}
		return nil
	}
}

// handOver pushes the readers' batches to the sinks, within the in-flight bound, until items is
// closed, and marks every chunk whose last batch it pushed. It returns the last batch's number and
// which jobs had all their rows handed over. Once ctx ended it discards what comes.
func (e *exportedReader) handOver(ctx context.Context, items <-chan exportedBatch, jobs []chunkJob) (lastSeq uint64, handed []bool) {
	handed = make([]bool, len(jobs)) // every row of the chunk is handed over
	for it := range items {
		e.d.health.Beat(LoopSnapshot)
		if !e.waitInFlight(ctx) {
			discard(it.b)
			continue
		}
		j := &jobs[it.job]
		e.d.progress.handed(len(it.b.events))
		e.d.metrics.SnapshotRows(j.table.Name(), len(it.b.events))
		seq := e.d.push(it.b)
		lastSeq = seq
		if it.last {
			e.d.progress.state.mark(snapMark{seq: seq, gen: j.table.Gen, oid: j.table.OID, chunk: j.idx})
			e.d.progress.chunkDone()
			handed[it.job] = true
		}
	}
	return lastSeq, handed
}

// finish waits until every sink holds every batch up to lastSeq, saves the checkpoint that records
// the snapshot complete and ends the exported snapshot's transactions. It returns nil on shutdown.
func (e *exportedReader) finish(ctx, runCtx context.Context, conns []*pgconn.PgConn, lastSeq uint64, chunks int) error {
	for {
		if _, seq := e.d.tracker.AckedSeq(); seq >= lastSeq {
			break
		}
		select {
		case <-e.d.tracker.Changed():
		case <-ctx.Done():
			return nil
		case <-runCtx.Done():
			return nil
		}
	}
	if err := e.d.save(); err != nil {
		return err
	}
	for _, c := range conns {
		_ = pgsql.Exec(ctx, c, "COMMIT")
	}
	e.d.log.Info("snapshot complete", zap.Int64("rows", e.d.progress.handedRows()), zap.Int("chunks", chunks))
	return nil
}

// gaveWay reports that the reads inside the exported snapshot stopped because the slot's WAL is in
// danger, with done chunks handed over and rest left to be read while streaming.
func (e *exportedReader) gaveWay(danger *slotDanger, done int, rest []chunkJob) {
	e.d.progress.gaveWay()
	e.d.metrics.SnapshotGuardSwitch()
	e.d.log.Warn("the replication slot's WAL is in danger and cannot be released while the initial snapshot is read: "+
		"streaming starts now, and the snapshot's remaining chunks are read between watermarks while streaming",
		zap.String("slot", e.d.src.Slot), zap.String("why", danger.Error()), zap.String("wal_status", danger.st.WALStatus),
		zap.Int64p("safe_wal_size", danger.st.SafeWALSize), zap.Int64("margin", danger.margin),
		zap.Int64("retained_wal_bytes", danger.st.RetainedWAL), zap.Int("chunks_done", done), zap.Int("chunks_left", len(rest)))
}

// waitInFlight waits until the bytes in flight are below the bound; false when ctx ended first.
func (e *exportedReader) waitInFlight(ctx context.Context) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		if _, inflight := e.d.tracker.InFlight(); inflight < e.d.cfg.MaxInFlightBytes {
			return true
		}
		select {
		case <-e.d.tracker.Changed():
		case <-ctx.Done():
		}
	}
}
