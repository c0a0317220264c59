package snapshot

import (
	"context"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/events"
	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/walparse"
)

// otherGUCs are settings under which every affected type prints differently: a Reader must not
// depend on the session it is given.
const otherGUCs = `SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Asia/Kolkata'; SET IntervalStyle = sql_standard;
SET extra_float_digits = 0; SET bytea_output = escape`

var (
	testGen = lsn.LSN(0x1_2345_6780)
	testNow = time.UnixMilli(1700000000123)
)

// streamedRow is an insert as the stream encodes it.
type streamedRow struct{ after, key string }

// stream is what pgoutput sent for a slot's pending changes: each table's last Relation message and
// its inserts, encoded by an Encoder as the pipeline encodes them.
type stream struct {
	rels map[uint32]*walparse.Relation
	rows map[uint32][]streamedRow
}

// readSlot consumes the pending changes of slot (created with pgoutput) through the SQL interface
// under the replication session's settings (pgsql.SessionSQL).
func readSlot(t *testing.T, ctx context.Context, c *pgtest.Cluster, db, slot, pub string) stream {
	t.Helper()
	conn := connect(t, ctx, c, db)
	execSQL(t, ctx, conn, pgsql.SessionSQL())
	enc := events.NewEncoder(events.Options{Database: db}, events.NewCatalog(connect(t, ctx, c, db)))
	res := conn.ExecParams(ctx, `SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL,
		'proto_version', '1', 'publication_names', $2)`, [][]byte{[]byte(slot), []byte(pub)}, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatalf("read slot: %v", res.Err)
	}
	s := stream{rels: map[uint32]*walparse.Relation{}, rows: map[uint32][]streamedRow{}}
	var tx *events.Tx
	for _, row := range res.Rows {
		data, err := hex.DecodeString(strings.TrimPrefix(string(row[0]), `\x`))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := pglogrepl.Parse(data)
		if err != nil {
			t.Fatalf("parse pgoutput message: %v", err)
		}
		switch m := msg.(type) {
		case *pglogrepl.BeginMessage:
			tx = &events.Tx{Xid: m.Xid, CommitLSN: lsn.LSN(m.FinalLSN), CommitTime: walparse.TimestampFromTime(m.CommitTime)}
		case *pglogrepl.CommitMessage:
			tx = nil
		case *pglogrepl.RelationMessage:
			r := &walparse.Relation{RelationID: m.RelationID, Namespace: m.Namespace, Name: m.RelationName, ReplicaIdentity: m.ReplicaIdentity}
			for _, c := range m.Columns {
				r.Columns = append(r.Columns, walparse.RelationColumn{Flags: c.Flags, Name: c.Name, TypeOID: c.DataType, TypeMod: c.TypeModifier})
			}
			if err := enc.Relation(ctx, r); err != nil {
				t.Fatal(err)
			}
			s.rels[m.RelationID] = r
		case *pglogrepl.InsertMessage:
			tup := walparse.Tuple{Columns: make([]walparse.TupleColumn, len(m.Tuple.Columns))}
			for i, c := range m.Tuple.Columns {
				tup.Columns[i] = walparse.TupleColumn{Kind: c.DataType, Data: c.Data}
			}
			ev, err := enc.Insert(tx, 0, &walparse.Insert{RelationID: m.RelationID, New: tup})
			if err != nil {
				t.Fatalf("encode insert: %v", err)
			}
			s.rows[m.RelationID] = append(s.rows[m.RelationID], streamedRow{after: afterOf(t, ev.Value), key: keyText(ev.Key)})
		case *pglogrepl.TypeMessage:
		default:
			t.Fatalf("unexpected pgoutput message %T", msg)
		}
	}
	return s
}

// keyText shows a Key, telling nil apart.
func keyText(k []byte) string {
	if k == nil {
		return "<nil>"
	}
	return string(k)
}

// afterOf returns the raw "after" object of an envelope.
func afterOf(t *testing.T, v []byte) string {
	t.Helper()
	const marker = `"before":null,"after":`
	i := strings.Index(string(v), marker)
	j := strings.Index(string(v), `,"source":`)
	if i < 0 || j < i {
		t.Fatalf("no after object in %.200s", v)
	}
	return string(v[i+len(marker) : j])
}

// readEvent is a snapshot event with its Key and Value copied.
type readEvent struct {
	sinks.Event
	chunk uint32
}

