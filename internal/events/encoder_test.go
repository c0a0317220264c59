package events

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/walparse"
)

// src is the envelope tail of a public.t event of newTx at testChange.
const src = `"source":{"connector":"pgstream","db":"app","schema":"public","table":"t","txId":731,"lsn":"0/16B3748","commit_lsn":"0/16B37A0","ts_ms":1700000000000},"ts_ms":1700000000123}`

func TestInsertEnvelope(t *testing.T) {
	e := NewEncoder(testOptions, nil)
	mustRelation(t, e, 16384, walparse.ReplicaIdentityDefault, col("id", oidInt4, true), col("name", oidText, false))
	tx := newTx()
	ev, err := e.Insert(tx, testChange, &walparse.Insert{RelationID: 16384, New: tup(txt("1"), txt("x"))})
	if err != nil {
		t.Fatal(err)
	}
	checkEvent(t, ev,
		`{"id":"0/16B37A0/0","op":"c","before":null,"after":{"id":1,"name":"x"},`+src,
		`{"id":1}`)
	want := sinks.Event{Op: sinks.OpCreate, Schema: "public", Table: "t", LSN: testChange, CommitLSN: testCommit, Seq: 0, Xid: 731}
	if !sameMeta(ev, want) {
		t.Errorf("event = %+v, want %+v", ev, want)
	}
	if tx.Seq != 1 {
		t.Errorf("tx.Seq = %d, want 1", tx.Seq)
	}
	ev, err = e.Insert(tx, testChange, &walparse.Insert{RelationID: 16384, New: tup(txt("2"), null)})
	if err != nil {
		t.Fatal(err)
	}
	checkEvent(t, ev, `{"id":"0/16B37A0/1","op":"c","before":null,"after":{"id":2,"name":null},`+src, `{"id":2}`)
	if s, tb, ok := e.Lookup(16384); !ok || s != "public" || tb != "t" {
		t.Errorf("Lookup = %q %q %v", s, tb, ok)
	}
	if _, _, ok := e.Lookup(1); ok {
		t.Error("Lookup of an unknown relation succeeded")
	}
}

