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
	"github.com/pgstream/pgstream/internal/backoff"
	"github.com/pgstream/pgstream/internal/events"
	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/internal/metrics"
	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/lsn"
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

// WriteRequest writes a snapshot request for the tables (schema.table names) into the WAL through
// conn, an ordinary connection to the database: every pgstream streaming from slot re-reads them once
// the request's transaction commits. It returns the request's LSN.
func WriteRequest(ctx context.Context, conn *pgconn.PgConn, slot string, tables []string) (lsn.LSN, error) {
	content, _ := json.Marshal(Request{Slot: slot, Tables: tables})
	v, err := replication.Value(ctx, conn, "SELECT pg_logical_emit_message(true, $1, $2)::text", RequestPrefix, string(content))
	if err != nil {
		return 0, fmt.Errorf("write the snapshot request: %w", err)
	}
	return lsn.Parse(v)
}

// watermark is the JSON content of a watermark message.
type watermark struct {
	Slot string `json:"slot"`
	Run  string `json:"run"` // this process's run id: watermarks of an earlier run are ignored
	ID   uint64 `json:"id"`
	High bool   `json:"high"`
}

// snapshotter reads table snapshots: the initial one inside the snapshot the slot's creation
// exported, and chunks read between watermarks while streaming (a resumed snapshot, requests, tables
// that join the publication). It owns the snapshot progress, the watermark windows, the chunk queue
// and its readers, and learns from the stream through the streamHooks it implements.
type snapshotter struct {
	cfg                                        SnapshotConfig
	src                                        replication.Config
	log                                        *zap.Logger
	now                                        func() time.Time
	limit                                      *rate.Limiter // cfg.MaxRowsPerSecond, shared by every reader; nil: no cap
	runID                                      string        // identifies this run's watermarks
	maxBatchEvents, maxBatchBytes, maxInFlight int
	retry                                      backoff.Policy // between attempts at a chunk

	// Set by the pipeline before the first read.
	db      string              // the database's name, for the events
	tracker *checkpoint.Tracker // in-flight bound and acknowledgements
	push    func(*batch) uint64 // hands a batch to the sinks
	catalog *lazyCatalog        // catalog queries
	save    func() error        // saves the checkpoint now

	// The replication goroutine's (streamHooks).
	requests  []Request // snapshot requests of the open transaction
	openRel   map[uint32][]*window
	signalRel uint32 // relation id of cfg.SignalTable once its Relation message arrived
	signalCol int    // index of its "tables" column, -1 when it has none
	// signalArray reports that the "tables" column is an array (text[] or varchar[]), not a
	// comma-separated list.
	signalArray bool

	health  *health.Board
	metrics *metrics.Metrics

	state     snapState
	stats     snapStats
	done      atomic.Bool // the snapshot list became empty after having tables
	jobs      jobQueue
	wins      windows
	windowSeq atomic.Uint64

	// watermarks reports that watermarks can be written: the source is a primary, or a standby
	// with source.primary_url. Set by the pipeline before the first read.
	watermarks    bool
	guard         exportGuard // lets the slot watch end the reads inside the exported snapshot
	guardSwitched atomic.Bool // the exported snapshot gave way to streaming (slotEndangered)
}

var _ streamHooks = (*snapshotter)(nil)