// readAll reads every chunk of ts in order with r and returns the events.
func readAll(t *testing.T, ctx context.Context, r *Reader, ts *checkpoint.TableSnapshot, tbl Table) []readEvent {
	t.Helper()
	var out []readEvent
	for i := range ts.Chunks() {
		before := len(out)
		n, err := r.ReadChunk(ctx, ts, tbl.Columns, tbl.RowFilter, i, func(ev sinks.Event) error {
			ev.Key = slices.Clone(ev.Key)
			ev.Value = slices.Clone(ev.Value)
			out = append(out, readEvent{Event: ev, chunk: i})
			return nil
		})
		if err != nil {
			t.Fatalf("read %s chunk %d: %v", ts.Name(), i, err)
		}
		if got := int64(len(out) - before); n != got {
			t.Fatalf("read %s chunk %d: %d rows reported, %d emitted", ts.Name(), i, n, got)
		}
	}
	return out
}

// beginSnapshot opens a new connection in a repeatable-read, read-only transaction, after
// setting otherGUCs on it.
func beginSnapshot(t *testing.T, ctx context.Context, c *pgtest.Cluster, db string) *pgconn.PgConn {
	t.Helper()
	conn := connect(t, ctx, c, db)
	execSQL(t, ctx, conn, otherGUCs)
	execSQL(t, ctx, conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
	return conn
}

// rowIDs returns the ids the rows of table (a quoted name) should have in a snapshot of generation
// testGen: one per row version visible to conn.
func rowIDs(t *testing.T, ctx context.Context, conn *pgconn.PgConn, oid uint32, table, where string) []string {
	t.Helper()
	var ids []string
	for _, r := range queryRows(t, ctx, conn, "SELECT ctid, xmin FROM "+table+" "+where) {
		ctid, ok := parseCTID([]byte(r[0]))
		xmin, ok2 := parseUint([]byte(r[1]), 1<<32-1)
		if !ok || !ok2 {
			t.Fatalf("ctid %q xmin %q", r[0], r[1])
		}
		ev := sinks.Event{Op: sinks.OpRead, CommitLSN: testGen, Rel: oid, Row: ctid, Xid: uint32(xmin)}
		ids = append(ids, ev.ID())
	}
	slices.Sort(ids)
	return ids
}

// checkAgainstStream checks that the events read from a table are its streamed inserts, as a
// multiset of (after, key), and that every envelope is the one Encoder.Read documents.
func checkAgainstStream(t *testing.T, got []readEvent, want []streamedRow, oid uint32, db, schema, table string, ids []string) {
	t.Helper()
	left := slices.Clone(want)
	var gotIDs []string
	for _, ev := range got {
		after := afterOf(t, ev.Value)
		row := streamedRow{after: after, key: keyText(ev.Key)}
		i := slices.Index(left, row)
		if i < 0 {
			t.Errorf("%s.%s: snapshot row not streamed: after %.300s key %s", schema, table, after, keyText(ev.Key))
			continue
		}
		left = slices.Delete(left, i, i+1)
		id := ev.ID()
		gotIDs = append(gotIDs, id)
		wantValue := `{"id":"` + id + `","op":"r","before":null,"after":` + after +
			`,"source":{"connector":"pgstream","db":"` + db + `","schema":"` + jsonText(schema) + `","table":"` + jsonText(table) +
			`","txId":null,"lsn":"` + testGen.String() + `","commit_lsn":"` + testGen.String() +
			`","ts_ms":1700000000123,"snapshot":true},"ts_ms":1700000000123}`
		if string(ev.Value) != wantValue {
			t.Errorf("%s.%s: envelope\n got %.400s\nwant %.400s", schema, table, ev.Value, wantValue)
		}
		if ev.Op != sinks.OpRead || ev.Schema != schema || ev.Table != table || ev.LSN != testGen || ev.CommitLSN != testGen ||
			ev.Seq != 0 || ev.Rel != oid || ev.Xid == 0 {
			t.Errorf("%s.%s: event %+v", schema, table, ev.Event)
		}
	}
	for _, r := range left {
		t.Errorf("%s.%s: streamed row not in the snapshot: after %.300s key %s", schema, table, r.after, r.key)
	}
	slices.Sort(gotIDs)
	if ids != nil && !slices.Equal(gotIDs, ids) {
		t.Errorf("%s.%s: ids\n got %q\nwant %q", schema, table, gotIDs, ids)
	}
}

// jsonText escapes the quote in test identifiers for JSON.
func jsonText(s string) string { return strings.ReplaceAll(s, `"`, `\"`) }