func TestUpdateEnvelopes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ident   byte
		pk      []string
		m       walparse.Update
		value   string // after the id and op
		key     string
		keyFlag [3]bool
	}{
		{
			name:    "no old tuple",
			ident:   walparse.ReplicaIdentityDefault,
			keyFlag: [3]bool{true},
			m:       walparse.Update{New: tup(txt("1"), txt("a"), txt("b"))},
			value:   `"before":null,"after":{"id":1,"a":"a","b":"b"},`,
			key:     `{"id":1}`,
		},
		{
			name:    "old key: before holds only the key, key from the new row",
			ident:   walparse.ReplicaIdentityDefault,
			keyFlag: [3]bool{true},
			m:       walparse.Update{OldKind: walparse.OldKey, Old: tup(txt("1"), null, null), New: tup(txt("2"), txt("a"), txt("b"))},
			value:   `"before":{"id":1},"after":{"id":2,"a":"a","b":"b"},`,
			key:     `{"id":2}`,
		},
		{
			name:    "full old row",
			ident:   walparse.ReplicaIdentityFull,
			keyFlag: [3]bool{true, true, true},
			m:       walparse.Update{OldKind: walparse.OldFull, Old: tup(txt("1"), txt("a0"), null), New: tup(txt("1"), txt("a"), txt("b"))},
			value:   `"before":{"id":1,"a":"a0","b":null},"after":{"id":1,"a":"a","b":"b"},`,
			key:     `{"id":1,"a":"a","b":"b"}`,
		},
		{
			name:    "full identity keyed by the primary key",
			ident:   walparse.ReplicaIdentityFull,
			pk:      []string{"b", "id"},
			keyFlag: [3]bool{true, true, true},
			m:       walparse.Update{OldKind: walparse.OldFull, Old: tup(txt("1"), txt("a0"), txt("b")), New: tup(txt("1"), txt("a"), txt("b"))},
			value:   `"before":{"id":1,"a":"a0","b":"b"},"after":{"id":1,"a":"a","b":"b"},`,
			key:     `{"b":"b","id":1}`,
		},
		{
			name:    "unchanged toast filled from the full old row",
			ident:   walparse.ReplicaIdentityFull,
			pk:      []string{"id"},
			keyFlag: [3]bool{true, true, true},
			m:       walparse.Update{OldKind: walparse.OldFull, Old: tup(txt("1"), txt("big"), txt("b0")), New: tup(txt("1"), toast, txt("b"))},
			value:   `"before":{"id":1,"a":"big","b":"b0"},"after":{"id":1,"a":"big","b":"b"},`,
			key:     `{"id":1}`,
		},
		{
			name:    "unchanged toast without old value is listed, not invented",
			ident:   walparse.ReplicaIdentityDefault,
			keyFlag: [3]bool{true},
			m:       walparse.Update{New: tup(txt("1"), toast, toast)},
			value:   `"before":null,"after":{"id":1},"unchanged_toast":["a","b"],`,
			key:     `{"id":1}`,
		},
		{
			name:    "unchanged toast with an old key is listed",
			ident:   walparse.ReplicaIdentityDefault,
			keyFlag: [3]bool{true},
			m:       walparse.Update{OldKind: walparse.OldKey, Old: tup(txt("0"), null, null), New: tup(txt("1"), txt("a"), toast)},
			value:   `"before":{"id":0},"after":{"id":1,"a":"a"},"unchanged_toast":["b"],`,
			key:     `{"id":1}`,
		},
		{
			name:    "unchanged toast also unchanged in the full old row",
			ident:   walparse.ReplicaIdentityFull,
			keyFlag: [3]bool{true, true, true},
			pk:      []string{"id"},
			m:       walparse.Update{OldKind: walparse.OldFull, Old: tup(txt("1"), toast, null), New: tup(txt("1"), toast, txt("b"))},
			value:   `"before":{"id":1,"b":null},"after":{"id":1,"b":"b"},"unchanged_toast":["a"],`,
			key:     `{"id":1}`,
		},
		{
			name:    "unchanged toast key column taken from the old key",
			ident:   walparse.ReplicaIdentityIndex,
			keyFlag: [3]bool{false, true},
			m:       walparse.Update{OldKind: walparse.OldKey, Old: tup(null, txt("k"), null), New: tup(txt("1"), toast, txt("b"))},
			value:   `"before":{"a":"k"},"after":{"id":1,"b":"b"},"unchanged_toast":["a"],`,
			key:     `{"a":"k"}`,
		},
		{
			name:  "replica identity nothing: no key",
			ident: walparse.ReplicaIdentityNothing,
			m:     walparse.Update{New: tup(txt("1"), txt("a"), txt("b"))},
			value: `"before":null,"after":{"id":1,"a":"a","b":"b"},`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cat := newFakeCatalog()
			cat.pks[7] = tc.pk
			e := NewEncoder(testOptions, cat)
			mustRelation(t, e, 7, tc.ident, col("id", oidInt4, tc.keyFlag[0]), col("a", oidText, tc.keyFlag[1]), col("b", oidText, tc.keyFlag[2]))
			tc.m.RelationID = 7
			tx := newTx()
			tx.Seq = 5
			ev, err := e.Update(tx, testChange, &tc.m)
			if err != nil {
				t.Fatal(err)
			}
			checkEvent(t, ev, `{"id":"0/16B37A0/5","op":"u",`+tc.value+src, tc.key)
			if ev.Op != sinks.OpUpdate || ev.Seq != 5 || tx.Seq != 6 {
				t.Errorf("op %v seq %d, tx.Seq %d", ev.Op, ev.Seq, tx.Seq)
			}
		})
	}
}

