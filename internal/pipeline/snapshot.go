package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/lsn"
	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/replication"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/walparse"
)

// Prefixes of the logical decoding messages that steer snapshots. Messages with either prefix are
// consumed by pgstream and never delivered as events.
const (
	// WatermarkPrefix marks the non-transactional low and high watermarks written around a chunk
	// read while streaming.
	WatermarkPrefix = "pgstream.watermark"
	// RequestPrefix marks a transactional request to re-snapshot tables (see Request).
	RequestPrefix = "pgstream.snapshot"
)

// Request is the JSON content of a snapshot request: pg_logical_emit_message(true,
// 'pgstream.snapshot', '{"slot":"pgstream","tables":["public.orders"]}'). A pgstream streaming from
// that slot (every pgstream on the database when Slot is empty) re-reads the tables while it keeps
// streaming, starting where the request's transaction commits.
type Request struct {
	Slot   string   `json:"slot,omitempty"`
	Tables []string `json:"tables"`
}

// watermark is the JSON content of a watermark message.
type watermark struct {
	Slot string `json:"slot"`
	Run  string `json:"run"` // this process's run id: watermarks of an earlier run are ignored
	ID   uint64 `json:"id"`
	High bool   `json:"high"`
}

// chunkJob is one chunk of a table snapshot to read.
type chunkJob struct {
	table *checkpoint.TableSnapshot // the plan; read only (its Done is not consulted)
	idx   uint32
}

// snapMark is a change to the durable snapshot state that takes effect once the batch seq (and every
// batch before it) is acknowledged by every sink: a table added to the snapshot, or a chunk done.
type snapMark struct {
	seq   uint64
	add   *checkpoint.TableSnapshot
	gen   lsn.LSN
	oid   uint32
	chunk uint32
}

// snapState is the snapshot progress: the marks waiting for acknowledgement and the durable list the
// checkpoint holds. marks is shared by the producer and the checkpointer; tables belongs to
// saveCheckpoint (under Pipeline.saveMu).
type snapState struct {
	mu     sync.Mutex
	marks  []snapMark
	tables []checkpoint.TableSnapshot
	// published holds the OIDs of the publication's tables taken into account (see
	// checkpoint.Checkpoint.Published); nil when not known. pubChanged asks for a save.
	published  map[uint32]bool
	pubChanged bool
}

// publishedList returns published as the checkpoint stores it.
func (s *snapState) publishedList() []uint32 {
	if s.published == nil {
		return nil
	}
	out := make([]uint32, 0, len(s.published))
	for oid := range s.published {
		out = append(out, oid)
	}
	slices.Sort(out)
	return out
}

func (s *snapState) setPublished(oids []uint32) {
	s.published = make(map[uint32]bool, len(oids))
	for _, oid := range oids {
		s.published[oid] = true
	}
}

func (s *snapState) mark(m snapMark) {
	s.mu.Lock()
	s.marks = append(s.marks, m)
	s.mu.Unlock()
}

// apply moves the marks of batches up to seq into tables, and reports the tables completed (nil when
// nothing changed, with changed false).
func (s *snapState) apply(seq uint64) (completed []string, changed bool) {
	s.mu.Lock()
	n := 0
	for n < len(s.marks) && s.marks[n].seq <= seq {
		n++
	}
	ready := append([]snapMark(nil), s.marks[:n]...)
	s.marks = append(s.marks[:0], s.marks[n:]...)
	s.mu.Unlock()
	changed = s.pubChanged
	s.pubChanged = false
	for _, m := range ready {
		changed = true
		if m.add != nil {
			s.tables = append(s.tables, m.add.Clone())
			if s.published != nil {
				s.published[m.add.OID] = true
			}
			continue
		}
		for i := range s.tables {
			t := &s.tables[i]
			if t.Gen != m.gen || t.OID != m.oid {
				continue
			}
			t.MarkDone(m.chunk)
			if t.Complete() {
				completed = append(completed, t.Name())
				s.tables = append(s.tables[:i], s.tables[i+1:]...)
			}
			break
		}
	}
	return completed, changed
}

