package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/backoff"
	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/internal/inspect"
	"github.com/pgstream/pgstream/internal/metrics"
	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/replication"
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

// snapDeps is what the snapshot parts need from the pipeline, known once the run has found where it
// starts: they are built from it whole (newSnapshotter).
type snapDeps struct {
	cfg     Config
	src     replication.Config
	log     *zap.Logger
	now     func() time.Time
	db      string              // the database's name, for the events
	tracker *checkpoint.Tracker // in-flight bound and acknowledgements
	push    func(*batch) uint64 // hands a batch to the sinks
	catalog *lazyCatalog        // catalog queries
	save    func() error        // saves the checkpoint now
	// watermarks reports that watermarks can be written: the source is a primary, or a standby
	// with source.primary_url.
	watermarks bool
	health     *health.Board    // may be nil
	metrics    *metrics.Metrics // may be nil
	progress   *snapProgress    // the snapshot record and counters, built with the pipeline
}

// snapshotter reads table snapshots: the initial one inside the snapshot the slot's creation
// exported, and chunks read between watermarks while streaming (a resumed snapshot, requests, tables
// that join the publication). It only holds its parts, one per job, and hands each call to the part
// that does it; it implements the streamHooks the applier calls on the replication goroutine by
// handing them to the watermark windows and the requests. Built by newSnapshotter, it is used by
// the pipeline's goroutines as each part documents.
type snapshotter struct {
	state    *snapState      // the snapshot record (shared with the checkpointer and the session)
	progress *snapProgress   // counters, SnapshotProgress, the progress log line
	jobs     *jobQueue       // chunks waiting for a reader while streaming
	planner  *chunkPlanner   // tables to chunk jobs
	exported *exportedReader // the initial snapshot, inside the exported one, and its guard
	windows  *chunkWindows   // chunks read between watermarks
	readers  *resnapReaders  // the readers of queued chunks while streaming
	requests *snapRequests   // request messages and signal-table rows, asked at commit
	poll     *tablePoll      // tables that join the publication
}

var _ streamHooks = (*snapshotter)(nil)

// newSnapshotter builds the snapshot parts from d.
func newSnapshotter(d snapDeps) *snapshotter {
	chunks := &chunkReader{limit: newRowLimit(d.cfg.Snapshot.MaxRowsPerSecond), log: d.log}
	jobs := newJobQueue()
	planner := &chunkPlanner{catalog: d.catalog, publication: d.src.Publication, progress: d.progress}
	windows := newChunkWindows(d, chunks)
	return &snapshotter{
		state:    d.progress.state,
		progress: d.progress,
		jobs:     jobs,
		planner:  planner,
		exported: &exportedReader{d: d, chunks: chunks, planner: planner, guard: &exportGuard{}},
		windows:  windows,
		readers: &resnapReaders{workers: d.cfg.Snapshot.Workers, src: d.src, db: d.db, now: d.now, log: d.log,
			retry: backoff.Policy{Min: d.cfg.ReconnectMin, Max: d.cfg.ReconnectMax}, jobs: jobs, windows: windows},
		requests: newSnapRequests(d, planner, jobs),
		poll:     &tablePoll{interval: d.cfg.Snapshot.PollInterval, src: d.src, log: d.log, state: d.progress.state},
	}
}

// runID identifies this run's watermarks (and heartbeats): those of an earlier run are ignored.
func (sn *snapshotter) runID() string { return sn.windows.runID }

// snapshotExported reads the initial snapshot inside the slot's exported snapshot name (see
// exportedReader.read).
func (sn *snapshotter) snapshotExported(ctx, runCtx context.Context, name string, startFrom lsn.LSN, tables []checkpoint.TableSnapshot) ([]chunkJob, error) {
	return sn.exported.read(ctx, runCtx, name, startFrom, tables)
}

// slotEndangered is told by the slot watch that the slot's WAL is in danger. Safe for concurrent
// use.
func (sn *snapshotter) slotEndangered(st inspect.SlotState, margin int64) {
	sn.exported.slotEndangered(st, margin)
}

