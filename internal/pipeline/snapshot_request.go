package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/events"
	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/replication"
	"github.com/pgstream/pgstream/walparse"
)

// snapAsk is a trigger's ask for a snapshot of tables, noted in the open transaction.
type snapAsk struct {
	tables []string
	why    string // the trigger, for the log
}

// The triggers that ask for a snapshot.
const (
	askRequest = "request"      // a pgstream.snapshot message (WriteRequest, pgstream snapshot, the new-table poll)
	askSignal  = "signal_table" // a row inserted into snapshot.signal_table
)

// snapRequests receives the snapshot triggers that travel through the slot, and asks for their
// snapshots when their transaction commits in the stream. There are two triggers, and both end in
// ask:
//
//   - a request message: pg_logical_emit_message(true, 'pgstream.snapshot', Request as JSON), as
//     WriteRequest writes it for `pgstream snapshot` and for the tables that join the publication
//     (tablePoll). A request naming another slot is not this run's.
//   - a row inserted into snapshot.signal_table, whose "tables" column (text, a comma-separated
//     list, or text[]/varchar[]) names the tables (signalTable).
//
// Either is noted with its transaction (request, inserted) and dropped with it when a reconnect
// starts it again (began). At its Commit, before the transaction's last batch is handed over,
// committing calls ask for each: the lookup failing for a reason that reading the transaction again
// would cure fails the transaction; any other reason drops the ask ("snapshot request ignored").
// The tables then join the durable snapshot list with that batch, so that a checkpoint saved past
// the transaction always holds them, and their chunks are queued. Used by the replication
// goroutine only.
type snapRequests struct {
	src        replication.Config
	chunkPages uint32
	log        *zap.Logger
	catalog    *lazyCatalog
	planner    *chunkPlanner
	state      *snapState
	jobs       *jobQueue
	signal     signalTable
	pending    []snapAsk // the asks of the open transaction
}

func newSnapRequests(d snapDeps, planner *chunkPlanner, jobs *jobQueue) *snapRequests {
	return &snapRequests{src: d.src, chunkPages: uint32(d.cfg.Snapshot.ChunkPages), log: d.log, catalog: d.catalog, planner: planner,
		state: d.progress.state, jobs: jobs, signal: signalTable{name: d.cfg.Snapshot.SignalTable, log: d.log}}
}

// request notes a snapshot request message inside the open transaction; it is asked at commit.
func (r *snapRequests) request(m *walparse.LogicalMessage) {
	var rq Request
	if err := json.Unmarshal(m.Content, &rq); err != nil {
		r.log.Error("snapshot request ignored: content is not {\"slot\":…,\"tables\":[…]}", zap.Error(err), zap.Stringer("lsn", m.LSN))
		return
	}
	if rq.Slot != "" && rq.Slot != r.src.Slot {
		return
	}
	r.pending = append(r.pending, snapAsk{tables: rq.Tables, why: askRequest})
}

// relation sees every Relation message, for the signal table's.
func (r *snapRequests) relation(m *walparse.Relation) { r.signal.relation(m) }

// inserted turns a row inserted into the signal table into an ask of the open transaction, carried
// out when it commits, like a request message.
func (r *snapRequests) inserted(m *walparse.Insert) {
	if tables, ok := r.signal.tables(m); ok {
		r.pending = append(r.pending, snapAsk{tables: tables, why: askSignal})
	}
}

// began drops the asks of a transaction that a reconnect cut short: it starts again from its Begin.
func (r *snapRequests) began() { r.pending = nil }

// committing asks for the snapshots the transaction that commits at commit requested, before it is
// handed over, and returns what records them with the transaction's last batch (nil when there is
// none). An error fails the transaction, which is read again.
func (r *snapRequests) committing(ctx context.Context, commit lsn.LSN) (func(seq uint64), error) {
	if len(r.pending) == 0 {
		return nil, nil
	}
	var records []func(seq uint64)
	for _, a := range r.pending {
		record, err := r.ask(ctx, commit, a.tables, a.why)
		if err != nil {
			return nil, err
		}
		if record != nil {
			records = append(records, record)
		}
	}
	r.pending = nil
	if len(records) == 0 {
		return nil, nil
	}
	return func(seq uint64) {
		for _, record := range records {
			record(seq)
		}
	}, nil
}

// ask is the one way to ask for a snapshot, whatever the trigger (why): it resolves the tables
// (schema.table names) in the publication and plans their snapshot as of commit, on the
// replication goroutine before the transaction that asked is handed over. The returned record,
// called with the number of the transaction's last batch before any sink can acknowledge it,
// records the plan in the snapshot record (durable once that batch is acknowledged) and queues the
// chunks. An ask that cannot be carried out as written (a table not in the publication or
// ambiguous, a standby without source.primary_url) is logged and dropped, with a nil record:
// reading the transaction again would not change that. Any other failure is returned, and the
// transaction is read again.
func (r *snapRequests) ask(ctx context.Context, commit lsn.LSN, names []string, why string) (record func(seq uint64), err error) {
	tables, err := retry(ctx, r.catalog, func(events.Catalog) ([]snapshot.Table, error) {
		conn, err := r.catalog.pg(ctx)
		if err == nil {
			err = r.canWrite(ctx, conn)
		}
		if err != nil {
			return nil, err
		}
		return snapshot.LookupTables(ctx, conn, r.src.Publication, names)
	})
	if errors.Is(err, errNoPrimary) || errors.Is(err, snapshot.ErrNotInPublication) || errors.Is(err, snapshot.ErrAmbiguous) {
		r.log.Error("snapshot request ignored", zap.Strings("tables", names), zap.Stringer("commit_lsn", commit), zap.String("trigger", why), zap.Error(err))
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("plan the snapshot request committed at %s: %w", commit, err)
	}
	plans := snapshot.Plan(tables, commit, r.chunkPages)
	if len(plans) == 0 {
		return nil, nil
	}
	jobs, estRows := r.planner.jobs(ctx, plans)
	return func(seq uint64) { r.start(commit, seq, why, plans, jobs, estRows) }, nil
}

// start records the planned tables with the batch numbered seq, then counts and queues their chunks
// for the readers.
func (r *snapRequests) start(commit lsn.LSN, seq uint64, why string, plans []checkpoint.TableSnapshot, jobs []chunkJob, estRows float64) {
	for i := range plans {
		r.state.mark(snapMark{seq: seq, add: &plans[i]})
	}
	r.planner.progress.queued(len(jobs), estRows)
	r.jobs.add(jobs...)
	names := make([]string, len(plans))
	for i := range plans {
		names[i] = plans[i].Name()
	}
	r.log.Info("snapshot requested", zap.Strings("tables", names), zap.Stringer("generation", commit), zap.Int("chunks", len(jobs)),
		zap.String("trigger", why))
}

// canWrite reports, for a request, whether its chunks' watermarks can be written: always on a
// primary, and on a standby when source.primary_url is set. conn is a connection to the source.
func (r *snapRequests) canWrite(ctx context.Context, conn *pgconn.PgConn) error {
	if _, ok := r.src.Primary(); ok {
		return nil
	}
	rec, err := pgsql.Value(ctx, conn, "SELECT pg_is_in_recovery()::text")
	if err != nil {
		return fmt.Errorf("read pg_is_in_recovery(): %w", err)
	}
	if rec == "true" {
		return fmt.Errorf("%w: the chunks would be read between watermarks written into the WAL; set source.primary_url and request the snapshot again", errNoPrimary)
	}
	return nil
}