// snapStats counts snapshot progress for the progress log.
type snapStats struct {
	started     atomic.Int64 // unix nanoseconds when the chunks being read were queued
	rowsAtStart atomic.Int64
	rows        atomic.Int64
	chunks      atomic.Int64 // chunks read by this run
	totalChunks atomic.Int64 // chunks this run has to read
	estRows     atomic.Int64 // estimated rows of the chunks this run has to read (pg_class.reltuples)
	active      atomic.Int32 // snapshots being read
}

// jobQueue is the chunks waiting for a reader while streaming. The replication goroutine adds to it
// without blocking.
type jobQueue struct {
	mu   sync.Mutex
	jobs []chunkJob
	wake chan struct{} // cap 1
}

func (q *jobQueue) add(jobs ...chunkJob) {
	q.mu.Lock()
	q.jobs = append(q.jobs, jobs...)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *jobQueue) next(ctx context.Context) (chunkJob, bool) {
	for {
		q.mu.Lock()
		if len(q.jobs) > 0 {
			j := q.jobs[0]
			q.jobs = q.jobs[1:]
			more := len(q.jobs) > 0
			q.mu.Unlock()
			if more {
				select {
				case q.wake <- struct{}{}:
				default:
				}
			}
			return j, true
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-ctx.Done():
			return chunkJob{}, false
		}
	}
}

// window is one chunk read between a low and a high watermark (DBLog). The reader registers it
// before writing the low watermark and hands over the chunk's rows before writing the high one; the
// replication goroutine records the keys of the table changed in between and, at the high watermark,
// delivers the rows whose keys did not change, so that the stream's newer versions win.
type window struct {
	id  uint64
	job chunkJob

	// Owned by the replication goroutine.
	open      bool
	keys      map[string]struct{}
	truncated bool

	rows    *batch // set by the reader under windows.mu before the high watermark is written
	aborted atomic.Bool
	done    chan struct{} // closed by the replication goroutine once the rows are handed to the sinks
}

// keepUnchanged drops from rows the rows whose keys changed inside the window (all of them after a
// truncate): the stream has delivered newer versions of them. Rows without a key are kept.
func (w *window) keepUnchanged(rows *batch) {
	kept := rows.events[:0]
	for _, ev := range rows.events {
		if w.truncated {
			continue
		}
		if ev.Key != nil {
			if _, changed := w.keys[string(ev.Key)]; changed {
				continue
			}
		}
		kept = append(kept, ev)
	}
	clear(rows.events[len(kept):])
	rows.events = kept
}

type windows struct {
	mu sync.Mutex
	m  map[uint64]*window
}

func (ws *windows) put(w *window) {
	ws.mu.Lock()
	ws.m[w.id] = w
	ws.mu.Unlock()
}

func (ws *windows) get(id uint64) *window {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.m[id]
}

func (ws *windows) setRows(id uint64, b *batch) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := ws.m[id]
	if w == nil {
		return false
	}
	w.rows = b
	return true
}

// take removes window id and returns its rows.
func (ws *windows) take(id uint64) *batch {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := ws.m[id]
	if w == nil {
		return nil
	}
	delete(ws.m, id)
	b := w.rows
	w.rows = nil
	return b
}

// abort removes window id after its reader failed.
func (ws *windows) abort(id uint64) {
	ws.mu.Lock()
	w := ws.m[id]
	delete(ws.m, id)
	ws.mu.Unlock()
	if w != nil {
		w.aborted.Store(true)
		if w.rows != nil {
			discard(w.rows)
		}
	}
}

// discard recycles a batch that was never handed to the sinks.
func discard(b *batch) {
	b.reset()
	batchPool.Put(b)
}

func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// publishedTables lists the tables of the publication.
func (p *Pipeline) publishedTables(ctx context.Context) ([]snapshot.Table, error) {
	conn, err := p.catalog.pg(ctx)
	if err != nil {
		return nil, err
	}
	tables, err := snapshot.ListTables(ctx, conn, p.src.Publication)
	if err != nil {
		return nil, fmt.Errorf("list the tables of publication %s: %w", p.src.Publication, err)
	}
	return tables, nil
}

