package events

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/walparse"
)

// walTuple converts a pglogrepl tuple; nil gives an empty tuple.
func walTuple(t *pglogrepl.TupleData) walparse.Tuple {
	if t == nil {
		return walparse.Tuple{}
	}
	out := walparse.Tuple{Columns: make([]walparse.TupleColumn, len(t.Columns))}
	for i, c := range t.Columns {
		out.Columns[i] = walparse.TupleColumn{Kind: c.DataType, Data: c.Data}
	}
	return out
}

// encodeSlotChanges reads every pending pgoutput message of slot through the SQL interface, feeds
// it to e (the session's settings are set first) and returns the events with their Key and Value copied.
func encodeSlotChanges(t *testing.T, ctx context.Context, conn *pgconn.PgConn, e *Encoder, sql string) []sinks.Event {
	t.Helper()
	execSQL(t, ctx, conn, sessionGUCs)
	res := conn.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatalf("read slot: %v", res.Err)
	}
	var (
		events []sinks.Event
		tx     *Tx
	)
	keep := func(ev sinks.Event) error {
		ev.Key = append([]byte(nil), ev.Key...)
		ev.Value = append([]byte(nil), ev.Value...)
		events = append(events, ev)
		return nil
	}
	for _, row := range res.Rows {
		changeLSN, err := lsn.Parse(string(row[0]))
		if err != nil {
			t.Fatal(err)
		}
		data, err := hex.DecodeString(strings.TrimPrefix(string(row[1]), `\x`))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := pglogrepl.Parse(data)
		if err != nil {
			t.Fatalf("parse pgoutput message %q: %v", data, err)
		}
		var ev sinks.Event
		switch m := msg.(type) {
		case *pglogrepl.BeginMessage:
			tx = &Tx{Xid: m.Xid, CommitLSN: lsn.LSN(m.FinalLSN), CommitTime: walparse.TimestampFromTime(m.CommitTime)}
			continue
		case *pglogrepl.CommitMessage:
			tx = nil
			continue
		case *pglogrepl.RelationMessage:
			r := &walparse.Relation{RelationID: m.RelationID, Namespace: m.Namespace, Name: m.RelationName, ReplicaIdentity: m.ReplicaIdentity}
			for _, c := range m.Columns {
				r.Columns = append(r.Columns, walparse.RelationColumn{Flags: c.Flags, Name: c.Name, TypeOID: c.DataType, TypeMod: c.TypeModifier})
			}
			if err := e.Relation(ctx, r); err != nil {
				t.Fatal(err)
			}
			continue
		case *pglogrepl.TypeMessage:
			e.TypeMsg(&walparse.TypeMsg{TypeOID: m.DataType, Namespace: m.Namespace, Name: m.Name})
			continue
		case *pglogrepl.InsertMessage:
			ev, err = e.Insert(tx, changeLSN, &walparse.Insert{RelationID: m.RelationID, New: walTuple(m.Tuple)})
		case *pglogrepl.UpdateMessage:
			ev, err = e.Update(tx, changeLSN, &walparse.Update{RelationID: m.RelationID, OldKind: m.OldTupleType, Old: walTuple(m.OldTuple), New: walTuple(m.NewTuple)})
		case *pglogrepl.DeleteMessage:
			ev, err = e.Delete(tx, changeLSN, &walparse.Delete{RelationID: m.RelationID, OldKind: m.OldTupleType, Old: walTuple(m.OldTuple)})
		case *pglogrepl.TruncateMessage:
			err = e.Truncate(tx, changeLSN, &walparse.Truncate{Options: m.Option, RelationIDs: m.RelationIDs}, keep)
			if err != nil {
				t.Fatal(err)
			}
			continue
		case *pglogrepl.LogicalDecodingMessage:
			lm := &walparse.LogicalMessage{LSN: lsn.LSN(m.LSN), Prefix: []byte(m.Prefix), Content: m.Content}
			mtx := tx
			if m.Transactional {
				lm.Flags = walparse.MessageFlagTransactional
			} else {
				mtx = nil
			}
			ev, err = e.Message(mtx, lm)
		default:
			t.Fatalf("unexpected message %T", msg)
		}
		if err != nil {
			t.Fatalf("encode %T: %v", msg, err)
		}
		if err := keep(ev); err != nil {
			t.Fatal(err)
		}
	}
	return events
}

