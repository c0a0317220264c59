package events

import (
	"testing"

	"github.com/pgstream/pgstream/walparse"
)

// benchSetup returns an Encoder with a 10-column mixed-type relation and an insert and an update
// of it.
func benchSetup(tb testing.TB) (*Encoder, *walparse.Insert, *walparse.Update) {
	e := NewEncoder(testOptions, newFakeCatalog())
	mustRelation(tb, e, 42, walparse.ReplicaIdentityDefault,
		col("id", oidInt8, true), col("name", oidText, false), col("price", oidNumeric, false),
		col("ratio", oidFloat8, false), col("active", oidBool, false), col("created", oidTimestamptz, false),
		col("doc", oidJSONB, false), col("tags", oidTextArr, false), col("blob", oidBytea, false),
		col("mood", oidMood, false))
	row := tup(txt("1234567"), txt("Grüße, \"world\""), txt("12345.678900"), txt("0.125"), txt("t"),
		txt("2024-01-02 03:04:05.123456+00"), txt(`{"a": 1, "b": [true, null]}`), txt(`{red,"dark blue",NULL}`),
		txt(`\x00010203deadbeef`), txt("happy"))
	ins := &walparse.Insert{RelationID: 42, New: row}
	upd := &walparse.Update{RelationID: 42, OldKind: walparse.OldKey,
		Old: tup(txt("1234566"), null, null, null, null, null, null, null, null, null), New: row}
	upd.New.Columns = append([]walparse.TupleColumn(nil), row.Columns...)
	upd.New.Columns[8] = toast
	return e, ins, upd
}

func BenchmarkEncodeInsert(b *testing.B) {
	e, ins, _ := benchSetup(b)
	tx := newTx()
	b.ReportAllocs()
	for b.Loop() {
		ev, err := e.Insert(tx, testChange, ins)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(ev.Value)))
	}
}

func BenchmarkEncodeUpdate(b *testing.B) {
	e, _, upd := benchSetup(b)
	tx := newTx()
	b.ReportAllocs()
	for b.Loop() {
		ev, err := e.Update(tx, testChange, upd)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(ev.Value)))
	}
}
