package events

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/walparse"
)

// Options configure an Encoder. The zero value is usable: an empty source.db and time.Now.
type Options struct {
	// Database is written as source.db in every envelope; "" writes an empty string.
	Database string
	// Now returns the emit time written as the top-level ts_ms (and as source.ts_ms of a
	// non-transactional message); nil means time.Now.
	Now func() time.Time
}

// Tx is the transaction the encoded changes belong to, kept by the caller between Begin and Commit.
type Tx struct {
	Xid        uint32
	CommitLSN  lsn.LSN
	CommitTime walparse.Timestamp
	// Seq is the sequence number of the transaction's next event. Each successful Insert, Update,
	// Delete and transactional Message uses it and increments it, as does each event a Truncate
	// emits successfully; a failed call or emit does not consume one.
	Seq uint32
}

// column is one precomputed column of a relation.
type column struct {
	name  string
	key   []byte // `"name":`
	write valueWriter
}

// quotedName returns the column's name as a JSON string.
func (c *column) quotedName() []byte { return c.key[:len(c.key)-1] }

// relation is the cached, precomputed form of a Relation message.
type relation struct {
	schema, table string
	cols          []column
	ident         []int  // replica identity columns (flagged in the Relation)
	key           []int  // columns of the Key object; empty means no key
	source        []byte // newTableSource
}

// Encoder turns row, truncate and logical messages into events. It keeps the Relation cache and
// the buffers the returned events alias: an event's Key and Value are valid until the next call on
// the Encoder (for Truncate, until its emit call returns). It is not safe for concurrent use.
type Encoder struct {
	now       func() time.Time
	cat       Catalog
	inv       Invalidator
	dbJSON    []byte
	rels      map[uint32]*relation
	msgSource []byte // newSource, for messages
	key, val  []byte
	toast     []int
	// The text of the generation of the latest Read, which every read of a snapshot repeats.
	gen     lsn.LSN
	genText []byte
}

// NewEncoder returns an Encoder. cat resolves non-builtin column types and primary keys; with a nil
// Catalog only builtin types are accepted and REPLICA IDENTITY FULL tables key on every column.
func NewEncoder(opts Options, cat Catalog) *Encoder {
	e := &Encoder{
		now:    opts.Now,
		cat:    cat,
		dbJSON: quoted(opts.Database),
		rels:   make(map[uint32]*relation),
		key:    make([]byte, 0, 256),
		val:    make([]byte, 0, 1024),
	}
	if e.now == nil {
		e.now = time.Now
	}
	if inv, ok := cat.(Invalidator); ok {
		e.inv = inv
	}
	e.msgSource = newSource(e.dbJSON)
	return e
}

// TypeMsg notes a Type message: the type is about to be used by a Relation, so a caching Catalog
// forgets what it knew of the OID and the Relation resolves it afresh.
func (e *Encoder) TypeMsg(t *walparse.TypeMsg) {
	if e.inv != nil {
		e.inv.InvalidateType(t.TypeOID)
	}
}

// Relation resolves the column types of r (querying the Catalog, with ctx, for non-builtin types and
// for the primary key of a REPLICA IDENTITY FULL table) and caches the result by RelationID, replacing any earlier
// entry; the next row of the relation uses the new layout. If resolution fails the old entry is
// removed too, so rows of the relation fail with ErrUnknownRelation rather than use a stale layout.
func (e *Encoder) Relation(ctx context.Context, r *walparse.Relation) error {
	delete(e.rels, r.RelationID)
	rel := &relation{
		schema: r.Namespace,
		table:  r.Name,
		cols:   make([]column, len(r.Columns)),
	}
	for i, c := range r.Columns {
		w, err := e.writerFor(ctx, c.TypeOID)
		if err != nil {
			return fmt.Errorf("relation %s.%s column %q: %w", r.Namespace, r.Name, c.Name, err)
		}
		rel.cols[i] = column{name: c.Name, key: append(quoted(c.Name), ':'), write: w}
		if c.IsKey() {
			rel.ident = append(rel.ident, i)
		}
	}
	rel.key = rel.ident
	full := r.ReplicaIdentity == walparse.ReplicaIdentityFull || (len(r.Columns) > 0 && len(rel.ident) == len(r.Columns))
	if full {
		pk, err := e.primaryKey(ctx, r)
		if err != nil {
			return err
		}
		rel.key = pk
	}
	rel.source = newTableSource(e.dbJSON, r.Namespace, r.Name)
	e.rels[r.RelationID] = rel
	return nil
}

