package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/walparse"
)

// fakeCatalog is an in-memory Catalog that records its calls.
type fakeCatalog struct {
	types       map[uint32]TypeInfo
	pks         map[uint32][]string
	err         error
	typeCalls   int
	pkCalls     int
	invalidated []string
}

func (c *fakeCatalog) ResolveType(_ context.Context, oid uint32) (TypeInfo, error) {
	c.typeCalls++
	if c.err != nil {
		return TypeInfo{}, c.err
	}
	t, ok := c.types[oid]
	if !ok {
		return TypeInfo{}, fmt.Errorf("%w: %d", ErrUnknownType, oid)
	}
	return t, nil
}

func (c *fakeCatalog) PrimaryKey(_ context.Context, id uint32) ([]string, error) {
	c.pkCalls++
	return c.pks[id], nil
}

func (c *fakeCatalog) InvalidateType(oid uint32) {
	c.invalidated = append(c.invalidated, fmt.Sprintf("type %d", oid))
}

func (c *fakeCatalog) InvalidateRelation(id uint32) {
	c.invalidated = append(c.invalidated, fmt.Sprintf("relation %d", id))
}

// User-defined types of the fake catalog.
const (
	oidMyInt      = 20001 // domain myint AS int4
	oidMyIntArr   = 20002 // _myint
	oidMood       = 20003 // enum mood
	oidMoodArr    = 20004 // _mood
	oidDomOfDom   = 20005 // domain posint AS myint
	oidDomIntArr  = 20006 // domain intlist AS int4[]
	oidDomArrArr  = 20007 // _intlist
	oidCycle      = 20008 // a domain over itself: a broken catalog
	oidTextArr    = 1009
	oidInt4Arr    = 1007
	oidBoxArr     = 1020
	oidJSONBArr   = 3807
	oidByteaArr   = 1001
	oidFloat8Arr  = 1022
	oidText       = 25
	oidVarchar    = 1043
	oidNumericArr = 1231
)

func newFakeCatalog() *fakeCatalog {
	return &fakeCatalog{
		types: map[uint32]TypeInfo{
			oidMyInt:     {OID: oidMyInt, Name: "myint", Type: 'd', Category: 'N', BaseOID: oidInt4, Delim: ','},
			oidMyIntArr:  {OID: oidMyIntArr, Name: "_myint", Type: 'b', Category: 'A', ElemOID: oidMyInt, Delim: ','},
			oidMood:      {OID: oidMood, Name: "mood", Type: 'e', Category: 'E', Delim: ','},
			oidMoodArr:   {OID: oidMoodArr, Name: "_mood", Type: 'b', Category: 'A', ElemOID: oidMood, Delim: ','},
			oidDomOfDom:  {OID: oidDomOfDom, Name: "posint", Type: 'd', Category: 'N', BaseOID: oidMyInt, Delim: ','},
			oidDomIntArr: {OID: oidDomIntArr, Name: "intlist", Type: 'd', Category: 'A', BaseOID: oidInt4Arr, Delim: ','},
			oidDomArrArr: {OID: oidDomArrArr, Name: "_intlist", Type: 'b', Category: 'A', ElemOID: oidDomIntArr, Delim: ','},
			oidCycle:     {OID: oidCycle, Name: "loop", Type: 'd', BaseOID: oidCycle, Delim: ','},
		},
		pks: map[uint32][]string{},
	}
}

var (
	fixedNow    = time.UnixMilli(1700000000123)
	commitTime  = walparse.TimestampFromTime(time.UnixMilli(1700000000000))
	testCommit  = lsn.LSN(0x16B37A0)
	testChange  = lsn.LSN(0x16B3748)
	testOptions = Options{Database: "app", Now: func() time.Time { return fixedNow }}
)

func newTx() *Tx { return &Tx{Xid: 731, CommitLSN: testCommit, CommitTime: commitTime} }

func txt(s string) walparse.TupleColumn {
	return walparse.TupleColumn{Kind: walparse.TupleText, Data: []byte(s)}
}

var (
	null  = walparse.TupleColumn{Kind: walparse.TupleNull}
	toast = walparse.TupleColumn{Kind: walparse.TupleUnchangedToast}
)

func tup(cols ...walparse.TupleColumn) walparse.Tuple { return walparse.Tuple{Columns: cols} }

// col builds a relation column; key marks it as part of the replica identity.
func col(name string, oid uint32, key bool) walparse.RelationColumn {
	c := walparse.RelationColumn{Name: name, TypeOID: oid, TypeMod: -1}
	if key {
		c.Flags = walparse.ColumnFlagKey
	}
	return c
}

func mustRelation(t testing.TB, e *Encoder, id uint32, ident byte, cols ...walparse.RelationColumn) {
	t.Helper()
	r := &walparse.Relation{RelationID: id, Namespace: "public", Name: "t", ReplicaIdentity: ident, Columns: cols}
	if err := e.Relation(context.Background(), r); err != nil {
		t.Fatalf("Relation: %v", err)
	}
}

// checkEvent compares an event's Value and Key with the wanted JSON text and checks both are valid.
func checkEvent(t *testing.T, ev sinks.Event, wantValue, wantKey string) {
	t.Helper()
	if string(ev.Value) != wantValue {
		t.Errorf("value\n got %s\nwant %s", ev.Value, wantValue)
	}
	if !json.Valid(ev.Value) {
		t.Errorf("value is not valid JSON: %s", ev.Value)
	}
	if wantKey == "" {
		if ev.Key != nil {
			t.Errorf("key = %s, want nil", ev.Key)
		}
	} else {
		if string(ev.Key) != wantKey {
			t.Errorf("key = %s, want %s", ev.Key, wantKey)
		}
		if !json.Valid(ev.Key) {
			t.Errorf("key is not valid JSON: %s", ev.Key)
		}
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

// sameMeta compares the fields of two events other than Key and Value.
func sameMeta(a, b sinks.Event) bool {
	a.Key, a.Value, b.Key, b.Value = nil, nil, nil, nil
	return a.Op == b.Op && a.Schema == b.Schema && a.Table == b.Table && a.LSN == b.LSN &&
		a.CommitLSN == b.CommitLSN && a.Seq == b.Seq && a.Xid == b.Xid
}
