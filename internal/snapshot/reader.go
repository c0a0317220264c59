package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/events"
	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/walparse"
)

// keepBuffer is the capacity above which a row buffer is dropped after a chunk, so that one huge
// row does not pin its memory for the Reader's lifetime.
const keepBuffer = 1 << 20

// Reader reads chunks of tables over one ordinary connection, in whatever transaction the caller
// opened on it (for a consistent snapshot: BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET
// TRANSACTION SNAPSHOT '…'). Before each COPY it gives the session the settings the replication
// session formats values with (pgsql.SessionSQL: DateStyle, TimeZone, IntervalStyle,
// extra_float_digits, bytea_output…), so that a row's text is the text pgoutput would send whatever
// settings the connection came with. Memory does not grow with a table: it holds at most one row
// (and its event) at a time.
// Not safe for concurrent use, and the connection must not be used by anyone else meanwhile.
type Reader struct {
	conn  *pgconn.PgConn
	enc   *events.Encoder
	now   func() time.Time
	clock time.Time // the emit time of the rows being read, refreshed every clockRows rows
	rels  map[uint32]*tableRel
	sql   []byte
	w     chunkWriter
}

// tableRel is a table whose Relation the Reader's Encoder holds.
type tableRel struct {
	cols  []string // the column list it was loaded with; nil means every column
	names []string // the COPY's columns: "ctid", "xmin", "tableoid", then the Relation's columns
	list  []byte   // the quoted select list of the COPY
}

// NewReader returns a Reader that encodes with source.db database and the clock now (nil means
// time.Now). It does no I/O.
func NewReader(conn *pgconn.PgConn, database string, now func() time.Time) *Reader {
	if now == nil {
		now = time.Now
	}
	r := &Reader{conn: conn, now: now, rels: make(map[uint32]*tableRel)}
	// Rows read together share an emit time, read from the clock once per clockRows rows.
	r.enc = events.NewEncoder(events.Options{Database: database, Now: func() time.Time { return r.clock }}, events.NewCatalog(conn))
	return r
}

// clockRows is how many rows share one reading of the clock (ts_ms has millisecond precision, and a
// reader emits several hundred rows per millisecond).
const clockRows = 256

// ReadChunk reads chunk i of t — COPY (SELECT ctid, xmin, tableoid, <columns> FROM <table> WHERE ctid >=
// '(start,0)'::tid [AND ctid < '(end,0)'::tid unless it is the last chunk] [AND (<row filter>)]) TO
// STDOUT — and calls emit with an op "r" event (events.Encoder.Read) for every row. The event's Key
// and Value are valid only during the call. cols is the table's column list (nil: every column) and
// rowFilter its row filter ("": none), as Table reports them. It returns the number of rows emit
// accepted.
//
// The table's relation is loaded (LoadRelation, then the Encoder's Relation) on the Reader's first
// read of it, and again after a failed read or when cols changes; before every later chunk a cheap
// query checks that schema.table still resolves to t.OID. A table dropped, renamed or recreated
// under its name is an error wrapping ErrTableGone, found before the COPY so that the caller's
// transaction stays usable (unless the table goes while the COPY starts: that aborts it).
//
// An error from emit stops the read and is returned as is. pgconn ends a COPY whose output fails by
// closing the connection: after an error from emit, or a malformed row, the connection and the
// caller's transaction are gone (conn.IsClosed reports true; conn.CleanupDone is closed once pgconn
// has finished with the socket).
func (r *Reader) ReadChunk(ctx context.Context, t *checkpoint.TableSnapshot, cols []string, rowFilter string, i uint32, emit func(sinks.Event) error) (rows int64, err error) {
	if err := t.Validate(); err != nil {
		return 0, err
	}
	if i >= t.Chunks() {
		return 0, fmt.Errorf("read %s: chunk %d of %d chunks", t.Name(), i, t.Chunks())
	}
	rel, err := r.relation(ctx, t, cols)
	if err != nil {
		return 0, err
	}
	start, end, last := t.PageRange(i)
	sql := r.copySQL(t, rel, rowFilter, start, end, last)

	w := &r.w
	*w = chunkWriter{enc: r.enc, t: t, chunk: i, names: rel.names, emit: emit, parser: w.parser, carry: w.carry[:0], r: r}
	_, err = r.conn.CopyTo(ctx, w, sql)
	rows = w.rows
	switch {
	case w.err != nil:
		err = w.err // CopyTo returns the writer's error; keep the original, unwrapped
	case err != nil:
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
			err = fmt.Errorf("read %s chunk %d: %w: %w", t.Name(), i, ErrTableGone, err)
		} else {
			err = fmt.Errorf("read %s chunk %d: %w", t.Name(), i, err)
		}
	case len(w.carry) > 0:
		err = fmt.Errorf("read %s chunk %d: %w: the COPY ended inside a row", t.Name(), i, ErrMalformedRow)
	}
	w.release()
	if err != nil && !w.emitFailed {
		delete(r.rels, t.OID) // reload: the table may have changed
	}
	return rows, err
}

