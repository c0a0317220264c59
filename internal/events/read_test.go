package events

import (
	"errors"
	"strings"
	"testing"

	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/walparse"
)

const (
	testGen  = lsn.LSN(0x1_0000_2A00)
	testRow  = uint64(12)<<16 | 3 // ctid (12,3)
	testXmin = uint32(4242)
)

// readSrc is the envelope tail of a snapshot read of public.t at testGen.
const readSrc = `"source":{"connector":"pgstream","db":"app","schema":"public","table":"t","txId":null,"lsn":"1/2A00","commit_lsn":"1/2A00","ts_ms":1700000000123,"snapshot":true},"ts_ms":1700000000123}`

func TestReadEnvelope(t *testing.T) {
	e := NewEncoder(testOptions, nil)
	mustRelation(t, e, 16384, walparse.ReplicaIdentityDefault, col("id", oidInt4, true), col("name", oidText, false), col("n", oidNumeric, false))
	row := tup(txt("1"), txt("tab\there \"q\""), null)
	ev, err := e.Read(testGen, 16384, 16384, testRow, testXmin, &row)
	if err != nil {
		t.Fatal(err)
	}
	checkEvent(t, ev,
		`{"id":"1/2A00/r/16384/12.3/4242","op":"r","before":null,"after":{"id":1,"name":"tab\there \"q\"","n":null},`+readSrc,
		`{"id":1}`)
	if got := ev.ID(); got != "1/2A00/r/16384/12.3/4242" {
		t.Errorf("ID() = %q", got)
	}
	want := sinks.Event{Op: sinks.OpRead, Schema: "public", Table: "t", LSN: testGen, CommitLSN: testGen,
		Seq: 0, Xid: testXmin, Rel: 16384, Row: testRow}
	if !sameMeta(ev, want) || ev.Rel != want.Rel || ev.Row != want.Row {
		t.Errorf("event = %+v, want %+v", ev, want)
	}
}

// TestReadKeyMatchesInsert checks that a snapshot read and a streamed insert of the same tuple
// have the same key and the same "after" object, for every kind of replica identity.
func TestReadKeyMatchesInsert(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ident byte
		pk    []string
		flags [3]bool
		key   string
	}{
		{"default", walparse.ReplicaIdentityDefault, nil, [3]bool{true}, `{"id":7}`},
		{"index on two columns", walparse.ReplicaIdentityIndex, nil, [3]bool{false, true, true}, `{"a":"x","b":true}`},
		{"full with a primary key", walparse.ReplicaIdentityFull, []string{"id"}, [3]bool{true, true, true}, `{"id":7}`},
		{"full without a primary key", walparse.ReplicaIdentityFull, nil, [3]bool{true, true, true}, `{"id":7,"a":"x","b":true}`},
		{"nothing", walparse.ReplicaIdentityNothing, nil, [3]bool{}, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cat := newFakeCatalog()
			cat.pks[5] = tc.pk
			e := NewEncoder(testOptions, cat)
			mustRelation(t, e, 5, tc.ident, col("id", oidInt8, tc.flags[0]), col("a", oidText, tc.flags[1]), col("b", oidBool, tc.flags[2]))
			row := tup(txt("7"), txt("x"), txt("t"))
			ins, err := e.Insert(newTx(), testChange, &walparse.Insert{RelationID: 5, New: row})
			if err != nil {
				t.Fatal(err)
			}
			insKey, insAfter := string(ins.Key), afterOf(t, ins.Value)
			rd, err := e.Read(testGen, 5, 5, testRow, testXmin, &row)
			if err != nil {
				t.Fatal(err)
			}
			if string(rd.Key) != insKey || (rd.Key == nil) != (ins.Key == nil) {
				t.Errorf("read key %q, insert key %q", rd.Key, insKey)
			}
			if tc.key == "" {
				if rd.Key != nil {
					t.Errorf("key = %s, want nil", rd.Key)
				}
			} else if string(rd.Key) != tc.key {
				t.Errorf("key = %s, want %s", rd.Key, tc.key)
			}
			if got := afterOf(t, rd.Value); got != insAfter {
				t.Errorf("read after %s, insert after %s", got, insAfter)
			}
		})
	}
}

// afterOf returns the raw "after" object of an envelope.
func afterOf(t *testing.T, v []byte) string {
	t.Helper()
	const marker = `"before":null,"after":`
	s := string(v)
	i := strings.Index(s, marker)
	j := strings.Index(s, `,"source":`)
	if i < 0 || j < i {
		t.Fatalf("no after object in %s", v)
	}
	return s[i+len(marker) : j]
}

func TestReadErrors(t *testing.T) {
	e := NewEncoder(testOptions, nil)
	mustRelation(t, e, 1, walparse.ReplicaIdentityDefault, col("id", oidInt4, true), col("big", oidText, false))
	row := tup(txt("1"), toast)
	_, err := e.Read(testGen, 1, 1, testRow, testXmin, &row)
	wantErr(t, err, ErrColumnKind)
	var ce *ColumnError
	if !errors.As(err, &ce) || ce.Column != "big" || ce.Table != "t" {
		t.Errorf("unchanged TOAST: %v", err)
	}
	row = tup(txt("1"))
	_, err = e.Read(testGen, 1, 1, testRow, testXmin, &row)
	wantErr(t, err, ErrColumnCount)
	row = tup(txt("x"), null)
	_, err = e.Read(testGen, 1, 1, testRow, testXmin, &row)
	wantErr(t, err, ErrValue)
	_, err = e.Read(testGen, 2, 2, testRow, testXmin, &row)
	wantErr(t, err, ErrUnknownRelation)
	row = tup(walparse.TupleColumn{Kind: walparse.TupleBinary, Data: []byte{0, 0, 0, 1}}, null)
	_, err = e.Read(testGen, 1, 1, testRow, testXmin, &row)
	wantErr(t, err, ErrBinaryValue)

	// A failed read leaves the encoder usable.
	row = tup(txt("2"), txt("ok"))
	ev, err := e.Read(testGen, 1, 1, testRow, testXmin, &row)
	if err != nil {
		t.Fatal(err)
	}
	checkEvent(t, ev, `{"id":"1/2A00/r/1/12.3/4242","op":"r","before":null,"after":{"id":2,"big":"ok"},`+readSrc, `{"id":2}`)
}

func TestReadSteadyStateAllocations(t *testing.T) {
	e, ins, _ := benchSetup(t)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := e.Read(testGen, 42, 42, testRow, testXmin, &ins.New); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Read: %v allocs per run", n)
	}
}

func BenchmarkEncodeRead(b *testing.B) {
	e, ins, _ := benchSetup(b)
	b.ReportAllocs()
	for b.Loop() {
		ev, err := e.Read(testGen, 42, 42, testRow, testXmin, &ins.New)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(ev.Value)))
	}
}