func newSnapshotter(cfg Config, src replication.Config, log *zap.Logger, now func() time.Time) *snapshotter {
	return &snapshotter{cfg: cfg.Snapshot, src: src, log: log, now: now, limit: newRowLimit(cfg.Snapshot.MaxRowsPerSecond),
		runID: newRunID(), maxBatchEvents: cfg.MaxBatchEvents, maxBatchBytes: cfg.MaxBatchBytes, maxInFlight: cfg.MaxInFlightBytes,
		retry:   backoff.Policy{Min: cfg.ReconnectMin, Max: cfg.ReconnectMax},
		openRel: map[uint32][]*window{}, jobs: jobQueue{wake: make(chan struct{}, 1)}, wins: windows{m: map[uint64]*window{}}}
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
// checkpoint holds. marks is shared by the producers and the checkpointer under marksMu; tables,
// published and pubChanged are guarded by saveMu, which the checkpointer holds across a save so
// that the list and the position are written together.
type snapState struct {
	marksMu sync.Mutex
	marks   []snapMark

	saveMu sync.Mutex
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
	s.marksMu.Lock()
	s.marks = append(s.marks, m)
	s.marksMu.Unlock()
}

// apply moves the marks of batches up to seq into tables, and reports the tables completed (nil when
// nothing changed, with changed false). The caller holds saveMu.
func (s *snapState) apply(seq uint64) (completed []string, changed bool) {
	s.marksMu.Lock()
	n := 0
	for n < len(s.marks) && s.marks[n].seq <= seq {
		n++
	}
	ready := append([]snapMark(nil), s.marks[:n]...)
	s.marks = append(s.marks[:0], s.marks[n:]...)
	s.marksMu.Unlock()
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
func (sn *snapshotter) publishedTables(ctx context.Context) ([]snapshot.Table, error) {
	conn, err := sn.catalog.pg(ctx)
	if err != nil {
		return nil, err
	}
	tables, err := snapshot.ListTables(ctx, conn, sn.src.Publication)
	if err != nil {
		return nil, fmt.Errorf("list the tables of publication %s: %w", sn.src.Publication, err)
	}
	return tables, nil
}

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
	st     SlotState
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
func (sn *snapshotter) slotEndangered(st SlotState, margin int64) {
	sn.guard.trip(&slotDanger{st: st, margin: margin})
}

// pendingJobs returns a job for every chunk not done of the given tables, in table order, and
// counts them in the progress statistics.
func (sn *snapshotter) pendingJobs(ctx context.Context, tables []checkpoint.TableSnapshot) []chunkJob {
	// pg_class.reltuples of the published tables, for the estimate of the time left; unknown
	// (0) when the listing fails or the table left the publication.
	reltuples := map[uint32]float64{}
	if pub, err := sn.publishedTables(ctx); err == nil {
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
	st := &sn.stats
	if st.chunks.Load() >= st.totalChunks.Load() && st.active.Load() == 0 {
		// A new snapshot after an idle time: its rate and estimate start now.
		st.started.Store(sn.now().UnixNano())
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
		if err := replication.ImportSnapshot(wctx, c, name); err != nil {
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
		_ = replication.Exec(ctx, c, "COMMIT")
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

// startResnap starts the readers of chunks while streaming (resumed and online snapshots). They
// stop when ctx ends; wait waits for them.
func (sn *snapshotter) startResnap(ctx context.Context, fail context.CancelCauseFunc) (wait func()) {
	var wg sync.WaitGroup
	for i := range sn.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sn.resnapWorker(ctx, i); err != nil {
				fail(err)
			}
		}()
	}
	return wg.Wait
}

// resnapWorker reads queued chunks one at a time between watermarks, retrying a failed chunk with
// backoff on a new connection.
func (sn *snapshotter) resnapWorker(ctx context.Context, worker int) error {
	var conn *pgconn.PgConn
	var r *snapshot.Reader
	pt := &pubTables{publication: sn.src.Publication}
	target := newWriteTarget(sn.src)
	defer func() { closeSQL(conn); target.close() }()
	for {
		j, ok := sn.jobs.next(ctx)
		if !ok {
			return nil
		}
		for attempt := 1; ; attempt++ {
			if conn == nil || conn.IsClosed() {
				c, err := replication.NewSQLConn(ctx, sn.src)
				if err == nil {
					conn, r, pt.byOID = c, snapshot.NewReader(c, sn.db, sn.now), nil
				} else if ctx.Err() != nil {
					return nil
				} else {
					sn.log.Warn("snapshot connection failed", zap.Error(err))
				}
			}
			var err error
			if conn != nil && !conn.IsClosed() {
				if err = sn.readWindow(ctx, conn, target, r, pt, j); err == nil {
					break
				}
			}
			if ctx.Err() != nil {
				return nil
			}
			if attempt >= 5 {
				return fmt.Errorf("snapshot of %s, chunk %d: giving up after %d attempts: %w", j.table.Name(), j.idx, attempt, err)
			}
			wait := sn.retry.Delay(attempt)
			sn.log.Warn("snapshot chunk failed; retrying", zap.String("table", j.table.Name()), zap.Uint32("chunk", j.idx),
				zap.Int("worker", worker), zap.Error(err), zap.Duration("backoff", wait))
			if conn != nil {
				_ = replication.Exec(ctx, conn, "ROLLBACK")
			}
			if !backoff.Wait(ctx, wait) {
				return nil
			}
		}
	}
}

// readWindow reads one chunk between a low and a high watermark and waits until the replication
// goroutine has handed its rows to the sinks. The chunk is read on conn, a connection to the
// source; the watermarks are written where target says: on the source while it is a primary, on
// its primary while it is a standby.
func (sn *snapshotter) readWindow(ctx context.Context, conn *pgconn.PgConn, target *writeTarget, r *snapshot.Reader, pt *pubTables, j chunkJob) error {
	w := &window{id: sn.windowSeq.Add(1), job: j, done: make(chan struct{})}
	sn.wins.put(w)
	ok := false
	defer func() {
		if !ok {
			sn.wins.abort(w.id)
		}
	}()
	wconn, standby, err := target.pick(ctx, conn)
	if err != nil {
		return err
	}
	low, err := sn.writeWatermark(ctx, wconn, w.id, false)
	if err != nil {
		return err
	}
	if standby {
		// The chunk's snapshot must see every transaction whose commit precedes the low watermark
		// in the WAL: the stream delivers those before the window opens, and a chunk missing one
		// would hand over an older version of its rows. On a standby a transaction becomes visible
		// when its commit record is replayed, in WAL order, so a snapshot taken once the standby
		// has replayed the low watermark sees all of them. (Reading the chunk on the primary
		// would need no wait, but would put the snapshot's reads on the server that decoding on a
		// standby means to spare.) Everything it sees beyond the watermark was replayed before the
		// high one is written, so it commits inside the window, whose keys the stream records.
		if err := waitReplayed(ctx, conn, low, "the low watermark", sn.log); err != nil {
			return err
		}
		if err := replication.Exec(ctx, conn, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"); err != nil {
			return fmt.Errorf("begin chunk read: %w", err)
		}
	} else if err := sn.beginAfterRunning(ctx, conn); err != nil {
		return err
	}
	var rows *batch
	err = sn.readChunk(ctx, conn, r, pt, j, nil, 0, 0, func(b *batch) bool { rows = b; return true })
	if err != nil {
		return err
	}
	if err := replication.Exec(ctx, conn, "COMMIT"); err != nil {
		discard(rows)
		return fmt.Errorf("end chunk read: %w", err)
	}
	if !sn.wins.setRows(w.id, rows) {
		discard(rows)
		return errors.New("watermark window lost")
	}
	high, err := sn.writeWatermark(ctx, wconn, w.id, true)
	if err != nil {
		return err
	}
	if standby {
		// Promoted before replaying the high watermark, the standby never decodes it (it is on the
		// old primary's timeline only): the chunk is read again, with watermarks written on the
		// promoted server itself.
		if err := waitReplayed(ctx, conn, high, "the high watermark", sn.log); err != nil {
			return err
		}
	}
	ok = true
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return nil
	}
}

// beginAfterRunning opens the chunk's read-only transaction on conn, a primary where the low
// watermark was just written, in a snapshot taken once every transaction running after the
// watermark has ended. A transaction whose commit record precedes the low watermark may not be
// visible yet when the watermark is written (between its commit record and its removal from the
// process array, which a synchronous standby can make long): the chunk's snapshot would miss it
// while the stream delivers it before the window. pg_locks names them all: each holds an exclusive
// lock on its own xid until after it has become visible. txid_current_snapshot() does not: its xip
// leaves out running transactions newer than the newest completed one (they lie at or past its
// xmax), which is the common case of a transaction committing just then.
func (sn *snapshotter) beginAfterRunning(ctx context.Context, conn *pgconn.PgConn) error {
	const runningXIDs = "SELECT transactionid FROM pg_catalog.pg_locks WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND granted"
	running, err := replication.Value(ctx, conn, "SELECT coalesce(array_agg(transactionid)::text, '{}') FROM ("+runningXIDs+") r")
	if err != nil {
		return fmt.Errorf("read running transactions: %w", err)
	}
	for running != "{}" {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(20 * time.Millisecond):
		}
		if running, err = replication.Value(ctx, conn, "SELECT coalesce(array_agg(x)::text, '{}') FROM unnest($1::xid[]) x "+
			"WHERE x IN ("+runningXIDs+")", running); err != nil {
			return fmt.Errorf("wait for running transactions: %w", err)
		}
	}
	// Every one of them ended before this snapshot is taken, so it sees them all.
	if err := replication.Exec(ctx, conn, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"); err != nil {
		return fmt.Errorf("begin chunk read: %w", err)
	}
	return nil
}

// writeWatermark writes a watermark on conn and returns its WAL position.
func (sn *snapshotter) writeWatermark(ctx context.Context, conn *pgconn.PgConn, id uint64, high bool) (lsn.LSN, error) {
	content, _ := json.Marshal(watermark{Slot: sn.src.Slot, Run: sn.runID, ID: id, High: high})
	v, err := replication.Value(ctx, conn, "SELECT pg_logical_emit_message(false, $1, $2)::text", WatermarkPrefix, string(content))
	if err != nil {
		return 0, fmt.Errorf("write watermark: %w", err)
	}
	at, err := lsn.Parse(v)
	if err != nil {
		return 0, fmt.Errorf("write watermark: %w", err)
	}
	return at, nil
}

// watching reports whether a watermark window is open.
func (sn *snapshotter) watching() bool { return len(sn.openRel) > 0 }

// keyChanged records, for every open window of the relation, that the row with key k changed.
func (sn *snapshotter) keyChanged(relID uint32, k []byte) {
	ws := sn.openRel[relID]
	if len(ws) == 0 {
		return
	}
	for _, w := range ws {
		if k != nil {
			w.keys[string(k)] = struct{}{}
		}
	}
	sn.pruneAborted(relID)
}

// truncated records, for every open window of the relation, that all its rows changed.
func (sn *snapshotter) truncated(relID uint32) {
	for _, w := range sn.openRel[relID] {
		w.truncated = true
	}
	sn.pruneAborted(relID)
}

func (sn *snapshotter) pruneAborted(relID uint32) {
	ws := sn.openRel[relID]
	kept := ws[:0]
	for _, w := range ws {
		if !w.aborted.Load() {
			kept = append(kept, w)
		}
	}
	clear(ws[len(kept):])
	if len(kept) == 0 {
		delete(sn.openRel, relID)
		return
	}
	sn.openRel[relID] = kept
}

// watermark handles a watermark of this run: the low one opens the chunk's window, the high one
// closes it and returns the chunk's rows whose keys did not change inside the window.
func (sn *snapshotter) watermark(m *walparse.LogicalMessage) (*batch, func(seq uint64)) {
	var wm watermark
	if err := json.Unmarshal(m.Content, &wm); err != nil || wm.Slot != sn.src.Slot || wm.Run != sn.runID {
		return nil, nil
	}
	w := sn.wins.get(wm.ID)
	if w == nil {
		return nil, nil
	}
	oid := w.job.table.OID
	if !wm.High {
		if !w.open {
			w.open = true
			w.keys = make(map[string]struct{})
			sn.openRel[oid] = append(sn.openRel[oid], w)
		}
		return nil, nil
	}
	rows := sn.wins.take(wm.ID)
	ws := sn.openRel[oid]
	for i, o := range ws {
		if o == w {
			sn.openRel[oid] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(sn.openRel[oid]) == 0 {
		delete(sn.openRel, oid)
	}
	if rows == nil {
		return nil, nil
	}
	w.keepUnchanged(rows)
	sn.stats.rows.Add(int64(len(rows.events)))
	sn.metrics.SnapshotRows(w.job.table.Name(), len(rows.events))
	return rows, func(seq uint64) {
		sn.state.mark(snapMark{seq: seq, gen: w.job.table.Gen, oid: oid, chunk: w.job.idx})
		sn.stats.chunks.Add(1)
		close(w.done)
	}
}

// request notes a snapshot request inside the open transaction; it is acted on at commit.
func (sn *snapshotter) request(m *walparse.LogicalMessage) {
	var rq Request
	if err := json.Unmarshal(m.Content, &rq); err != nil {
		sn.log.Error("snapshot request ignored: content is not {\"slot\":…,\"tables\":[…]}", zap.Error(err), zap.Stringer("lsn", m.LSN))
		return
	}
	if rq.Slot != "" && rq.Slot != sn.src.Slot {
		return
	}
	sn.requests = append(sn.requests, rq)
}

// began drops the requests of a transaction that a reconnect cut short: it starts again from its
// Begin.
func (sn *snapshotter) began() { sn.requests = nil }

// committing plans the snapshots requested by the transaction that commits at commit, before it is
// handed over. A request that cannot be carried out as written (a table not in the publication, a
// standby without source.primary_url) is logged and dropped: reading the transaction again would
// not change that. Any other failure is returned, and the transaction is read again. The tables
// join the durable snapshot list with the transaction's last batch, through record, and their
// chunks are queued then.
func (sn *snapshotter) committing(ctx context.Context, commit lsn.LSN) (func(seq uint64), error) {
	if len(sn.requests) == 0 {
		return nil, nil
	}
	var plans []checkpoint.TableSnapshot
	for _, rq := range sn.requests {
		tables, err := retry(ctx, sn.catalog, func(events.Catalog) ([]snapshot.Table, error) {
			conn, err := sn.catalog.pg(ctx)
			if err == nil {
				err = sn.canWrite(ctx, conn)
			}
			if err != nil {
				return nil, err
			}
			return snapshot.LookupTables(ctx, conn, sn.src.Publication, rq.Tables)
		})
		if errors.Is(err, errNoPrimary) || errors.Is(err, snapshot.ErrNotInPublication) || errors.Is(err, snapshot.ErrAmbiguous) {
			sn.log.Error("snapshot request ignored", zap.Strings("tables", rq.Tables), zap.Stringer("commit_lsn", commit), zap.Error(err))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("plan the snapshot request committed at %s: %w", commit, err)
		}
		plans = append(plans, snapshot.Plan(tables, commit, uint32(sn.cfg.ChunkPages))...)
	}
	sn.requests = nil
	if len(plans) == 0 {
		return nil, nil
	}
	jobs := sn.pendingJobs(ctx, plans)
	return func(seq uint64) { sn.startRequested(commit, seq, plans, jobs) }, nil
}

// startRequested records the planned tables with the batch numbered seq, then queues their chunks
// for the readers.
func (sn *snapshotter) startRequested(commit lsn.LSN, seq uint64, plans []checkpoint.TableSnapshot, jobs []chunkJob) {
	for i := range plans {
		sn.state.mark(snapMark{seq: seq, add: &plans[i]})
	}
	sn.jobs.add(jobs...)
	names := make([]string, len(plans))
	for i := range plans {
		names[i] = plans[i].Name()
	}
	sn.log.Info("snapshot requested", zap.Strings("tables", names), zap.Stringer("generation", commit), zap.Int("chunks", len(jobs)))
}

// canWrite reports, for a request, whether its chunks' watermarks can be written: always on a
// primary, and on a standby when source.primary_url is set. conn is a connection to the source.
func (sn *snapshotter) canWrite(ctx context.Context, conn *pgconn.PgConn) error {
	if _, ok := sn.src.Primary(); ok {
		return nil
	}
	rec, err := replication.Value(ctx, conn, "SELECT pg_is_in_recovery()::text")
	if err != nil {
		return fmt.Errorf("read pg_is_in_recovery(): %w", err)
	}
	if rec == "true" {
		return fmt.Errorf("%w: the chunks would be read between watermarks written into the WAL; set source.primary_url and request the snapshot again", errNoPrimary)
	}
	return nil
}

// SnapshotProgress is where the snapshots being read stand.
type SnapshotProgress struct {
	Active        bool          `json:"active"`         // chunks are being read or wait to be
	ChunksDone    int64         `json:"chunks_done"`    // chunks handed to the sinks by this run
	Chunks        int64         `json:"chunks"`         // chunks this run has had to read
	Rows          int64         `json:"rows"`           // rows handed to the sinks by this run
	RowsPerSec    float64       `json:"rows_per_sec"`   // average since the snapshot started
	ETA           time.Duration `json:"eta_ns"`         // estimate of the time left; 0 when unknown
	TablesPending int           `json:"tables_pending"` // tables whose snapshot the checkpoint lists as unfinished
	// GuardSwitched reports that this run's initial snapshot stopped reading inside the slot's
	// exported snapshot because the slot's WAL was in danger, and reads the rest while streaming.
	GuardSwitched bool `json:"guard_switched"`
}

// progress returns the progress of the snapshots being read. Safe for concurrent use.
func (sn *snapshotter) progress() SnapshotProgress {
	st := &sn.stats
	pr := SnapshotProgress{ChunksDone: st.chunks.Load(), Chunks: st.totalChunks.Load(), Rows: st.rows.Load(), TablesPending: sn.pendingTables(),
		GuardSwitched: sn.guardSwitched.Load()}
	pr.Active = pr.Chunks > 0 && (pr.ChunksDone < pr.Chunks || st.active.Load() > 0)
	started := st.started.Load()
	if started == 0 || pr.Rows == 0 {
		return pr
	}
	elapsed := sn.now().Sub(time.Unix(0, started)).Seconds()
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
func (sn *snapshotter) logProgress(stop <-chan struct{}) {
	if sn.cfg.ProgressInterval < 0 {
		<-stop
		return
	}
	t := time.NewTicker(sn.cfg.ProgressInterval)
	defer t.Stop()
	var lastRows int64
	last := sn.now()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			pr := sn.progress()
			if !pr.Active {
				lastRows, last = pr.Rows, now
				continue
			}
			fields := []zap.Field{zap.Int64("chunks_done", pr.ChunksDone), zap.Int64("chunks", pr.Chunks), zap.Int64("rows", pr.Rows),
				zap.Float64("rows_per_sec", float64(pr.Rows-lastRows)/now.Sub(last).Seconds()), zap.Int("tables_pending", pr.TablesPending)}
			if pr.ETA > 0 {
				fields = append(fields, zap.Duration("eta", pr.ETA))
			}
			sn.log.Info("snapshot progress", fields...)
			lastRows, last = pr.Rows, now
		}
	}
}

// pendingSnapshot returns a copy of the durable list of unfinished table snapshots.
func (sn *snapshotter) pendingSnapshot() []checkpoint.TableSnapshot {
	sn.state.saveMu.Lock()
	defer sn.state.saveMu.Unlock()
	out := make([]checkpoint.TableSnapshot, len(sn.state.tables))
	for i := range sn.state.tables {
		out[i] = sn.state.tables[i].Clone()
	}
	return out
}

func (sn *snapshotter) pendingTables() int {
	sn.state.saveMu.Lock()
	defer sn.state.saveMu.Unlock()
	return len(sn.state.tables)
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
func (sn *snapshotter) pollPublication(ctx context.Context) {
	var conn *pgconn.PgConn
	target := newWriteTarget(sn.src)
	defer func() { closeSQL(conn); target.close() }()
	requested := map[uint32]bool{}
	t := time.NewTicker(sn.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if conn == nil || conn.IsClosed() {
			c, err := replication.NewSQLConn(ctx, sn.src)
			if err != nil {
				if ctx.Err() == nil {
					sn.log.Warn("list publication tables: connect failed", zap.Error(err))
				}
				continue
			}
			conn = c
		}
		tables, err := snapshot.ListTables(ctx, conn, sn.src.Publication)
		if err != nil {
			if ctx.Err() == nil {
				sn.log.Warn("list publication tables failed", zap.String("publication", sn.src.Publication), zap.Error(err))
			}
			continue
		}
		var added []string
		var addedOIDs []uint32
		sn.state.saveMu.Lock()
		current := make(map[uint32]bool, len(tables))
		for _, tb := range tables {
			current[tb.OID] = true
			if !sn.state.published[tb.OID] && !requested[tb.OID] {
				added = append(added, tb.Schema+"."+tb.Name)
				addedOIDs = append(addedOIDs, tb.OID)
			}
		}
		for oid := range sn.state.published {
			if !current[oid] {
				delete(sn.state.published, oid)
				sn.state.pubChanged = true
			}
		}
		sn.state.saveMu.Unlock()
		for oid := range requested {
			if !current[oid] {
				delete(requested, oid)
			}
		}
		if len(added) == 0 {
			continue
		}
		wconn, _, err := target.pick(ctx, conn)
		if err == nil {
			_, err = WriteRequest(ctx, wconn, sn.src.Slot, added)
		}
		if err != nil {
			if ctx.Err() == nil {
				sn.log.Warn("request snapshot of new tables failed", zap.Strings("tables", added), zap.Error(err))
			}
			continue
		}
		for _, oid := range addedOIDs {
			requested[oid] = true
		}
		sn.log.Info("tables joined the publication; snapshotting them while streaming", zap.Strings("tables", added))
	}
}

// relation remembers the relation id and the "tables" column of the signal table.
func (sn *snapshotter) relation(m *walparse.Relation) {
	if sn.cfg.SignalTable == "" {
		return
	}
	schema, table, _ := replication.SplitTable(sn.cfg.SignalTable)
	if m.Namespace != schema || m.Name != table {
		if sn.signalRel == m.RelationID {
			sn.signalRel = 0 // renamed
		}
		return
	}
	sn.signalRel, sn.signalCol = m.RelationID, -1
	for i, c := range m.Columns {
		if c.Name == "tables" {
			sn.signalCol = i
			sn.signalArray = c.TypeOID == textArrayOID || c.TypeOID == varcharArrayOID
		}
	}
	if sn.signalCol < 0 {
		sn.log.Error("snapshot.signal_table has no column \"tables\"; its rows cannot request snapshots",
			zap.String("signal_table", sn.cfg.SignalTable))
	}
}

// inserted turns a row inserted into the signal table into a snapshot request of the open
// transaction, carried out when it commits, like a request message.
func (sn *snapshotter) inserted(m *walparse.Insert) {
	if m.RelationID != sn.signalRel || sn.signalRel == 0 || sn.signalCol < 0 || sn.signalCol >= len(m.New.Columns) {
		return
	}
	c := m.New.Columns[sn.signalCol]
	if c.Kind != walparse.TupleText {
		sn.log.Error("signal row ignored: its tables column is empty", zap.String("signal_table", sn.cfg.SignalTable))
		return
	}
	var tables []string
	if sn.signalArray {
		var err error
		if tables, err = parseTextArray(string(c.Data)); err != nil {
			sn.log.Error("signal row ignored", zap.String("signal_table", sn.cfg.SignalTable), zap.Error(err))
			return
		}
	} else {
		for _, t := range strings.Split(string(c.Data), ",") {
			if t = strings.TrimSpace(t); t != "" {
				tables = append(tables, t)
			}
		}
	}
	if len(tables) == 0 {
		sn.log.Error("signal row ignored: no table named", zap.String("signal_table", sn.cfg.SignalTable))
		return
	}
	sn.requests = append(sn.requests, Request{Tables: tables})
}

// The array types a signal table's "tables" column may have.
const (
	textArrayOID    = 1009
	varcharArrayOID = 1015
)

// parseTextArray parses the text form of a one-dimensional PostgreSQL array of strings, such as
// {public.orders,"public.""odd, name"""}: elements are separated by commas, a quoted element may
// hold commas, braces and backslash-escaped quotes, and NULL elements are left out.
func parseTextArray(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, fmt.Errorf("array value %q: want {…}", s)
	}
	s = s[1 : len(s)-1]
	var out []string
	for i := 0; i < len(s); {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		var elem strings.Builder
		quoted := i < len(s) && s[i] == '"'
		if quoted {
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
					if i == len(s) {
						break
					}
				}
				elem.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("array value: unterminated quoted element")
			}
			i++ // the closing quote
			for i < len(s) && s[i] == ' ' {
				i++
			}
		} else {
			j := strings.IndexByte(s[i:], ',')
			if j < 0 {
				j = len(s) - i
			}
			elem.WriteString(strings.TrimSpace(s[i : i+j]))
			i += j
		}
		if i < len(s) && s[i] != ',' {
			return nil, fmt.Errorf("array value: unexpected %q after an element", s[i])
		}
		i++ // the comma
		if v := elem.String(); v != "" && (quoted || !strings.EqualFold(v, "NULL")) {
			out = append(out, v)
		}
	}
	return out, nil
}
