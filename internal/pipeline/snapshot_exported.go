package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/inspect"
	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/replication"
	"github.com/pgstream/pgstream/sinks"
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
// reads stop and snapshotExported leaves the chunks not read to be read between watermarks while
// streaming. Otherwise there is nothing to do: streaming moves the slot. Safe for concurrent use.
func (sn *snapshotter) slotEndangered(st inspect.SlotState, margin int64) {
	sn.guard.trip(&slotDanger{st: st, margin: margin})
}

// snapshotExported reads every pending chunk inside the snapshot the slot creation exported, with
// up to Snapshot.Workers connections, before streaming starts: the rows as of the slot's consistent
// point, so that the stream from there on adds every later change exactly once. It returns once
// every sink holds every row and the checkpoint records the snapshot complete, or on shutdown (nil)
// or failure.
//
// When the slot watch finds the slot's WAL in danger meanwhile (slotEndangered), the reads stop at
// once and it returns the chunks whose rows were not all handed over, to be read between
// watermarks while streaming: chunks not started, and chunks being read, whose rows handed over
// so far stay delivered (they precede every streamed change) and are read again. Streaming starts
// at the consistent point, so that the slot moves while the rest is read.
func (sn *snapshotter) snapshotExported(ctx, runCtx context.Context, name string, startFrom lsn.LSN, tables []checkpoint.TableSnapshot) (rest []chunkJob, err error) {
	jobs := sn.pendingJobs(ctx, tables)
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(runCtx, func() { cancel(context.Cause(runCtx)) })
	defer stop()

	n := max(1, min(sn.cfg.Workers, len(jobs)))
	conns := make([]*pgconn.PgConn, 0, n)
	defer func() {
		for _, c := range conns {
			closeSQL(c)
		}
	}()
	for range n {
		c, err := replication.NewSQLConn(wctx, sn.src)
		if err != nil {
			return nil, fmt.Errorf("open snapshot connection: %w", err)
		}
		conns = append(conns, c)
		if err := pgsql.ImportSnapshot(wctx, c, name); err != nil {
			return nil, fmt.Errorf("import the slot's exported snapshot %s: %w (the replication connection that exported it must stay open; restart pgstream to resume the snapshot while streaming)", name, err)
		}
	}
	sn.log.Info("snapshot started", zap.Int("tables", len(tables)), zap.Int("chunks", len(jobs)),
		zap.Int("workers", n), zap.Stringer("consistent_point", startFrom), zap.String("exported_snapshot", name))
	sn.stats.active.Add(1)
	defer sn.stats.active.Add(-1)
	if sn.watermarks {
		// Only when the chunks not read can be read between watermarks while streaming.
		defer sn.guard.arm(cancel)()
	}

	type item struct {
		b    *batch
		job  int  // index in jobs
		last bool // the chunk's last batch
	}
	items := make(chan item)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	maxEvents, maxBytes := sn.maxBatchEvents, sn.maxBatchBytes
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := snapshot.NewReader(c, sn.db, sn.now)
			pt := &pubTables{publication: sn.src.Publication}
			send := func(it item) bool {
				select {
				case items <- it:
					return true
				case <-wctx.Done():
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
				err := sn.readChunk(wctx, c, r, pt, *j, func(full *batch) bool { return send(item{b: full, job: i}) }, maxEvents, maxBytes,
					func(last *batch) bool { return send(item{b: last, job: i, last: true}) })
				if err != nil {
					if wctx.Err() == nil {
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

	var lastSeq uint64
	handed := make([]bool, len(jobs)) // every row of the chunk is handed over
	sn.health.Set(ComponentSource, true, "snapshotting")
	defer sn.health.Done(LoopSnapshot)
	for it := range items {
		sn.health.Beat(LoopSnapshot)
		if !sn.waitInFlight(wctx) {
			discard(it.b)
			continue
		}
		j := &jobs[it.job]
		sn.stats.rows.Add(int64(len(it.b.events)))
		sn.metrics.SnapshotRows(j.table.Name(), len(it.b.events))
		seq := sn.push(it.b)
		lastSeq = seq
		if it.last {
			sn.state.mark(snapMark{seq: seq, gen: j.table.Gen, oid: j.table.OID, chunk: j.idx})
			sn.stats.chunks.Add(1)
			handed[it.job] = true
		}
	}
	if e := firstErr.Load(); e != nil {
		return nil, *e
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
			sn.gaveWay(danger, len(jobs)-len(rest), rest)
			return rest, nil
		}
		// Every chunk was handed over before the reads were ended: the snapshot is complete.
	}
	// Every chunk is handed over: wait until every sink holds them and the checkpoint says so.
	for {
		if _, seq := sn.tracker.AckedSeq(); seq >= lastSeq {
			break
		}
		select {
		case <-sn.tracker.Changed():
		case <-ctx.Done():
			return nil, nil
		case <-runCtx.Done():
			return nil, nil
		}
	}
	if err := sn.save(); err != nil {
		return nil, err
	}
	for _, c := range conns {
		_ = pgsql.Exec(ctx, c, "COMMIT")
	}
	sn.log.Info("snapshot complete", zap.Int64("rows", sn.stats.rows.Load()), zap.Int("chunks", len(jobs)))
	return nil, nil
}

// gaveWay reports that the reads inside the exported snapshot stopped because the slot's WAL is in
// danger, with done chunks handed over and rest left to be read while streaming.
func (sn *snapshotter) gaveWay(danger *slotDanger, done int, rest []chunkJob) {
	sn.guardSwitched.Store(true)
	sn.metrics.SnapshotGuardSwitch()
	sn.log.Warn("the replication slot's WAL is in danger and cannot be released while the initial snapshot is read: "+
		"streaming starts now, and the snapshot's remaining chunks are read between watermarks while streaming",
		zap.String("slot", sn.src.Slot), zap.String("why", danger.Error()), zap.String("wal_status", danger.st.WALStatus),
		zap.Int64p("safe_wal_size", danger.st.SafeWALSize), zap.Int64("margin", danger.margin),
		zap.Int64("retained_wal_bytes", danger.st.RetainedWAL), zap.Int("chunks_done", done), zap.Int("chunks_left", len(rest)))
}

// waitInFlight waits until the bytes in flight are below the bound; false when ctx ended first.
func (sn *snapshotter) waitInFlight(ctx context.Context) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		if _, inflight := sn.tracker.InFlight(); inflight < sn.maxInFlight {
			return true
		}
		select {
		case <-sn.tracker.Changed():
		case <-ctx.Done():
		}
	}
}

// paceRows is how many rows a snapshot reader reads between two waits of the row rate limit.
const paceRows = 256

// newRowLimit returns the limiter of snapshot.max_rows_per_second, nil when there is no cap. Its
// burst is a tenth of a second's rows, at least paceRows.
func newRowLimit(perSecond int) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), max(paceRows, perSecond/10))
}