// relation returns the loaded relation of t, loading it if needed, or checking that the table is
// still the one it was loaded for.
func (r *Reader) relation(ctx context.Context, t *checkpoint.TableSnapshot, cols []string) (*tableRel, error) {
	if rel, ok := r.rels[t.OID]; ok && slices.Equal(rel.cols, cols) && (rel.cols == nil) == (cols == nil) {
		if err := r.checkOID(ctx, t); err != nil {
			delete(r.rels, t.OID)
			return nil, err
		}
		return rel, nil
	}
	delete(r.rels, t.OID)
	wr, err := LoadRelation(ctx, r.conn, t.OID, t.Schema, t.Table, cols)
	if err != nil {
		return nil, err
	}
	if err := r.enc.Relation(ctx, wr); err != nil {
		return nil, fmt.Errorf("read %s: %w", t.Name(), err)
	}
	rel := &tableRel{cols: slices.Clone(cols), names: make([]string, 0, 2+len(wr.Columns))}
	rel.names = append(rel.names, "ctid", "xmin", "tableoid")
	rel.list = append(rel.list, "ctid, xmin, tableoid"...)
	for _, c := range wr.Columns {
		rel.names = append(rel.names, c.Name)
		rel.list = append(rel.list, ", "...)
		rel.list = append(rel.list, pgsql.QuoteIdent(c.Name)...)
	}
	r.rels[t.OID] = rel
	return rel, nil
}

// checkOID reports ErrTableGone unless schema.table of t resolves to t.OID, as the COPY's name will:
// name resolution sees the latest catalog, whatever the transaction's snapshot.
func (r *Reader) checkOID(ctx context.Context, t *checkpoint.TableSnapshot) error {
	name := pgsql.QuoteIdent(t.Schema) + "." + pgsql.QuoteIdent(t.Table)
	res := r.conn.ExecParams(ctx, `SELECT pg_catalog.to_regclass($1)::oid`, [][]byte{[]byte(name)}, nil, nil, nil).Read()
	if res.Err != nil {
		return fmt.Errorf("read %s: look up table: %w", t.Name(), res.Err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return fmt.Errorf("read %s: look up table: unexpected result shape", t.Name())
	}
	if got := res.Rows[0][0]; string(got) != strconv.FormatUint(uint64(t.OID), 10) {
		return fmt.Errorf("%w: %s (oid %d; the name now resolves to %q)", ErrTableGone, t.Name(), t.OID, got)
	}
	return nil
}

// copySQL builds the session settings (pgsql.SessionSQL) and the COPY of pages [start, end)
// (from start on if last).
func (r *Reader) copySQL(t *checkpoint.TableSnapshot, rel *tableRel, rowFilter string, start, end uint32, last bool) string {
	s := append(r.sql[:0], pgsql.SessionSQL()...)
	s = append(s, "COPY (SELECT "...)
	s = append(s, rel.list...)
	s = append(s, " FROM "...)
	s = append(s, pgsql.QuoteIdent(t.Schema)...)
	s = append(s, '.')
	s = append(s, pgsql.QuoteIdent(t.Table)...)
	s = append(s, " WHERE ctid >= '("...)
	s = strconv.AppendUint(s, uint64(start), 10)
	s = append(s, ",0)'::tid"...)
	if !last {
		s = append(s, " AND ctid < '("...)
		s = strconv.AppendUint(s, uint64(end), 10)
		s = append(s, ",0)'::tid"...)
	}
	if rowFilter != "" {
		s = append(s, " AND ("...)
		s = append(s, rowFilter...)
		s = append(s, ')')
	}
	s = append(s, ") TO STDOUT"...)
	r.sql = s
	return string(s)
}

// chunkWriter is the io.Writer CopyTo writes a chunk's CopyData payloads to. It splits them into
// rows wherever they fall (a payload may hold part of a row or several rows) and encodes and emits
// each row as soon as its newline arrives; only an incomplete row is copied, into carry.
type chunkWriter struct {
	r      *Reader
	enc    *events.Encoder
	t      *checkpoint.TableSnapshot
	chunk  uint32
	names  []string
	emit   func(sinks.Event) error
	parser rowParser
	tail   walparse.Tuple // the table's columns: the parsed row after ctid and xmin
	carry  []byte
	rows   int64
	err    error // the first error; every later Write returns it
	// emitFailed reports that err came from emit.
	emitFailed bool
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	if len(w.carry) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.carry = append(w.carry, p...)
			return n, nil
		}
		w.carry = append(w.carry, p[:i]...)
		if err := w.row(w.carry); err != nil {
			return 0, err
		}
		w.carry = w.carry[:0]
		p = p[i+1:]
	}
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			break
		}
		if err := w.row(p[:i]); err != nil {
			return 0, err
		}
		p = p[i+1:]
	}
	w.carry = append(w.carry, p...)
	return n, nil
}