// primaryKey returns the key columns of a REPLICA IDENTITY FULL relation: the primary key's when the
// Catalog knows one whose columns all exist in r, else every column.
func (e *Encoder) primaryKey(ctx context.Context, r *walparse.Relation) ([]int, error) {
	all := make([]int, len(r.Columns))
	for i := range all {
		all[i] = i
	}
	if e.cat == nil {
		return all, nil
	}
	if e.inv != nil {
		e.inv.InvalidateRelation(r.RelationID)
	}
	names, err := e.cat.PrimaryKey(ctx, r.RelationID)
	if err != nil {
		return nil, fmt.Errorf("relation %s.%s: primary key: %w", r.Namespace, r.Name, err)
	}
	if len(names) == 0 {
		return all, nil
	}
	idx := make([]int, 0, len(names))
	for _, n := range names {
		found := -1
		for i, c := range r.Columns {
			if c.Name == n {
				found = i
				break
			}
		}
		if found < 0 {
			return all, nil
		}
		idx = append(idx, found)
	}
	return idx, nil
}

// Lookup returns the schema and table of a cached relation.
func (e *Encoder) Lookup(relationID uint32) (schema, table string, ok bool) {
	r, ok := e.rels[relationID]
	if !ok {
		return "", "", false
	}
	return r.schema, r.table, true
}

func (e *Encoder) relation(op string, tx *Tx, id uint32) (*relation, error) {
	if tx == nil {
		return nil, fmt.Errorf("%s: %w", op, ErrNoTransaction)
	}
	r, ok := e.rels[id]
	if !ok {
		return nil, fmt.Errorf("%s: %w: id %d", op, ErrUnknownRelation, id)
	}
	return r, nil
}

func (r *relation) checkCount(op string, t *walparse.Tuple) error {
	if len(t.Columns) != len(r.cols) {
		return fmt.Errorf("%s %s.%s: %w: tuple has %d, relation %d", op, r.schema, r.table, ErrColumnCount, len(t.Columns), len(r.cols))
	}
	return nil
}

// Insert encodes an insert (op "c"). The event's Key and Value are valid until the next call on e.
func (e *Encoder) Insert(tx *Tx, changeLSN lsn.LSN, m *walparse.Insert) (sinks.Event, error) {
	r, err := e.relation("insert", tx, m.RelationID)
	if err != nil {
		return sinks.Event{}, err
	}
	if err := r.checkCount("insert", &m.New); err != nil {
		return sinks.Event{}, err
	}
	e.toast = e.toast[:0]
	ev := r.event(tx, changeLSN, sinks.OpCreate)
	v := appendHeader(e.val[:0], &ev)
	v = append(v, `"before":null,"after":`...)
	if v, err = e.appendObject(v, r, nil, &m.New, nil, true); err != nil {
		return sinks.Event{}, r.colErr("insert", err)
	}
	v = e.appendToast(v, r)
	if e.key, err = e.appendKey(e.key[:0], r, &m.New, nil); err != nil {
		return sinks.Event{}, r.colErr("insert", err)
	}
	e.finish(&ev, v, r, tx)
	return ev, nil
}