// readChunk reads one chunk on c, in whatever transaction c has open. Full batches go to full
// (when maxEvents > 0) and the rest, possibly empty, to last; either returning false stops the
// read. A table that no longer exists reads as empty.
func (sn *snapshotter) readChunk(ctx context.Context, c *pgconn.PgConn, r *snapshot.Reader, pt *pubTables, j chunkJob,
	full func(*batch) bool, maxEvents, maxBytes int, last func(*batch) bool) error {
	pub, err := pt.lookup(ctx, c, j.table.OID)
	if err != nil {
		return err
	}
	b := newBatch()
	stopped := errors.New("stopped")
	unpaced := 0 // rows read and not yet paced by the row rate limit
	_, err = r.ReadChunk(ctx, j.table, pub.Columns, pub.RowFilter, j.idx, func(ev sinks.Event) error {
		if sn.limit != nil {
			if unpaced++; unpaced == paceRows {
				if err := sn.limit.WaitN(ctx, unpaced); err != nil {
					return err
				}
				unpaced = 0
			}
		}
		b.add(ev)
		if maxEvents > 0 && (len(b.events) >= maxEvents || b.bytes >= maxBytes) {
			if !full(b) {
				return stopped
			}
			b = newBatch()
		}
		return nil
	})
	if errors.Is(err, snapshot.ErrTableGone) {
		sn.log.Warn("table dropped during its snapshot; nothing left to read", zap.String("table", j.table.Name()), zap.Uint32("chunk", j.idx))
		discard(b)
		b = newBatch()
		err = nil
	}
	if err == nil && sn.limit != nil && unpaced > 0 {
		err = sn.limit.WaitN(ctx, unpaced)
	}
	if err != nil {
		if !errors.Is(err, stopped) {
			discard(b)
		}
		return err
	}
	if !last(b) {
		return context.Cause(ctx)
	}
	return nil
}