// TestReplicatedChanges runs real changes through pgoutput (via the SQL decoding interface) and
// checks the envelopes: unchanged TOAST, old keys, REPLICA IDENTITY FULL, truncate, messages and a
// schema change.
func TestReplicatedChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := sharedCluster(t)
	if err := c.CreateDB("repl"); err != nil {
		t.Fatal(err)
	}
	setup := connect2(t, ctx, "repl")
	execSQL(t, ctx, setup, `CREATE SCHEMA rep;
CREATE TYPE rep.mood AS ENUM ('sad', 'happy');
CREATE TABLE rep.items (id int PRIMARY KEY, name text, big text, tags rep.mood[], n numeric);
ALTER TABLE rep.items ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE rep.full (id int PRIMARY KEY, big text, note text);
ALTER TABLE rep.full REPLICA IDENTITY FULL;
ALTER TABLE rep.full ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE PUBLICATION pub FOR TABLE rep.items, rep.full;`)
	execSQL(t, ctx, setup, `SELECT pg_create_logical_replication_slot('evslot', 'pgoutput')`)
	for _, s := range []string{
		`INSERT INTO rep.items VALUES (1, 'a', repeat('x', 10000), '{sad,happy}', 1.50)`,
		`UPDATE rep.items SET name = 'b' WHERE id = 1`,
		`UPDATE rep.items SET id = 2 WHERE id = 1`,
		`INSERT INTO rep.full VALUES (1, repeat('y', 10000), 'n')`,
		`UPDATE rep.full SET note = 'm' WHERE id = 1`,
		`DELETE FROM rep.items WHERE id = 2`,
		`DELETE FROM rep.full WHERE id = 1`,
		`TRUNCATE rep.items, rep.full`,
		`SELECT pg_logical_emit_message(true, 'pfx', 'hello')`,
		`SELECT pg_logical_emit_message(false, 'nt', 'x')`,
		`ALTER TABLE rep.items ADD COLUMN extra int; INSERT INTO rep.items (id, extra) VALUES (3, 7)`,
	} {
		execSQL(t, ctx, setup, s)
	}

	catConn := connect2(t, ctx, "repl")
	e := NewEncoder(Options{Database: "repl"}, NewCatalog(catConn))
	events := encodeSlotChanges(t, ctx, connect2(t, ctx, "repl"), e, `SELECT lsn, data FROM pg_logical_slot_get_binary_changes('evslot', NULL, NULL,
		'proto_version', '1', 'publication_names', 'pub', 'messages', 'true')`)

	xs, ys := strings.Repeat("x", 10000), strings.Repeat("y", 10000)
	want := []struct{ op, table, before, after, toast, key string }{
		{"c", "items", `null`, `{"id":1,"name":"a","big":"` + xs + `","tags":["sad","happy"],"n":"1.50"}`, ``, `{"id":1}`},
		{"u", "items", `null`, `{"id":1,"name":"b","tags":["sad","happy"],"n":"1.50"}`, `["big"]`, `{"id":1}`},
		{"u", "items", `{"id":1}`, `{"id":2,"name":"b","tags":["sad","happy"],"n":"1.50"}`, `["big"]`, `{"id":2}`},
		{"c", "full", `null`, `{"id":1,"big":"` + ys + `","note":"n"}`, ``, `{"id":1}`},
		{"u", "full", `{"id":1,"big":"` + ys + `","note":"n"}`, `{"id":1,"big":"` + ys + `","note":"m"}`, ``, `{"id":1}`},
		{"d", "items", `{"id":2}`, `null`, ``, `{"id":2}`},
		{"d", "full", `{"id":1,"big":"` + ys + `","note":"m"}`, `null`, ``, `{"id":1}`},
		{"t", "items", `null`, `null`, ``, ``},
		{"t", "full", `null`, `null`, ``, ``},
		{"m", "", `null`, `null`, ``, ``},
		{"m", "", `null`, `null`, ``, ``},
		{"c", "items", `null`, `{"id":3,"name":null,"big":null,"tags":null,"n":null,"extra":7}`, ``, `{"id":3}`},
	}
	if len(events) != len(want) {
		for _, ev := range events {
			t.Logf("%s", ev.Value)
		}
		t.Fatalf("%d events, want %d", len(events), len(want))
	}
	for i, w := range want {
		ev := events[i]
		var env struct {
			ID             string          `json:"id"`
			Op             string          `json:"op"`
			Before         json.RawMessage `json:"before"`
			After          json.RawMessage `json:"after"`
			UnchangedToast json.RawMessage `json:"unchanged_toast"`
			Message        *struct {
				Prefix        string `json:"prefix"`
				Content       []byte `json:"content"`
				Transactional bool   `json:"transactional"`
			} `json:"message"`
			Source struct {
				DB        string  `json:"db"`
				Table     string  `json:"table"`
				TxID      *uint32 `json:"txId"`
				LSN       string  `json:"lsn"`
				CommitLSN string  `json:"commit_lsn"`
			} `json:"source"`
		}
		if err := json.Unmarshal(ev.Value, &env); err != nil {
			t.Fatalf("event %d: %v: %s", i, err, ev.Value)
		}
		got := fmt.Sprintf("%s %s %s %s %s %s", env.Op, env.Source.Table, env.Before, env.After, env.UnchangedToast, ev.Key)
		exp := fmt.Sprintf("%s %s %s %s %s %s", w.op, w.table, w.before, w.after, w.toast, w.key)
		if got != exp {
			t.Errorf("event %d:\n got %.300s\nwant %.300s", i, got, exp)
		}
		if env.ID != fmt.Sprintf("%s/%d", ev.CommitLSN, ev.Seq) || env.Source.CommitLSN != ev.CommitLSN.String() ||
			env.Source.LSN != ev.LSN.String() || env.Source.DB != "repl" || ev.Table != w.table {
			t.Errorf("event %d: id %s, source %+v, event %+v", i, env.ID, env.Source, ev)
		}
		if w.op == "m" {
			nonTx := i == 10
			if env.Message == nil || env.Message.Transactional == nonTx || (env.Source.TxID == nil) != nonTx {
				t.Errorf("message %d: %s", i, ev.Value)
			}
			if nonTx && (ev.CommitLSN != ev.LSN || ev.Seq != 0) {
				t.Errorf("non-transactional message: %+v", ev)
			}
		} else if env.Source.TxID == nil || *env.Source.TxID != ev.Xid || ev.Xid == 0 {
			t.Errorf("event %d: txId %v, xid %d", i, env.Source.TxID, ev.Xid)
		}
	}
	// The two truncate events share the transaction and number its events.
	if events[7].CommitLSN != events[8].CommitLSN || events[7].Seq != 0 || events[8].Seq != 1 {
		t.Errorf("truncate events: %+v %+v", events[7], events[8])
	}
}

func connect2(t *testing.T, ctx context.Context, db string) *pgconn.PgConn {
	t.Helper()
	conn, err := sharedCluster(t).Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