// Update encodes an update (op "u"). "before" is the full old row (OldFull), the old key (OldKey) or
// null; unchanged TOAST columns of the new row are taken from a full old row when it has them, and
// are otherwise left out of "after" and listed in "unchanged_toast".
func (e *Encoder) Update(tx *Tx, changeLSN lsn.LSN, m *walparse.Update) (sinks.Event, error) {
	r, err := e.relation("update", tx, m.RelationID)
	if err != nil {
		return sinks.Event{}, err
	}
	if err := r.checkCount("update", &m.New); err != nil {
		return sinks.Event{}, err
	}
	var old *walparse.Tuple
	switch m.OldKind {
	case walparse.OldNone:
	case walparse.OldKey, walparse.OldFull:
		if err := r.checkCount("update", &m.Old); err != nil {
			return sinks.Event{}, err
		}
		old = &m.Old
	default:
		return sinks.Event{}, fmt.Errorf("update %s.%s: %w: old tuple kind %q", r.schema, r.table, ErrColumnKind, m.OldKind)
	}
	e.toast = e.toast[:0]
	ev := r.event(tx, changeLSN, sinks.OpUpdate)
	v := appendHeader(e.val[:0], &ev)
	v = append(v, `"before":`...)
	if v, err = e.appendBefore(v, r, m.OldKind, old); err != nil {
		return sinks.Event{}, r.colErr("update", err)
	}
	v = append(v, `,"after":`...)
	var fill *walparse.Tuple
	if m.OldKind == walparse.OldFull {
		fill = old
	}
	if v, err = e.appendObject(v, r, nil, &m.New, fill, true); err != nil {
		return sinks.Event{}, r.colErr("update", err)
	}
	v = e.appendToast(v, r)
	if e.key, err = e.appendKey(e.key[:0], r, &m.New, old); err != nil {
		return sinks.Event{}, r.colErr("update", err)
	}
	e.finish(&ev, v, r, tx)
	return ev, nil
}

// Delete encodes a delete (op "d"): "before" is the full old row or just its key, "after" null, and
// the Key comes from the old tuple.
func (e *Encoder) Delete(tx *Tx, changeLSN lsn.LSN, m *walparse.Delete) (sinks.Event, error) {
	r, err := e.relation("delete", tx, m.RelationID)
	if err != nil {
		return sinks.Event{}, err
	}
	var old *walparse.Tuple
	switch m.OldKind {
	case walparse.OldNone:
	case walparse.OldKey, walparse.OldFull:
		if err := r.checkCount("delete", &m.Old); err != nil {
			return sinks.Event{}, err
		}
		old = &m.Old
	default:
		return sinks.Event{}, fmt.Errorf("delete %s.%s: %w: old tuple kind %q", r.schema, r.table, ErrColumnKind, m.OldKind)
	}
	ev := r.event(tx, changeLSN, sinks.OpDelete)
	v := appendHeader(e.val[:0], &ev)
	v = append(v, `"before":`...)
	if v, err = e.appendBefore(v, r, m.OldKind, old); err != nil {
		return sinks.Event{}, r.colErr("delete", err)
	}
	v = append(v, `,"after":null`...)
	e.key = e.key[:0]
	if old != nil {
		if e.key, err = e.appendKey(e.key, r, old, nil); err != nil {
			return sinks.Event{}, r.colErr("delete", err)
		}
	}
	e.finish(&ev, v, r, tx)
	if old == nil {
		ev.Key = nil
	}
	return ev, nil
}

// Truncate encodes one event (op "t") per truncated table, in message order, and passes each to emit.
// An event's Key and Value are valid only during its emit call. Every relation id is checked
// before the first event is emitted; an error from emit stops the loop and is returned as is.
func (e *Encoder) Truncate(tx *Tx, changeLSN lsn.LSN, m *walparse.Truncate, emit func(sinks.Event) error) error {
	for _, id := range m.RelationIDs {
		if _, err := e.relation("truncate", tx, id); err != nil {
			return err
		}
	}
	for _, id := range m.RelationIDs {
		r := e.rels[id]
		ev := r.event(tx, changeLSN, sinks.OpTruncate)
		v := appendHeader(e.val[:0], &ev)
		v = append(v, `"before":null,"after":null`...)
		e.key = e.key[:0]
		e.finish(&ev, v, r, tx)
		ev.Key = nil
		if err := emit(ev); err != nil {
			tx.Seq-- // the event was not taken
			return err
		}
	}
	return nil
}

