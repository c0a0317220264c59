package events

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/walparse"
)

var updateEnvelopes = flag.Bool("update-envelopes", false, "rewrite testdata/envelopes.golden from the current encoder")

// goldenLine renders an event with every field, for testdata/envelopes.golden.
func goldenLine(ev sinks.Event) string {
	key := "<nil>"
	if ev.Key != nil {
		key = string(ev.Key)
	}
	return fmt.Sprintf("op=%c schema=%q table=%q lsn=%s commit=%s seq=%d xid=%d rel=%d row=%d id=%s\n  key %s\n  value %s\n",
		ev.Op, ev.Schema, ev.Table, ev.LSN, ev.CommitLSN, ev.Seq, ev.Xid, ev.Rel, ev.Row, ev.ID(), key, ev.Value)
}

// TestEnvelopeGolden pins the exact bytes of every kind of envelope the Encoder writes (insert,
// update with and without before, delete, truncate, transactional and non-transactional message,
// snapshot read, unchanged TOAST) against testdata/envelopes.golden, with names, prefixes and a
// database that need escaping, and positions at the ends of their ranges. Regenerate with
// -update-envelopes only for an intended change of the format (docs/format.md).
func TestEnvelopeGolden(t *testing.T) {
	var clock int64 = 1700000000123
	cat := newFakeCatalog()
	e := NewEncoder(Options{
		Database: "shop \"main\"\\é\t\x01\xff<&>\u2028",
		Now:      func() time.Time { clock++; return time.UnixMilli(clock) },
	}, cat)
	ctx := context.Background()
	rel := func(id uint32, schema, table string, ident byte, cols ...walparse.RelationColumn) {
		t.Helper()
		if err := e.Relation(ctx, &walparse.Relation{RelationID: id, Namespace: schema, Name: table, ReplicaIdentity: ident, Columns: cols}); err != nil {
			t.Fatalf("Relation %d: %v", id, err)
		}
	}
	rel(1, "public", "t", walparse.ReplicaIdentityDefault, col("id", oidInt4, true), col("name", oidText, false), col("n", oidNumeric, false))
	rel(2, "we\"ird\\sch", "tåble<&>\n", walparse.ReplicaIdentityDefault,
		col("id", oidInt8, true), col("\"q\"", oidText, false), col("tab\t", oidNumeric, false),
		col("ü", oidFloat8, false), col("active", oidBool, false), col("created", oidTimestamptz, false),
		col("doc", oidJSONB, false), col("tags", oidTextArr, false), col("blob", oidBytea, false),
		col("mood", oidMood, false), col("da", oidMyIntArr, false), col("dla", oidDomArrArr, false),
		col("j", oidJSON, false), col("f4", oidFloat4, false), col("i2", oidInt2, false), col("o", oidOID, false),
		col("v", oidVarchar, false), col("ts", 1114, false), col("iv", 1186, false), col("ba", oidByteaArr, false))
	cat.pks[3] = []string{"id"}
	rel(3, "public", "full_pk", walparse.ReplicaIdentityFull, col("id", oidInt4, true), col("a", oidText, true), col("b", oidText, true))
	rel(4, "public", "full", walparse.ReplicaIdentityFull, col("id", oidInt4, true), col("a", oidText, true))
	rel(5, "public", "idx", walparse.ReplicaIdentityIndex, col("id", oidInt4, false), col("a", oidText, true), col("b", oidText, false))
	rel(6, "public", "nothing", walparse.ReplicaIdentityNothing, col("id", oidInt4, false), col("a", oidText, false))

	wide := tup(txt("9223372036854775807"), txt("Grüße, \"world\"\n\x00\xff"), txt("12345.678900"), txt("NaN"), txt("t"),
		txt("2024-01-02 03:04:05.123456+00"), txt(`{"a": 1, "b": [true, null], "c": "\u00e9"}`), txt(`{red,"dark blue",NULL}`),
		txt(`\x00010203deadbeef`), txt("so so"), txt("{1,NULL,-3}"), txt(`{"{1,2}",NULL,"{}"}`),
		txt(`[1, {"x" : "y"}]`), txt("-Infinity"), txt("-32768"), txt("4294967295"),
		txt("v\u2028<&>"), txt("2024-01-02 03:04:05.5"), txt("1 year 2 mons 3 days 04:05:06.7"), txt(`{"\\x00ff",NULL}`))

	var out bytes.Buffer
	add := func(ev sinks.Event, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(ev.Value) || (ev.Key != nil && !json.Valid(ev.Key)) {
			t.Errorf("invalid JSON: key %s value %s", ev.Key, ev.Value)
		}
		out.WriteString(goldenLine(ev))
	}
	emit := func(ev sinks.Event) error { add(ev, nil); return nil }

	tx := &Tx{Xid: 731, CommitLSN: testCommit, CommitTime: commitTime}
	add(e.Insert(tx, testChange, &walparse.Insert{RelationID: 1, New: tup(txt("1"), txt("x"), null)}))
	add(e.Insert(tx, testChange+8, &walparse.Insert{RelationID: 2, New: wide}))
	add(e.Update(tx, testChange+16, &walparse.Update{RelationID: 1, New: tup(txt("1"), txt("y"), txt("1.50"))}))
	add(e.Update(tx, testChange+24, &walparse.Update{RelationID: 1, OldKind: walparse.OldKey, Old: tup(txt("1"), null, null), New: tup(txt("2"), toast, txt("0"))}))
	add(e.Update(tx, testChange+32, &walparse.Update{RelationID: 2, OldKind: walparse.OldKey, Old: wide, New: wide}))
	add(e.Update(tx, testChange+40, &walparse.Update{RelationID: 3, OldKind: walparse.OldFull, Old: tup(txt("1"), txt("big"), txt("b0")), New: tup(txt("1"), toast, txt("b"))}))
	add(e.Update(tx, testChange+48, &walparse.Update{RelationID: 3, OldKind: walparse.OldFull, Old: tup(txt("1"), toast, null), New: tup(txt("1"), toast, toast)}))
	add(e.Update(tx, testChange+56, &walparse.Update{RelationID: 4, OldKind: walparse.OldFull, Old: tup(txt("1"), txt("a")), New: tup(txt("1"), txt("b"))}))
	add(e.Update(tx, testChange+64, &walparse.Update{RelationID: 5, OldKind: walparse.OldKey, Old: tup(null, txt("k"), null), New: tup(txt("1"), toast, txt("b"))}))
	add(e.Update(tx, testChange+72, &walparse.Update{RelationID: 6, New: tup(txt("1"), toast)}))
	add(e.Delete(tx, testChange+80, &walparse.Delete{RelationID: 1, OldKind: walparse.OldKey, Old: tup(txt("2"), null, null)}))
	add(e.Delete(tx, testChange+88, &walparse.Delete{RelationID: 2, OldKind: walparse.OldKey, Old: wide}))
	add(e.Delete(tx, testChange+96, &walparse.Delete{RelationID: 3, OldKind: walparse.OldFull, Old: tup(txt("1"), txt("a"), null)}))
	add(e.Delete(tx, testChange+104, &walparse.Delete{RelationID: 4, OldKind: walparse.OldFull, Old: tup(txt("1"), null)}))
	add(e.Delete(tx, testChange+112, &walparse.Delete{RelationID: 6}))
	if err := e.Truncate(tx, testChange+120, &walparse.Truncate{RelationIDs: []uint32{1, 2, 6}}, emit); err != nil {
		t.Fatal(err)
	}
	add(e.Message(tx, &walparse.LogicalMessage{Flags: walparse.MessageFlagTransactional, LSN: testChange + 128,
		Prefix: []byte("audit\n<&>\"\xff"), Content: []byte("hi\x00\xff\n")}))

	// A transaction at the end of every range.
	tx = &Tx{Xid: 1<<32 - 1, CommitLSN: lsn.LSN(1<<64 - 1), CommitTime: walparse.TimestampFromTime(time.UnixMilli(-1)), Seq: 1<<32 - 3}
	add(e.Insert(tx, lsn.LSN(1<<64-2), &walparse.Insert{RelationID: 2, New: wide}))
	add(e.Message(tx, &walparse.LogicalMessage{Flags: walparse.MessageFlagTransactional, LSN: lsn.LSN(1<<64 - 2), Prefix: nil, Content: nil}))
	if err := e.Truncate(tx, lsn.LSN(1<<64-2), &walparse.Truncate{RelationIDs: []uint32{3}}, emit); err != nil {
		t.Fatal(err)
	}

	// Non-transactional messages.
	add(e.Message(nil, &walparse.LogicalMessage{LSN: lsn.LSN(0x2000000), Prefix: []byte("p"), Content: []byte{0xfb, 0xff}}))
	add(e.Message(nil, &walparse.LogicalMessage{LSN: 0, Prefix: []byte(""), Content: nil}))

	// Snapshot reads, across generations (the first read of generation 0 included).
	read := func(gen lsn.LSN, relID, tableOID uint32, row uint64, xmin uint32, tp walparse.Tuple) {
		t.Helper()
		add(e.Read(gen, relID, tableOID, row, xmin, &tp))
	}
	read(0, 1, 1, 0, 0, tup(txt("1"), txt("x"), null))
	read(testGen, 1, 1, testRow, testXmin, tup(txt("2"), txt("tab\there \"q\""), txt("-0.5")))
	read(testGen, 2, 43, uint64(1<<32-1)<<16|0xffff, 1<<32-1, wide)
	read(lsn.LSN(1<<64-1), 3, 3, 1<<16|1, 3, tup(txt("1"), txt("a"), null))
	read(testGen, 4, 4, 7, 9, tup(txt("1"), null))
	read(0, 6, 6, 1, 2, tup(txt("1"), txt("z")))

	const path = "testdata/envelopes.golden"
	if *updateEnvelopes {
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-envelopes to create it)", err)
	}
	if got := out.Bytes(); !bytes.Equal(got, want) {
		gl, wl := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w []byte
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if !bytes.Equal(g, w) {
				t.Fatalf("%s differs at line %d:\n got %s\nwant %s", path, i+1, g, w)
			}
		}
	}
}
