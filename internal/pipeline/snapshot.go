package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/backoff"
	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/internal/metrics"
	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/replication"
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
	v, err := pgsql.Value(ctx, conn, "SELECT pg_logical_emit_message(true, $1, $2)::text", RequestPrefix, string(content))
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