// Message encodes a pg_logical_emit_message (op "m"). tx is nil for a non-transactional message:
// then txId is null, commit_lsn is the message's LSN, the seq is 0 and source.ts_ms is the emit time.
// The message's transactional flag must agree with tx.
func (e *Encoder) Message(tx *Tx, m *walparse.LogicalMessage) (sinks.Event, error) {
	if m.Transactional() != (tx != nil) {
		return sinks.Event{}, fmt.Errorf("message %q: %w", m.Prefix, ErrTransactional)
	}
	now := e.now().UnixMilli()
	ev := sinks.Event{Op: sinks.OpMessage, LSN: m.LSN, CommitLSN: m.LSN}
	t := tail{source: e.msgSource, lsn: m.LSN, commitLSN: m.LSN, commitMs: now, emitMs: now}
	if tx != nil {
		ev.CommitLSN, ev.Seq, ev.Xid = tx.CommitLSN, tx.Seq, tx.Xid
		t.commitLSN, t.commitMs, t.xid, t.hasXid = tx.CommitLSN, tx.CommitTime.UnixMilli(), tx.Xid, true
	}
	v := appendHeader(e.val[:0], &ev)
	v = append(v, `"before":null,"after":null,"message":{"prefix":`...)
	v = appendString(v, m.Prefix)
	v = append(v, `,"content":`...)
	v = appendBase64(v, m.Content)
	if tx != nil {
		v = append(v, `,"transactional":true}`...)
		tx.Seq++
	} else {
		v = append(v, `,"transactional":false}`...)
	}
	v = appendTail(v, &t)
	e.val = v
	ev.Value = v
	return ev, nil
}

// Read encodes a snapshot read (op "r") of the row version at ctid row (block<<16 | offset) with
// xmin in table tableOID, of a relation relID registered with Relation, read by the snapshot of
// generation gen. tableOID is the row's tableoid: relID itself, or the partition holding the row
// when relID is a partitioned table (whose partitions' ctids overlap).
//
// "after" and the Key are built as Insert builds them, so a row read by a snapshot and a streamed
// change of it have byte-identical keys. source.txId is null, source.lsn and source.commit_lsn are
// gen, source.ts_ms is the emit time and source.snapshot is true. The event's id is the one
// sinks.Event.AppendID gives a read: it names the row version, not a position in a transaction.
// A snapshot row is always whole: an unchanged-TOAST column is an error wrapping ErrColumnKind.
// The event's Key and Value are valid until the next call on e.
func (e *Encoder) Read(gen lsn.LSN, relID, tableOID uint32, row uint64, xmin uint32, t *walparse.Tuple) (sinks.Event, error) {
	r, ok := e.rels[relID]
	if !ok {
		return sinks.Event{}, fmt.Errorf("read: %w: id %d", ErrUnknownRelation, relID)
	}
	if err := r.checkCount("read", t); err != nil {
		return sinks.Event{}, err
	}
	for i := range t.Columns {
		if t.Columns[i].Kind == walparse.TupleUnchangedToast {
			return sinks.Event{}, r.colErr("read", &ColumnError{Column: r.cols[i].name,
				Err: fmt.Errorf("%w: unchanged TOAST in a snapshot row", ErrColumnKind)})
		}
	}
	ev := sinks.Event{
		Op: sinks.OpRead, Schema: r.schema, Table: r.table,
		LSN: gen, CommitLSN: gen, Xid: xmin, Rel: tableOID, Row: row,
	}
	if e.genText == nil || gen != e.gen {
		e.gen, e.genText = gen, gen.AppendText(e.genText[:0])
	}
	v := appendHeader(e.val[:0], &ev)
	v = append(v, `"before":null,"after":`...)
	var err error
	if v, err = e.appendObject(v, r, nil, t, nil, false); err != nil {
		return sinks.Event{}, r.colErr("read", err)
	}
	if e.key, err = e.appendKey(e.key[:0], r, t, nil); err != nil {
		return sinks.Event{}, r.colErr("read", err)
	}
	now := e.now().UnixMilli()
	v = appendTail(v, &tail{source: r.source, genText: e.genText, commitMs: now, emitMs: now, snapshot: true})
	e.val = v
	ev.Value = v
	if len(r.key) > 0 {
		ev.Key = e.key
	}
	return ev, nil
}

// event returns the event of a change of r in tx at changeLSN, without its Key and Value.
func (r *relation) event(tx *Tx, changeLSN lsn.LSN, op sinks.Op) sinks.Event {
	return sinks.Event{
		Op: op, Schema: r.schema, Table: r.table,
		LSN: changeLSN, CommitLSN: tx.CommitLSN, Seq: tx.Seq, Xid: tx.Xid,
	}
}