// pendingJobs returns a job for every chunk not done of the given tables, in table order, and
// counts them in the progress statistics.
func (p *Pipeline) pendingJobs(ctx context.Context, tables []checkpoint.TableSnapshot) []chunkJob {
	// pg_class.reltuples of the published tables, for the estimate of the time left; unknown
	// (0) when the listing fails or the table left the publication.
	reltuples := map[uint32]float64{}
	if pub, err := p.publishedTables(ctx); err == nil {
		for _, t := range pub {
			reltuples[t.OID] = t.Rows
		}
	}
	var jobs []chunkJob
	var est float64
	for i := range tables {
		t := tables[i].Clone()
		pending := t.Pending()
		for _, c := range pending {
			jobs = append(jobs, chunkJob{table: &t, idx: c})
		}
		if rows := reltuples[t.OID]; rows > 0 {
			est += rows * float64(len(pending)) / float64(t.Chunks())
		}
	}
	st := &p.snapStats
	if st.chunks.Load() >= st.totalChunks.Load() && st.active.Load() == 0 {
		// A new snapshot after an idle time: its rate and estimate start now.
		st.started.Store(p.now().UnixNano())
		st.rowsAtStart.Store(st.rows.Load())
		st.estRows.Store(st.rows.Load())
	}
	st.totalChunks.Add(int64(len(jobs)))
	st.estRows.Add(int64(est))
	return jobs
}

// pubTables resolves the publication's column list and row filter of tables by OID, loading the
// publication's tables again when an OID is not known yet.
type pubTables struct {
	publication string
	byOID       map[uint32]snapshot.Table
}

func (pt *pubTables) lookup(ctx context.Context, conn *pgconn.PgConn, oid uint32) (snapshot.Table, error) {
	if t, ok := pt.byOID[oid]; ok {
		return t, nil
	}
	tables, err := snapshot.ListTables(ctx, conn, pt.publication)
	if err != nil {
		return snapshot.Table{}, fmt.Errorf("list the tables of publication %s: %w", pt.publication, err)
	}
	pt.byOID = make(map[uint32]snapshot.Table, len(tables))
	for _, t := range tables {
		pt.byOID[t.OID] = t
	}
	return pt.byOID[oid], nil // a table no longer published is read whole
}

// snapshotExported reads every pending chunk inside the snapshot the slot creation exported, with
// up to Snapshot.Workers connections, before streaming starts: the rows as of the slot's consistent
// point, so that the stream from there on adds every later change exactly once. It returns once
// every sink holds every row and the checkpoint records the snapshot complete, or on shutdown (nil)
// or failure.
func (p *Pipeline) snapshotExported(ctx, runCtx context.Context, name string, tables []checkpoint.TableSnapshot) error {
	jobs := p.pendingJobs(ctx, tables)
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(runCtx, func() { cancel(context.Cause(runCtx)) })
	defer stop()

	n := max(1, min(p.cfg.Snapshot.Workers, len(jobs)))
	conns := make([]*pgconn.PgConn, 0, n)
	defer func() {
		for _, c := range conns {
			closeSQL(c)
		}
	}()
	for range n {
		c, err := replication.NewSQLConn(wctx, p.src)
		if err != nil {
			return fmt.Errorf("open snapshot connection: %w", err)
		}
		conns = append(conns, c)
		if err := replication.ImportSnapshot(wctx, c, name); err != nil {
			return fmt.Errorf("import the slot's exported snapshot %s: %w (the replication connection that exported it must stay open; restart pgstream to resume the snapshot while streaming)", name, err)
		}
	}
	p.log.Info("snapshot started", zap.Int("tables", len(tables)), zap.Int("chunks", len(jobs)),
		zap.Int("workers", n), zap.Stringer("consistent_point", p.startFrom), zap.String("exported_snapshot", name))
	p.snapStats.active.Add(1)
	defer p.snapStats.active.Add(-1)

	type item struct {
		b    *batch
		done *chunkJob
	}
	items := make(chan item)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	maxEvents, maxBytes := p.cfg.MaxBatchEvents, p.cfg.MaxBatchBytes
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := snapshot.NewReader(c, p.ident.Database, p.now)
			pt := &pubTables{publication: p.src.Publication}
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
				err := p.readChunk(wctx, c, r, pt, *j, func(full *batch) bool { return send(item{b: full}) }, maxEvents, maxBytes,
					func(last *batch) bool { return send(item{b: last, done: j}) })
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
	for it := range items {
		if !p.waitInFlight(wctx) {
			discard(it.b)
			continue
		}
		p.snapStats.rows.Add(int64(len(it.b.events)))
		seq := p.push(it.b)
		lastSeq = seq
		if it.done != nil {
			p.snap.mark(snapMark{seq: seq, gen: it.done.table.Gen, oid: it.done.table.OID, chunk: it.done.idx})
			p.snapStats.chunks.Add(1)
		}
	}
	if e := firstErr.Load(); e != nil {
		return *e
	}
	if ctx.Err() != nil || runCtx.Err() != nil {
		return nil
	}
	// Every chunk is handed over: wait until every sink holds them and the checkpoint says so.
	for {
		if _, seq := p.tracker.AckedSeq(); seq >= lastSeq {
			break
		}
		select {
		case <-p.tracker.Changed():
		case <-ctx.Done():
			return nil
		case <-runCtx.Done():
			return nil
		}
	}
	if err := p.saveCheckpoint(); err != nil {
		return err
	}
	for _, c := range conns {
		_, _ = replication.Value(ctx, c, "COMMIT")
	}
	p.log.Info("snapshot complete", zap.Int64("rows", p.snapStats.rows.Load()), zap.Int("chunks", len(jobs)))
	return nil
}