// pendingSnapshot returns a copy of the durable list of unfinished table snapshots.
func (sn *snapshotter) pendingSnapshot() []checkpoint.TableSnapshot { return sn.state.pending() }

// pendingJobs returns a job for every chunk not done of tables, counted in the progress.
func (sn *snapshotter) pendingJobs(ctx context.Context, tables []checkpoint.TableSnapshot) []chunkJob {
	return sn.planner.queue(ctx, tables)
}

// startResnap starts the readers of queued chunks; wait waits for them once ctx ended.
func (sn *snapshotter) startResnap(ctx context.Context, fail context.CancelCauseFunc) (wait func()) {
	return sn.readers.start(ctx, fail)
}

// pollPublication requests a snapshot of the tables that join the publication until ctx ends.
func (sn *snapshotter) pollPublication(ctx context.Context) { sn.poll.run(ctx) }

// The streamHooks, on the replication goroutine.

func (sn *snapshotter) relation(m *walparse.Relation)       { sn.requests.relation(m) }
func (sn *snapshotter) inserted(m *walparse.Insert)         { sn.requests.inserted(m) }
func (sn *snapshotter) watching() bool                      { return sn.windows.watching() }
func (sn *snapshotter) keyChanged(relID uint32, key []byte) { sn.windows.keyChanged(relID, key) }
func (sn *snapshotter) truncated(relID uint32)              { sn.windows.truncated(relID) }
func (sn *snapshotter) began()                              { sn.requests.began() }
func (sn *snapshotter) request(m *walparse.LogicalMessage)  { sn.requests.request(m) }

func (sn *snapshotter) watermark(m *walparse.LogicalMessage) (*batch, func(seq uint64)) {
	return sn.windows.watermark(m)
}

func (sn *snapshotter) committing(ctx context.Context, commit lsn.LSN) (func(seq uint64), error) {
	return sn.requests.committing(ctx, commit)
}

// chunkJob is one chunk of a table snapshot to read.
type chunkJob struct {
	table *checkpoint.TableSnapshot // the plan; read only (its Done is not consulted)
	idx   uint32
}

// chunkPlanner turns table snapshots into the chunk jobs still to read, and counts them in the
// progress. Used by the exported reads, the pipeline's resume and the requests (on the replication
// goroutine); it keeps no state of its own.
type chunkPlanner struct {
	catalog     *lazyCatalog
	publication string
	progress    *snapProgress
}

// jobs returns a job for every chunk not done of the given tables, in table order, and an estimate
// of the rows they hold.
func (pl *chunkPlanner) jobs(ctx context.Context, tables []checkpoint.TableSnapshot) (jobs []chunkJob, estRows float64) {
	// pg_class.reltuples of the published tables, for the estimate of the time left; unknown
	// (0) when the listing fails or the table left the publication.
	reltuples := map[uint32]float64{}
	if pub, err := publishedTables(ctx, pl.catalog, pl.publication); err == nil {
		for _, t := range pub {
			reltuples[t.OID] = t.Rows
		}
	}
	for i := range tables {
		t := tables[i].Clone()
		pending := t.Pending()
		for _, c := range pending {
			jobs = append(jobs, chunkJob{table: &t, idx: c})
		}
		if rows := reltuples[t.OID]; rows > 0 {
			estRows += rows * float64(len(pending)) / float64(t.Chunks())
		}
	}
	return jobs, estRows
}

// queue returns jobs for the tables' chunks not done and counts them in the progress.
func (pl *chunkPlanner) queue(ctx context.Context, tables []checkpoint.TableSnapshot) []chunkJob {
	jobs, est := pl.jobs(ctx, tables)
	pl.progress.queued(len(jobs), est)
	return jobs
}

func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// publishedTables lists the tables of the publication.
func publishedTables(ctx context.Context, catalog *lazyCatalog, publication string) ([]snapshot.Table, error) {
	conn, err := catalog.pg(ctx)
	if err != nil {
		return nil, err
	}
	tables, err := snapshot.ListTables(ctx, conn, publication)
	if err != nil {
		return nil, fmt.Errorf("list the tables of publication %s: %w", publication, err)
	}
	return tables, nil
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