func TestDeleteEnvelopes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ident byte
		pk    []string
		flags [2]bool
		m     walparse.Delete
		value string
		key   string
	}{
		{
			name:  "old key: before is just the key",
			ident: walparse.ReplicaIdentityDefault, flags: [2]bool{true, false},
			m:     walparse.Delete{OldKind: walparse.OldKey, Old: tup(txt("3"), null)},
			value: `"before":{"id":3},"after":null,`,
			key:   `{"id":3}`,
		},
		{
			name:  "full with primary key",
			ident: walparse.ReplicaIdentityFull, pk: []string{"id"}, flags: [2]bool{true, true},
			m:     walparse.Delete{OldKind: walparse.OldFull, Old: tup(txt("3"), txt("x"))},
			value: `"before":{"id":3,"name":"x"},"after":null,`,
			key:   `{"id":3}`,
		},
		{
			name:  "full without primary key keys on every column",
			ident: walparse.ReplicaIdentityFull, flags: [2]bool{true, true},
			m:     walparse.Delete{OldKind: walparse.OldFull, Old: tup(txt("3"), null)},
			value: `"before":{"id":3,"name":null},"after":null,`,
			key:   `{"id":3,"name":null}`,
		},
		{
			name:  "full with a primary key column missing from the relation",
			ident: walparse.ReplicaIdentityFull, pk: []string{"gone"}, flags: [2]bool{true, true},
			m:     walparse.Delete{OldKind: walparse.OldFull, Old: tup(txt("3"), txt("x"))},
			value: `"before":{"id":3,"name":"x"},"after":null,`,
			key:   `{"id":3,"name":"x"}`,
		},
		{
			name:  "no old tuple",
			ident: walparse.ReplicaIdentityDefault, flags: [2]bool{true, false},
			m:     walparse.Delete{},
			value: `"before":null,"after":null,`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cat := newFakeCatalog()
			cat.pks[9] = tc.pk
			e := NewEncoder(testOptions, cat)
			mustRelation(t, e, 9, tc.ident, col("id", oidInt4, tc.flags[0]), col("name", oidText, tc.flags[1]))
			tc.m.RelationID = 9
			ev, err := e.Delete(newTx(), testChange, &tc.m)
			if err != nil {
				t.Fatal(err)
			}
			checkEvent(t, ev, `{"id":"0/16B37A0/0","op":"d",`+tc.value+src, tc.key)
			if ev.Op != sinks.OpDelete {
				t.Errorf("op %v", ev.Op)
			}
		})
	}
}

func TestPrimaryKeyLookedUpOnlyForFullIdentity(t *testing.T) {
	cat := newFakeCatalog()
	e := NewEncoder(testOptions, cat)
	mustRelation(t, e, 1, walparse.ReplicaIdentityDefault, col("id", oidInt4, true), col("v", oidText, false))
	if cat.pkCalls != 0 {
		t.Fatalf("PrimaryKey called %d times for a default identity", cat.pkCalls)
	}
	mustRelation(t, e, 1, walparse.ReplicaIdentityFull, col("id", oidInt4, true), col("v", oidText, true))
	if cat.pkCalls != 1 {
		t.Fatalf("PrimaryKey called %d times for a full identity", cat.pkCalls)
	}
	if len(cat.invalidated) != 1 || cat.invalidated[0] != "relation 1" {
		t.Fatalf("invalidated = %q", cat.invalidated)
	}
	e.TypeMsg(&walparse.TypeMsg{TypeOID: oidMood, Namespace: "public", Name: "mood"})
	if len(cat.invalidated) != 2 || cat.invalidated[1] != "type 20003" {
		t.Fatalf("invalidated = %q", cat.invalidated)
	}
}