// finish appends the tail of ev, a change of r in tx, to v, stores the buffers, sets ev's Value
// and Key (the key in e.key, when r has key columns) and consumes one seq of tx.
func (e *Encoder) finish(ev *sinks.Event, v []byte, r *relation, tx *Tx) {
	v = appendTail(v, &tail{source: r.source, xid: tx.Xid, hasXid: true, lsn: ev.LSN, commitLSN: ev.CommitLSN,
		commitMs: tx.CommitTime.UnixMilli(), emitMs: e.now().UnixMilli()})
	e.val = v
	ev.Value = v
	if len(r.key) > 0 {
		ev.Key = e.key
	}
	tx.Seq++
}

// appendBefore appends the "before" value: all columns of a full old row, the identity columns of
// an old key, or null.
func (e *Encoder) appendBefore(v []byte, r *relation, kind byte, old *walparse.Tuple) ([]byte, error) {
	switch kind {
	case walparse.OldFull:
		return e.appendObject(v, r, nil, old, nil, false)
	case walparse.OldKey:
		return e.appendObject(v, r, r.ident, old, nil, false)
	}
	return append(v, "null"...), nil
}

// appendKey appends the Key object of r from t (an unchanged TOAST key column is taken from fill
// when fill holds it). It appends nothing when r has no key columns.
func (e *Encoder) appendKey(k []byte, r *relation, t, fill *walparse.Tuple) ([]byte, error) {
	if len(r.key) == 0 {
		return k, nil
	}
	return e.appendObject(k, r, r.key, t, fill, false)
}

// appendToast appends `,"unchanged_toast":[…]` for the columns collected in e.toast.
func (e *Encoder) appendToast(v []byte, r *relation) []byte {
	if len(e.toast) == 0 {
		return v
	}
	v = append(v, `,"unchanged_toast":[`...)
	for j, i := range e.toast {
		if j > 0 {
			v = append(v, ',')
		}
		v = append(v, r.cols[i].quotedName()...)
	}
	return append(v, ']')
}

// appendObject appends a JSON object of the columns idx (nil: all) of t. A column whose value is
// unchanged TOAST is taken from fill when fill holds a text value for it; otherwise it is left out,
// and recorded in e.toast when collect is set. Tuple column counts are checked by the caller.
func (e *Encoder) appendObject(v []byte, r *relation, idx []int, t, fill *walparse.Tuple, collect bool) ([]byte, error) {
	v = append(v, '{')
	first := true
	n := len(r.cols)
	if idx != nil {
		n = len(idx)
	}
	for j := 0; j < n; j++ {
		i := j
		if idx != nil {
			i = idx[j]
		}
		c := &r.cols[i]
		tc := &t.Columns[i]
		kind, data := tc.Kind, tc.Data
		if kind == walparse.TupleUnchangedToast {
			if fill != nil && fill.Columns[i].Kind == walparse.TupleText {
				kind, data = walparse.TupleText, fill.Columns[i].Data
			} else {
				if collect {
					e.toast = append(e.toast, i)
				}
				continue
			}
		}
		if !first {
			v = append(v, ',')
		}
		first = false
		v = append(v, c.key...)
		switch kind {
		case walparse.TupleNull:
			v = append(v, "null"...)
		case walparse.TupleText:
			var err error
			if v, err = c.write(v, data); err != nil {
				return v, &ColumnError{Column: c.name, Err: err}
			}
		case walparse.TupleBinary:
			return v, &ColumnError{Column: c.name, Err: ErrBinaryValue}
		default:
			return v, &ColumnError{Column: c.name, Err: fmt.Errorf("%w: %q", ErrColumnKind, kind)}
		}
	}
	return append(v, '}'), nil
}

// ColumnError names the column whose value could not be encoded. Err wraps ErrValue,
// ErrBinaryValue or ErrColumnKind.
type ColumnError struct {
	Schema, Table string
	Column        string
	Err           error
}

func (e *ColumnError) Error() string {
	return "column " + strconv.Quote(e.Schema+"."+e.Table+"."+e.Column) + ": " + e.Err.Error()
}

func (e *ColumnError) Unwrap() error { return e.Err }

// colErr fills in the relation of a ColumnError and adds the operation.
func (r *relation) colErr(op string, err error) error {
	if ce, ok := err.(*ColumnError); ok {
		ce.Schema, ce.Table = r.schema, r.table
	}
	return fmt.Errorf("%s: %w", op, err)
}