// waitInFlight waits until the bytes in flight are below the bound; false when ctx ended first.
func (p *Pipeline) waitInFlight(ctx context.Context) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		if _, inflight := p.tracker.InFlight(); inflight < p.cfg.MaxInFlightBytes {
			return true
		}
		select {
		case <-p.tracker.Changed():
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
func (p *Pipeline) readChunk(ctx context.Context, c *pgconn.PgConn, r *snapshot.Reader, pt *pubTables, j chunkJob,
	full func(*batch) bool, maxEvents, maxBytes int, last func(*batch) bool) error {
	pub, err := pt.lookup(ctx, c, j.table.OID)
	if err != nil {
		return err
	}
	b := newBatch()
	stopped := errors.New("stopped")
	unpaced := 0 // rows read and not yet paced by the row rate limit
	_, err = r.ReadChunk(ctx, j.table, pub.Columns, pub.RowFilter, j.idx, func(ev sinks.Event) error {
		if p.snapLimit != nil {
			if unpaced++; unpaced == paceRows {
				if err := p.snapLimit.WaitN(ctx, unpaced); err != nil {
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
		p.log.Warn("table dropped during its snapshot; nothing left to read", zap.String("table", j.table.Name()), zap.Uint32("chunk", j.idx))
		discard(b)
		b = newBatch()
		err = nil
	}
	if err == nil && p.snapLimit != nil && unpaced > 0 {
		err = p.snapLimit.WaitN(ctx, unpaced)
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

// startResnap starts the readers of chunks while streaming (resumed and online snapshots). They
// stop when ctx ends; wait waits for them.
func (p *Pipeline) startResnap(ctx context.Context, fail context.CancelCauseFunc) (wait func()) {
	var wg sync.WaitGroup
	for i := range p.cfg.Snapshot.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.resnapWorker(ctx, i); err != nil {
				fail(err)
			}
		}()
	}
	return wg.Wait
}

// resnapWorker reads queued chunks one at a time between watermarks, retrying a failed chunk with
// backoff on a new connection.
func (p *Pipeline) resnapWorker(ctx context.Context, worker int) error {
	var conn *pgconn.PgConn
	var r *snapshot.Reader
	pt := &pubTables{publication: p.src.Publication}
	defer func() { closeSQL(conn) }()
	for {
		j, ok := p.jobs.next(ctx)
		if !ok {
			return nil
		}
		backoff := p.cfg.ReconnectMin
		for attempt := 1; ; attempt++ {
			if conn == nil || conn.IsClosed() {
				c, err := replication.NewSQLConn(ctx, p.src)
				if err == nil {
					conn, r, pt.byOID = c, snapshot.NewReader(c, p.ident.Database, p.now), nil
				} else if ctx.Err() != nil {
					return nil
				} else {
					p.log.Warn("snapshot connection failed", zap.Error(err))
				}
			}
			var err error
			if conn != nil && !conn.IsClosed() {
				if err = p.readWindow(ctx, conn, r, pt, j); err == nil {
					break
				}
			}
			if ctx.Err() != nil {
				return nil
			}
			if attempt >= 5 {
				return fmt.Errorf("snapshot of %s, chunk %d: giving up after %d attempts: %w", j.table.Name(), j.idx, attempt, err)
			}
			p.log.Warn("snapshot chunk failed; retrying", zap.String("table", j.table.Name()), zap.Uint32("chunk", j.idx),
				zap.Int("worker", worker), zap.Error(err), zap.Duration("backoff", backoff))
			if conn != nil {
				_, _ = replication.Value(ctx, conn, "ROLLBACK")
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, p.cfg.ReconnectMax)
		}
	}
}

// readWindow reads one chunk between a low and a high watermark and waits until the replication
// goroutine has handed its rows to the sinks.
func (p *Pipeline) readWindow(ctx context.Context, conn *pgconn.PgConn, r *snapshot.Reader, pt *pubTables, j chunkJob) error {
	w := &window{id: p.windowSeq.Add(1), job: j, done: make(chan struct{})}
	p.wins.put(w)
	ok := false
	defer func() {
		if !ok {
			p.wins.abort(w.id)
		}
	}()
	if err := p.writeWatermark(ctx, conn, w.id, false); err != nil {
		return err
	}
	// A transaction whose commit record precedes the low watermark may not be visible yet when the
	// watermark is written (between its commit record and its removal from the process array, which
	// a synchronous standby can make long): the chunk's snapshot would miss it while the stream
	// delivers it before the window. So the chunk is read in a snapshot in which every transaction
	// running after the watermark has ended; txid_status cannot tell, as it reports a transaction
	// committed from the commit log before other snapshots see it. The txid_ functions exist on every
	// supported server (the pg_snapshot ones only from 13 on).
	xip, err := replication.Value(ctx, conn, "SELECT coalesce(array_agg(x)::text, '{}') FROM txid_snapshot_xip(txid_current_snapshot()) x")
	if err != nil {
		return fmt.Errorf("read running transactions: %w", err)
	}
	for {
		// The first statement of the transaction takes its snapshot, which the check then reads.
		if _, err := replication.Value(ctx, conn, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"); err != nil {
			return fmt.Errorf("begin chunk read: %w", err)
		}
		if xip, err = replication.Value(ctx, conn, "SELECT coalesce(array_agg(x)::text, '{}') FROM unnest($1::int8[]) x "+
			"WHERE NOT txid_visible_in_snapshot(x, txid_current_snapshot())", xip); err != nil {
			return fmt.Errorf("wait for running transactions: %w", err)
		}
		if xip == "{}" {
			break
		}
		if _, err := replication.Value(ctx, conn, "ROLLBACK"); err != nil {
			return fmt.Errorf("wait for running transactions: %w", err)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
	var rows *batch
	err = p.readChunk(ctx, conn, r, pt, j, nil, 0, 0, func(b *batch) bool { rows = b; return true })
	if err != nil {
		return err
	}
	if _, err := replication.Value(ctx, conn, "COMMIT"); err != nil {
		discard(rows)
		return fmt.Errorf("end chunk read: %w", err)
	}
	if !p.wins.setRows(w.id, rows) {
		discard(rows)
		return errors.New("watermark window lost")
	}
	if err := p.writeWatermark(ctx, conn, w.id, true); err != nil {
		return err
	}
	ok = true
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return nil
	}
}

func (p *Pipeline) writeWatermark(ctx context.Context, conn *pgconn.PgConn, id uint64, high bool) error {
	content, _ := json.Marshal(watermark{Slot: p.src.Slot, Run: p.runID, ID: id, High: high})
	if _, err := replication.Value(ctx, conn, "SELECT pg_logical_emit_message(false, $1, $2)::text", WatermarkPrefix, string(content)); err != nil {
		return fmt.Errorf("write watermark: %w", err)
	}
	return nil
}

// watching reports whether a watermark window is open.
func (p *Pipeline) watching() bool { return len(p.openRel) > 0 }

// keyChanged records, for every open window of the relation, that the row with key k changed.
func (p *Pipeline) keyChanged(relID uint32, k []byte) {
	ws := p.openRel[relID]
	if len(ws) == 0 {
		return
	}
	for _, w := range ws {
		if k != nil {
			w.keys[string(k)] = struct{}{}
		}
	}
	p.pruneAborted(relID)
}

// truncated records, for every open window of the relation, that all its rows changed.
func (p *Pipeline) truncated(relID uint32) {
	for _, w := range p.openRel[relID] {
		w.truncated = true
	}
	p.pruneAborted(relID)
}

func (p *Pipeline) pruneAborted(relID uint32) {
	ws := p.openRel[relID]
	kept := ws[:0]
	for _, w := range ws {
		if !w.aborted.Load() {
			kept = append(kept, w)
		}
	}
	clear(ws[len(kept):])
	if len(kept) == 0 {
		delete(p.openRel, relID)
		return
	}
	p.openRel[relID] = kept
}

// watermark handles a watermark of this run: the low one opens the chunk's window, the high one
// closes it and returns the chunk's rows whose keys did not change inside the window.
func (p *Pipeline) watermark(m *walparse.LogicalMessage) (*batch, func(seq uint64)) {
	var wm watermark
	if err := json.Unmarshal(m.Content, &wm); err != nil || wm.Slot != p.src.Slot || wm.Run != p.runID {
		return nil, nil
	}
	w := p.wins.get(wm.ID)
	if w == nil {
		return nil, nil
	}
	oid := w.job.table.OID
	if !wm.High {
		if !w.open {
			w.open = true
			w.keys = make(map[string]struct{})
			p.openRel[oid] = append(p.openRel[oid], w)
		}
		return nil, nil
	}
	rows := p.wins.take(wm.ID)
	ws := p.openRel[oid]
	for i, o := range ws {
		if o == w {
			p.openRel[oid] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(p.openRel[oid]) == 0 {
		delete(p.openRel, oid)
	}
	if rows == nil {
		return nil, nil
	}
	w.keepUnchanged(rows)
	p.snapStats.rows.Add(int64(len(rows.events)))
	return rows, func(seq uint64) {
		p.snap.mark(snapMark{seq: seq, gen: w.job.table.Gen, oid: oid, chunk: w.job.idx})
		p.snapStats.chunks.Add(1)
		close(w.done)
	}
}

// request notes a snapshot request inside the open transaction; it is acted on at commit.
func (p *Pipeline) request(m *walparse.LogicalMessage) {
	var rq Request
	if err := json.Unmarshal(m.Content, &rq); err != nil {
		p.log.Error("snapshot request ignored: content is not {\"slot\":…,\"tables\":[…]}", zap.Error(err), zap.Stringer("lsn", m.LSN))
		return
	}
	if rq.Slot != "" && rq.Slot != p.src.Slot {
		return
	}
	p.requests = append(p.requests, rq)
}

// committed starts the snapshots requested by a transaction that was handed over.
func (p *Pipeline) committed(ctx context.Context, commit lsn.LSN, seq uint64, handed bool) {
	if handed && len(p.requests) > 0 {
		p.startRequests(ctx, commit, seq)
	}
	p.requests = nil
}

// startRequests plans the snapshots requested by the transaction that committed at commit, whose
// batch is seq: the tables join the durable snapshot list with that batch, and their chunks are
// queued for the readers.
func (p *Pipeline) startRequests(ctx context.Context, commit lsn.LSN, seq uint64) {
	reqs := p.requests
	p.requests = nil
	for _, rq := range reqs {
		conn, err := p.catalog.pg(ctx)
		var tables []snapshot.Table
		if err == nil {
			tables, err = snapshot.LookupTables(ctx, conn, p.src.Publication, rq.Tables)
		}
		if err != nil {
			p.log.Error("snapshot request ignored", zap.Strings("tables", rq.Tables), zap.Stringer("commit_lsn", commit), zap.Error(err))
			continue
		}
		plans := snapshot.Plan(tables, commit, uint32(p.cfg.Snapshot.ChunkPages))
		for i := range plans {
			p.snap.mark(snapMark{seq: seq, add: &plans[i]})
		}
		jobs := p.pendingJobs(ctx, plans)
		p.jobs.add(jobs...)
		names := make([]string, len(plans))
		for i := range plans {
			names[i] = plans[i].Name()
		}
		p.log.Info("snapshot requested", zap.Strings("tables", names), zap.Stringer("generation", commit), zap.Int("chunks", len(jobs)))
	}
}

// SnapshotProgress is where the snapshots being read stand.
type SnapshotProgress struct {
	Active        bool  // chunks are being read or wait to be
	ChunksDone    int64 // chunks handed to the sinks by this run
	Chunks        int64 // chunks this run has had to read
	Rows          int64
	RowsPerSec    float64       // average since the snapshot started
	ETA           time.Duration // estimate of the time left; 0 when unknown
	TablesPending int           // tables whose snapshot the checkpoint lists as unfinished
}

// SnapshotProgress returns the progress of the snapshots being read. Safe for concurrent use.
func (p *Pipeline) SnapshotProgress() SnapshotProgress {
	st := &p.snapStats
	pr := SnapshotProgress{ChunksDone: st.chunks.Load(), Chunks: st.totalChunks.Load(), Rows: st.rows.Load(), TablesPending: p.pendingTables()}
	pr.Active = pr.Chunks > 0 && (pr.ChunksDone < pr.Chunks || st.active.Load() > 0)
	started := st.started.Load()
	if started == 0 || pr.Rows == 0 {
		return pr
	}
	elapsed := p.now().Sub(time.Unix(0, started)).Seconds()
	if elapsed <= 0 {
		return pr
	}
	pr.RowsPerSec = float64(pr.Rows-st.rowsAtStart.Load()) / elapsed
	left := float64(st.estRows.Load() - pr.Rows)
	if left <= 0 || st.estRows.Load() == 0 {
		left = float64(pr.Rows) * float64(pr.Chunks-pr.ChunksDone) / float64(max(pr.ChunksDone, 1))
	}
	if pr.RowsPerSec > 0 && pr.ChunksDone < pr.Chunks {
		eta := time.Duration(left / pr.RowsPerSec * float64(time.Second))
		if eta >= 10*time.Second {
			eta = eta.Round(time.Second)
		} else {
			eta = max(eta.Round(100*time.Millisecond), 100*time.Millisecond)
		}
		pr.ETA = eta
	}
	return pr
}

// logSnapshotProgress logs snapshot progress every Snapshot.ProgressInterval while a snapshot runs.
func (p *Pipeline) logSnapshotProgress(stop <-chan struct{}) {
	if p.cfg.Snapshot.ProgressInterval < 0 {
		<-stop
		return
	}
	t := time.NewTicker(p.cfg.Snapshot.ProgressInterval)
	defer t.Stop()
	var lastRows int64
	last := p.now()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			pr := p.SnapshotProgress()
			if !pr.Active {
				lastRows, last = pr.Rows, now
				continue
			}
			fields := []zap.Field{zap.Int64("chunks_done", pr.ChunksDone), zap.Int64("chunks", pr.Chunks), zap.Int64("rows", pr.Rows),
				zap.Float64("rows_per_sec", float64(pr.Rows-lastRows)/now.Sub(last).Seconds()), zap.Int("tables_pending", pr.TablesPending)}
			if pr.ETA > 0 {
				fields = append(fields, zap.Duration("eta", pr.ETA))
			}
			p.log.Info("snapshot progress", fields...)
			lastRows, last = pr.Rows, now
		}
	}
}

// pendingSnapshot returns a copy of the durable list of unfinished table snapshots.
func (p *Pipeline) pendingSnapshot() []checkpoint.TableSnapshot {
	p.saveMu.Lock()
	defer p.saveMu.Unlock()
	out := make([]checkpoint.TableSnapshot, len(p.snap.tables))
	for i := range p.snap.tables {
		out[i] = p.snap.tables[i].Clone()
	}
	return out
}

func (p *Pipeline) pendingTables() int {
	p.saveMu.Lock()
	defer p.saveMu.Unlock()
	return len(p.snap.tables)
}

// closeSQL closes an ordinary connection (nil is fine), waiting at most 5s for a polite goodbye.
func closeSQL(conn *pgconn.PgConn) {
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// pollPublication lists the publication's tables every Snapshot.PollInterval. A table that joined
// it is snapshotted through a request written into the WAL, exactly like `pgstream snapshot`: the
// request reaches the checkpoint with its transaction, so it survives a crash. A table that left it
// is forgotten, so that adding it again snapshots it again. Failures are logged and retried.
func (p *Pipeline) pollPublication(ctx context.Context) {
	var conn *pgconn.PgConn
	defer func() { closeSQL(conn) }()
	requested := map[uint32]bool{}
	t := time.NewTicker(p.cfg.Snapshot.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if conn == nil || conn.IsClosed() {
			c, err := replication.NewSQLConn(ctx, p.src)
			if err != nil {
				if ctx.Err() == nil {
					p.log.Warn("list publication tables: connect failed", zap.Error(err))
				}
				continue
			}
			conn = c
		}
		tables, err := snapshot.ListTables(ctx, conn, p.src.Publication)
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("list publication tables failed", zap.String("publication", p.src.Publication), zap.Error(err))
			}
			continue
		}
		var added []string
		var addedOIDs []uint32
		p.saveMu.Lock()
		current := make(map[uint32]bool, len(tables))
		for _, tb := range tables {
			current[tb.OID] = true
			if !p.snap.published[tb.OID] && !requested[tb.OID] {
				added = append(added, tb.Schema+"."+tb.Name)
				addedOIDs = append(addedOIDs, tb.OID)
			}
		}
		for oid := range p.snap.published {
			if !current[oid] {
				delete(p.snap.published, oid)
				p.snap.pubChanged = true
			}
		}
		p.saveMu.Unlock()
		for oid := range requested {
			if !current[oid] {
				delete(requested, oid)
			}
		}
		if len(added) == 0 {
			continue
		}
		content, _ := json.Marshal(Request{Slot: p.src.Slot, Tables: added})
		if _, err := replication.Value(ctx, conn, "SELECT pg_logical_emit_message(true, $1, $2)::text", RequestPrefix, string(content)); err != nil {
			if ctx.Err() == nil {
				p.log.Warn("request snapshot of new tables failed", zap.Strings("tables", added), zap.Error(err))
			}
			continue
		}
		for _, oid := range addedOIDs {
			requested[oid] = true
		}
		p.log.Info("tables joined the publication; snapshotting them while streaming", zap.Strings("tables", added))
	}
}

// relation remembers the relation id and the "tables" column of the signal table.
func (p *Pipeline) relation(m *walparse.Relation) {
	if p.cfg.Snapshot.SignalTable == "" {
		return
	}
	schema, table, _ := replication.SplitTable(p.cfg.Snapshot.SignalTable)
	if m.Namespace != schema || m.Name != table {
		if p.signalRel == m.RelationID {
			p.signalRel = 0 // renamed
		}
		return
	}
	p.signalRel, p.signalCol = m.RelationID, -1
	for i, c := range m.Columns {
		if c.Name == "tables" {
			p.signalCol = i
		}
	}
	if p.signalCol < 0 {
		p.log.Error("snapshot.signal_table has no column \"tables\"; its rows cannot request snapshots",
			zap.String("signal_table", p.cfg.Snapshot.SignalTable))
	}
}

// inserted turns a row inserted into the signal table into a snapshot request of the open
// transaction, carried out when it commits, like a request message.
func (p *Pipeline) inserted(m *walparse.Insert) {
	if m.RelationID != p.signalRel || p.signalRel == 0 || p.signalCol < 0 || p.signalCol >= len(m.New.Columns) {
		return
	}
	c := m.New.Columns[p.signalCol]
	if c.Kind != walparse.TupleText {
		p.log.Error("signal row ignored: its tables column is empty", zap.String("signal_table", p.cfg.Snapshot.SignalTable))
		return
	}
	text := strings.TrimSpace(string(c.Data))
	if strings.HasPrefix(text, "{") && strings.HasSuffix(text, "}") { // a text[] value
		text = text[1 : len(text)-1]
	}
	var tables []string
	for _, t := range strings.Split(text, ",") {
		if t = strings.Trim(strings.TrimSpace(t), `"`); t != "" {
			tables = append(tables, t)
		}
	}
	if len(tables) == 0 {
		p.log.Error("signal row ignored: no table named", zap.String("signal_table", p.cfg.Snapshot.SignalTable))
		return
	}
	p.requests = append(p.requests, Request{Tables: tables})
}