func TestTruncate(t *testing.T) {
	e := NewEncoder(testOptions, nil)
	mustRelation(t, e, 1, walparse.ReplicaIdentityDefault, col("id", oidInt4, true))
	if err := e.Relation(context.Background(), &walparse.Relation{RelationID: 2, Namespace: "s", Name: "u", Columns: []walparse.RelationColumn{col("id", oidInt4, true)}}); err != nil {
		t.Fatal(err)
	}
	tx := newTx()
	var got []string
	err := e.Truncate(tx, testChange, &walparse.Truncate{RelationIDs: []uint32{1, 2}}, func(ev sinks.Event) error {
		if ev.Key != nil || ev.Op != sinks.OpTruncate {
			t.Errorf("event %+v", ev)
		}
		got = append(got, ev.Schema+"."+ev.Table+" "+string(ev.Value))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`public.t {"id":"0/16B37A0/0","op":"t","before":null,"after":null,` + src,
		`s.u {"id":"0/16B37A0/1","op":"t","before":null,"after":null,"source":{"connector":"pgstream","db":"app","schema":"s","table":"u","txId":731,"lsn":"0/16B3748","commit_lsn":"0/16B37A0","ts_ms":1700000000000},"ts_ms":1700000000123}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if tx.Seq != 2 {
		t.Errorf("tx.Seq = %d, want 2", tx.Seq)
	}

	// An unknown relation fails before anything is emitted.
	calls := 0
	err = e.Truncate(tx, testChange, &walparse.Truncate{RelationIDs: []uint32{1, 99}}, func(sinks.Event) error { calls++; return nil })
	wantErr(t, err, ErrUnknownRelation)
	if calls != 0 || tx.Seq != 2 {
		t.Errorf("emitted %d events, tx.Seq %d", calls, tx.Seq)
	}

	// An emit error is returned as is and its event does not consume a seq.
	boom := errors.New("boom")
	err = e.Truncate(tx, testChange, &walparse.Truncate{RelationIDs: []uint32{1, 2}}, func(ev sinks.Event) error {
		if ev.Table == "u" {
			return boom
		}
		return nil
	})
	if err != boom || tx.Seq != 3 {
		t.Errorf("err %v, tx.Seq %d", err, tx.Seq)
	}
}

func TestMessage(t *testing.T) {
	e := NewEncoder(testOptions, nil)
	tx := newTx()
	tx.Seq = 2
	ev, err := e.Message(tx, &walparse.LogicalMessage{Flags: walparse.MessageFlagTransactional, LSN: testChange, Prefix: []byte("audit\n"), Content: []byte("hi\x00")})
	if err != nil {
		t.Fatal(err)
	}
	checkEvent(t, ev, `{"id":"0/16B37A0/2","op":"m","before":null,"after":null,"message":{"prefix":"audit\n","content":"aGkA","transactional":true},"source":{"connector":"pgstream","db":"app","txId":731,"lsn":"0/16B3748","commit_lsn":"0/16B37A0","ts_ms":1700000000000},"ts_ms":1700000000123}`, "")
	want := sinks.Event{Op: sinks.OpMessage, LSN: testChange, CommitLSN: testCommit, Seq: 2, Xid: 731}
	if !sameMeta(ev, want) || tx.Seq != 3 {
		t.Errorf("event %+v, want %+v; tx.Seq %d", ev, want, tx.Seq)
	}

	ev, err = e.Message(nil, &walparse.LogicalMessage{LSN: lsn.LSN(0x2000000), Prefix: []byte("p"), Content: nil})
	if err != nil {
		t.Fatal(err)
	}
	checkEvent(t, ev, `{"id":"0/2000000/0","op":"m","before":null,"after":null,"message":{"prefix":"p","content":"","transactional":false},"source":{"connector":"pgstream","db":"app","txId":null,"lsn":"0/2000000","commit_lsn":"0/2000000","ts_ms":1700000000123},"ts_ms":1700000000123}`, "")
	if ev.CommitLSN != 0x2000000 || ev.LSN != 0x2000000 || ev.Seq != 0 || ev.Xid != 0 {
		t.Errorf("event %+v", ev)
	}

	_, err = e.Message(nil, &walparse.LogicalMessage{Flags: walparse.MessageFlagTransactional})
	wantErr(t, err, ErrTransactional)
	_, err = e.Message(tx, &walparse.LogicalMessage{})
	wantErr(t, err, ErrTransactional)
	if tx.Seq != 3 {
		t.Errorf("failed messages consumed a seq: %d", tx.Seq)
	}
}

func TestSchemaChange(t *testing.T) {
	e := NewEncoder(testOptions, nil)
	mustRelation(t, e, 5, walparse.ReplicaIdentityDefault, col("id", oidInt4, true), col("v", oidText, false))
	tx := newTx()
	ins := func(cols ...walparse.TupleColumn) (sinks.Event, error) {
		return e.Insert(tx, testChange, &walparse.Insert{RelationID: 5, New: tup(cols...)})
	}
	ev, err := ins(txt("1"), txt("a"))
	if err != nil {
		t.Fatal(err)
	}
	checkEvent(t, ev, `{"id":"0/16B37A0/0","op":"c","before":null,"after":{"id":1,"v":"a"},`+src, `{"id":1}`)

	// ADD COLUMN n int8: the old layout no longer matches, the new one is used.
	mustRelation(t, e, 5, walparse.ReplicaIdentityDefault, col("id", oidInt4, true), col("v", oidText, false), col("n", oidInt8, false))
	if _, err := ins(txt("2"), txt("b")); !errors.Is(err, ErrColumnCount) {
		t.Fatalf("old layout accepted: %v", err)
	}
	ev, err = ins(txt("2"), txt("b"), txt("-9"))
	if err != nil {
		t.Fatal(err)
	}
	checkEvent(t, ev, `{"id":"0/16B37A0/1","op":"c","before":null,"after":{"id":2,"v":"b","n":-9},`+src, `{"id":2}`)

	// DROP COLUMN v, ALTER COLUMN n TYPE bool, RENAME id TO key.
	mustRelation(t, e, 5, walparse.ReplicaIdentityDefault, col("key", oidInt4, true), col("n", oidBool, false))
	ev, err = ins(txt("3"), txt("t"))
	if err != nil {
		t.Fatal(err)
	}
	checkEvent(t, ev, `{"id":"0/16B37A0/2","op":"c","before":null,"after":{"key":3,"n":true},`+src, `{"key":3}`)
}

func TestEncodeErrors(t *testing.T) {
	e := NewEncoder(testOptions, nil)
	mustRelation(t, e, 5, walparse.ReplicaIdentityDefault, col("id", oidInt4, true), col("v", oidText, false))
	tx := newTx()

	_, err := e.Insert(tx, testChange, &walparse.Insert{RelationID: 6, New: tup(txt("1"), txt("a"))})
	wantErr(t, err, ErrUnknownRelation)
	_, err = e.Update(tx, testChange, &walparse.Update{RelationID: 6, New: tup(txt("1"), txt("a"))})
	wantErr(t, err, ErrUnknownRelation)
	_, err = e.Delete(tx, testChange, &walparse.Delete{RelationID: 6, OldKind: walparse.OldKey, Old: tup(txt("1"), null)})
	wantErr(t, err, ErrUnknownRelation)

	_, err = e.Insert(tx, testChange, &walparse.Insert{RelationID: 5, New: tup(txt("1"))})
	wantErr(t, err, ErrColumnCount)
	_, err = e.Update(tx, testChange, &walparse.Update{RelationID: 5, OldKind: walparse.OldKey, Old: tup(txt("1")), New: tup(txt("1"), txt("a"))})
	wantErr(t, err, ErrColumnCount)
	_, err = e.Delete(tx, testChange, &walparse.Delete{RelationID: 5, OldKind: walparse.OldFull, Old: tup(txt("1"), txt("a"), txt("b"))})
	wantErr(t, err, ErrColumnCount)
	_, err = e.Update(tx, testChange, &walparse.Update{RelationID: 5, OldKind: 'X', Old: tup(txt("1"), txt("a")), New: tup(txt("1"), txt("a"))})
	wantErr(t, err, ErrColumnKind)

	_, err = e.Insert(tx, testChange, &walparse.Insert{RelationID: 5, New: tup(txt("1"), walparse.TupleColumn{Kind: walparse.TupleBinary, Data: []byte{1}})})
	wantErr(t, err, ErrBinaryValue)
	var ce *ColumnError
	if !errors.As(err, &ce) || ce.Column != "v" || ce.Table != "t" {
		t.Errorf("column error = %#v", ce)
	}
	_, err = e.Insert(tx, testChange, &walparse.Insert{RelationID: 5, New: tup(txt("1x"), txt("a"))})
	wantErr(t, err, ErrValue)
	_, err = e.Insert(tx, testChange, &walparse.Insert{RelationID: 5, New: tup(txt("1"), walparse.TupleColumn{Kind: 'z'})})
	wantErr(t, err, ErrColumnKind)
	// A bad key value in the old tuple of a delete.
	_, err = e.Delete(tx, testChange, &walparse.Delete{RelationID: 5, OldKind: walparse.OldKey, Old: tup(txt("one"), null)})
	wantErr(t, err, ErrValue)
	_, err = e.Insert(nil, testChange, &walparse.Insert{RelationID: 5, New: tup(txt("1"), txt("a"))})
	wantErr(t, err, ErrNoTransaction)
	err = e.Truncate(nil, testChange, &walparse.Truncate{RelationIDs: []uint32{5}}, func(sinks.Event) error { return nil })
	wantErr(t, err, ErrNoTransaction)
	if tx.Seq != 0 {
		t.Errorf("failed calls consumed seqs: %d", tx.Seq)
	}
}

func TestRelationResolution(t *testing.T) {
	ctx := context.Background()
	// Without a catalog, a non-builtin type is an error and the relation is not cached.
	e := NewEncoder(testOptions, nil)
	mustRelation(t, e, 3, walparse.ReplicaIdentityDefault, col("id", oidInt4, true))
	err := e.Relation(ctx, &walparse.Relation{RelationID: 3, Namespace: "public", Name: "t", Columns: []walparse.RelationColumn{col("m", oidMood, false)}})
	wantErr(t, err, ErrUnknownType)
	_, err = e.Insert(newTx(), testChange, &walparse.Insert{RelationID: 3, New: tup(txt("1"))})
	wantErr(t, err, ErrUnknownRelation)

	// A catalog failure is returned wrapped.
	cat := newFakeCatalog()
	boom := errors.New("connection lost")
	cat.err = boom
	e = NewEncoder(testOptions, cat)
	err = e.Relation(ctx, &walparse.Relation{RelationID: 3, Columns: []walparse.RelationColumn{col("m", oidMood, false)}})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}

	// A domain cycle ends with an error instead of recursing forever.
	e = NewEncoder(testOptions, newFakeCatalog())
	err = e.Relation(ctx, &walparse.Relation{RelationID: 3, Columns: []walparse.RelationColumn{col("c", oidCycle, false)}})
	wantErr(t, err, ErrUnknownType)

	// Builtin types never reach the catalog.
	cat = newFakeCatalog()
	e = NewEncoder(testOptions, cat)
	mustRelation(t, e, 4, walparse.ReplicaIdentityDefault, col("a", oidInt4Arr, false), col("b", oidBoxArr, false), col("c", oidText, false))
	if cat.typeCalls != 0 {
		t.Errorf("catalog queried %d times for builtin types", cat.typeCalls)
	}
}

func TestCustomTypeColumns(t *testing.T) {
	e := NewEncoder(testOptions, newFakeCatalog())
	mustRelation(t, e, 8, walparse.ReplicaIdentityDefault,
		col("d", oidMyInt, true), col("dd", oidDomOfDom, false), col("da", oidMyIntArr, false),
		col("m", oidMood, false), col("ma", oidMoodArr, false), col("dl", oidDomIntArr, false), col("dla", oidDomArrArr, false))
	ev, err := e.Insert(newTx(), testChange, &walparse.Insert{RelationID: 8, New: tup(
		txt("42"), txt("7"), txt("{1,NULL,-3}"), txt("happy"), txt(`{happy,"so so",NULL}`), txt("{4,5}"), txt(`{"{1,2}",NULL,"{}"}`))})
	if err != nil {
		t.Fatal(err)
	}
	checkEvent(t, ev, `{"id":"0/16B37A0/0","op":"c","before":null,"after":{"d":42,"dd":7,"da":[1,null,-3],"m":"happy","ma":["happy","so so",null],"dl":[4,5],"dla":[[1,2],null,[]]},`+src, `{"d":42}`)
}

// TestSteadyStateAllocations checks that encoding reuses the Encoder's buffers.
func TestSteadyStateAllocations(t *testing.T) {
	e, ins, upd := benchSetup(t)
	tx := newTx()
	if n := testing.AllocsPerRun(100, func() {
		if _, err := e.Insert(tx, testChange, ins); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Insert: %v allocs per run", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := e.Update(tx, testChange, upd); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Update: %v allocs per run", n)
	}
}
