package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

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

// Snapshot requests: the messages and signal-table rows that ask for one, planned when their
// transaction commits, and the poll that requests the tables that join the publication.

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
	rec, err := pgsql.Value(ctx, conn, "SELECT pg_is_in_recovery()::text")
	if err != nil {
		return fmt.Errorf("read pg_is_in_recovery(): %w", err)
	}
	if rec == "true" {
		return fmt.Errorf("%w: the chunks would be read between watermarks written into the WAL; set source.primary_url and request the snapshot again", errNoPrimary)
	}
	return nil
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