// row encodes and emits one row. It records the first error in w.err.
func (w *chunkWriter) row(line []byte) error {
	tup, err := w.parser.parse(line, w.names)
	if err != nil {
		w.err = fmt.Errorf("read %s chunk %d row %d: %w", w.t.Name(), w.chunk, w.rows, err)
		return w.err
	}
	c := &tup.Columns[0]
	ctid, ok := parseCTID(c.Data)
	if !ok || c.Kind != walparse.TupleText {
		w.err = fmt.Errorf("read %s chunk %d row %d: %w: ctid %q", w.t.Name(), w.chunk, w.rows, ErrMalformedRow, c.Data)
		return w.err
	}
	c = &tup.Columns[1]
	xmin, ok := parseUint(c.Data, 1<<32-1)
	if !ok || c.Kind != walparse.TupleText {
		w.err = fmt.Errorf("read %s chunk %d row %d: %w: xmin %q", w.t.Name(), w.chunk, w.rows, ErrMalformedRow, c.Data)
		return w.err
	}
	c = &tup.Columns[2]
	tableOID, ok := parseUint(c.Data, 1<<32-1)
	if !ok || c.Kind != walparse.TupleText {
		w.err = fmt.Errorf("read %s chunk %d row %d: %w: tableoid %q", w.t.Name(), w.chunk, w.rows, ErrMalformedRow, c.Data)
		return w.err
	}
	w.tail.Columns = tup.Columns[3:]
	if w.rows%clockRows == 0 && w.r != nil {
		w.r.clock = w.r.now()
	}
	ev, err := w.enc.Read(w.t.Gen, w.t.OID, uint32(tableOID), ctid, uint32(xmin), &w.tail)
	if err != nil {
		w.err = fmt.Errorf("read %s chunk %d row (%d,%d): %w", w.t.Name(), w.chunk, ctid>>16, ctid&0xffff, err)
		return w.err
	}
	if err := w.emit(ev); err != nil {
		w.err, w.emitFailed = err, true
		return err
	}
	w.rows++
	return nil
}

// release forgets the chunk and drops buffers a huge row grew.
func (w *chunkWriter) release() {
	w.emit, w.t, w.tail.Columns = nil, nil, nil
	if cap(w.carry) > keepBuffer {
		w.carry = nil
	}
	if cap(w.parser.buf) > keepBuffer {
		w.parser.buf = nil
	}
}

// parseCTID reads a tid's output "(block,offset)" as block<<16 | offset.
func parseCTID(b []byte) (uint64, bool) {
	if len(b) < 5 || b[0] != '(' || b[len(b)-1] != ')' {
		return 0, false
	}
	b = b[1 : len(b)-1]
	comma := bytes.IndexByte(b, ',')
	if comma < 0 {
		return 0, false
	}
	block, ok := parseUint(b[:comma], 1<<32-1)
	if !ok {
		return 0, false
	}
	off, ok := parseUint(b[comma+1:], 1<<16-1)
	if !ok {
		return 0, false
	}
	return block<<16 | off, true
}

// parseUint reads a decimal number of at most max.
func parseUint(b []byte, max uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, v <= max
}
