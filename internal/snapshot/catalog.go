package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/walparse"
)

// Errors callers can branch on with errors.Is.
var (
	// ErrTableGone: the table was dropped, or renamed, or its name now belongs to another table
	// (another OID) than the one the snapshot was planned for.
	ErrTableGone = errors.New("table no longer exists")
	// ErrNotInPublication: LookupTables was asked for a table the publication does not publish.
	ErrNotInPublication = errors.New("table not in publication")
	// ErrAmbiguous: LookupTables was given a name that matches two published tables.
	ErrAmbiguous = errors.New("ambiguous table name")
	// ErrNoPublication: the publication does not exist in the connection's database.
	ErrNoPublication = errors.New("publication does not exist")
	// ErrMalformedRow: a row of COPY's text output does not have the shape the query implies.
	ErrMalformedRow = errors.New("malformed COPY row")
)

// Table is a published table as the snapshot plans it.
type Table struct {
	OID    uint32
	Schema string
	Name   string
	Pages  uint32  // current size: pg_relation_size(oid) / current_setting('block_size')
	Rows   float64 // pg_class.reltuples (-1 or 0 when never analyzed)
	// Columns is the publication's column list (PostgreSQL 15+ pg_publication_tables.attnames) in
	// column order; nil means every column.
	Columns []string
	// RowFilter is the publication's row filter (PostgreSQL 15+ pg_publication_tables.rowfilter) as
	// PostgreSQL prints it, parenthesised; "" means none.
	RowFilter string
}

// QualifiedName returns schema.name.
func (t *Table) QualifiedName() string { return t.Schema + "." + t.Name }

// DefaultChunkPages is the default chunk size (snapshot.chunk_pages), which Plan also uses when
// given 0: 1024 pages, 8 MiB of 8 kB pages.
const DefaultChunkPages = 1024

// listQuery lists a publication's tables. $1 is the publication. The column list is reported only
// when the publication names one (pg_publication_rel.prattrs): attnames lists every column otherwise.
const listQuery = `SELECT c.oid, n.nspname, c.relname,
	%s / pg_catalog.current_setting('block_size')::int8,
	c.reltuples, %s
FROM pg_catalog.pg_publication p
JOIN pg_catalog.pg_publication_tables pt ON pt.pubname = p.pubname
JOIN pg_catalog.pg_namespace n ON n.nspname = pt.schemaname
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
WHERE p.pubname = $1
ORDER BY n.nspname, c.relname`

// The size of a table in bytes. A partitioned table (published with publish_via_partition_root) has
// no storage of its own; a ctid range applies to each of its partitions, so its chunks cover the
// pages of its largest partition.
const (
	pagesPlain       = `pg_catalog.pg_relation_size(c.oid)`
	pagesPartitioned = `CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(max(pg_catalog.pg_relation_size(pt2.relid)), 0)
		FROM pg_catalog.pg_partition_tree(c.oid) pt2 WHERE pt2.isleaf) ELSE pg_catalog.pg_relation_size(c.oid) END`
)

const (
	listColumns15 = `CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_publication_rel pr
		WHERE pr.prpubid = p.oid AND pr.prrelid = c.oid AND pr.prattrs IS NOT NULL)
	THEN pg_catalog.array_to_json(pt.attnames)::text END, pt.rowfilter`
	listColumnsOld = `NULL::text, NULL::text`
)

// ListTables returns the tables of the publication (pg_publication_tables), ordered by schema and
// name. A publication that does not exist is an error wrapping ErrNoPublication.
func ListTables(ctx context.Context, conn *pgconn.PgConn, publication string) ([]Table, error) {
	cols := listColumnsOld
	if pgsql.ServerMajor(conn) >= 15 {
		cols = listColumns15
	}
	pages := pagesPlain
	if pgsql.ServerMajor(conn) >= 12 {
		pages = pagesPartitioned
	}
	res := conn.ExecParams(ctx, fmt.Sprintf(listQuery, pages, cols), [][]byte{[]byte(publication)}, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, fmt.Errorf("list tables of publication %q: %w", publication, res.Err)
	}
	if len(res.Rows) == 0 {
		res := conn.ExecParams(ctx, `SELECT FROM pg_catalog.pg_publication WHERE pubname = $1`, [][]byte{[]byte(publication)}, nil, nil, nil).Read()
		if res.Err != nil {
			return nil, fmt.Errorf("look up publication %q: %w", publication, res.Err)
		}
		if len(res.Rows) == 0 {
			return nil, fmt.Errorf("%w: %q", ErrNoPublication, publication)
		}
		return nil, nil
	}
	tables := make([]Table, 0, len(res.Rows))
	for _, r := range res.Rows {
		t, err := parseTableRow(r)
		if err != nil {
			return nil, fmt.Errorf("list tables of publication %q: %w", publication, err)
		}
		tables = append(tables, t)
	}
	return tables, nil
}

// parseTableRow reads a row of listQuery.
func parseTableRow(r [][]byte) (Table, error) {
	if len(r) != 7 {
		return Table{}, fmt.Errorf("%d columns, want 7", len(r))
	}
	oid, err := strconv.ParseUint(string(r[0]), 10, 32)
	if err != nil {
		return Table{}, fmt.Errorf("oid %q: %w", r[0], err)
	}
	t := Table{OID: uint32(oid), Schema: string(r[1]), Name: string(r[2])}
	pages, err := strconv.ParseUint(string(r[3]), 10, 32)
	if err != nil {
		return Table{}, fmt.Errorf("table %s: pages %q: %w", t.QualifiedName(), r[3], err)
	}
	t.Pages = uint32(pages)
	if t.Rows, err = strconv.ParseFloat(string(r[4]), 64); err != nil {
		return Table{}, fmt.Errorf("table %s: reltuples %q: %w", t.QualifiedName(), r[4], err)
	}
	if r[5] != nil {
		if err := json.Unmarshal(r[5], &t.Columns); err != nil {
			return Table{}, fmt.Errorf("table %s: column list %q: %w", t.QualifiedName(), r[5], err)
		}
		if t.Columns == nil {
			t.Columns = []string{}
		}
	}
	t.RowFilter = string(r[6])
	return t, nil
}

// LookupTables returns the named tables ("schema.table", or "table" meaning public.table; names are
// case-sensitive as stored and not quoted) that are in the publication, in the order given and
// without repeats. Names not in it are an error wrapping ErrNotInPublication that lists every such
// name and the ALTER PUBLICATION statement adding them.
func LookupTables(ctx context.Context, conn *pgconn.PgConn, publication string, names []string) ([]Table, error) {
	all, err := ListTables(ctx, conn, publication)
	if err != nil {
		return nil, err
	}
	var (
		out     []Table
		missing []string
		idents  []string
		seen    = make(map[uint32]bool)
	)
	for _, name := range names {
		i, err := findTable(all, name)
		if err != nil {
			return nil, fmt.Errorf("look up table %q: %w", name, err)
		}
		if i < 0 {
			schema, table, ok := strings.Cut(name, ".")
			if !ok {
				schema, table = "public", name
			}
			missing = append(missing, strconv.Quote(name))
			idents = append(idents, pgsql.QuoteIdent(schema)+"."+pgsql.QuoteIdent(table))
			continue
		}
		if !seen[all[i].OID] {
			seen[all[i].OID] = true
			out = append(out, all[i])
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w %q: %s (they may not exist; to publish them: ALTER PUBLICATION %s ADD TABLE %s)",
			ErrNotInPublication, publication, strings.Join(missing, ", "), pgsql.QuoteIdent(publication), strings.Join(idents, ", "))
	}
	return out, nil
}

// findTable returns the index in tables of the table called name, or -1. A name with a dot is
// schema.table (either part may itself hold dots: the stored names decide), one without is in
// public. A name that matches two tables is an error.
func findTable(tables []Table, name string) (int, error) {
	found := -1
	for i := range tables {
		t := &tables[i]
		match := t.Schema == "public" && t.Name == name && !strings.Contains(name, ".")
		if !match && len(name) == len(t.Schema)+1+len(t.Name) {
			match = strings.HasPrefix(name, t.Schema) && name[len(t.Schema)] == '.' && strings.HasSuffix(name, t.Name)
		}
		if !match {
			continue
		}
		if found >= 0 {
			return -1, fmt.Errorf("%w: both %q.%q and %q.%q", ErrAmbiguous, tables[found].Schema, tables[found].Name, t.Schema, t.Name)
		}
		found = i
	}
	return found, nil
}

// Plan returns a TableSnapshot per table, with generation gen and chunks of chunkPages pages
// (0 means DefaultChunkPages), nothing done yet.
func Plan(tables []Table, gen lsn.LSN, chunkPages uint32) []checkpoint.TableSnapshot {
	if chunkPages == 0 {
		chunkPages = DefaultChunkPages
	}
	out := make([]checkpoint.TableSnapshot, len(tables))
	for i, t := range tables {
		out[i] = checkpoint.TableSnapshot{
			Gen: gen, OID: t.OID, Schema: t.Schema, Table: t.Name,
			Pages: t.Pages, ChunkPages: chunkPages,
		}
	}
	return out
}

// relationQuery describes a table: one row per column that is not dropped (one row of NULL columns
// for a table without any), none if the OID is gone. %s is the generated-column test. Its last
// column is what the quoted name $2 resolves to now: catalog queries see the catalog as of the
// transaction's snapshot, name resolution (as COPY does it) sees the latest one.
const relationQuery = `SELECT n.nspname, c.relname, c.relreplident, a.attname, a.atttypid, a.atttypmod, %s,
	CASE c.relreplident
		WHEN 'f' THEN true
		WHEN 'd' THEN EXISTS (SELECT FROM pg_catalog.pg_index i
			WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY (i.indkey))
		WHEN 'i' THEN EXISTS (SELECT FROM pg_catalog.pg_index i
			WHERE i.indrelid = c.oid AND i.indisreplident AND a.attnum = ANY (i.indkey))
		ELSE false
	END,
	pg_catalog.to_regclass($2)::oid
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.oid = $1
ORDER BY a.attnum`

// LoadRelation describes the table as pgoutput's Relation message would: RelationID oid, Namespace
// and Name, ReplicaIdentity = relreplident, and the columns in attnum order without dropped and
// generated columns, limited to cols when cols is non-nil (a name in cols that is not such a column
// is an error). Each column has TypeOID = atttypid, TypeMod = atttypmod and the key flag when it is
// part of the replica identity: relreplident 'd' the primary key's columns, 'i' the columns of the
// index marked indisreplident, 'f' every column, 'n' none.
//
// A table that no longer exists, or whose OID no longer belongs to schema.name, is an error wrapping
// ErrTableGone.
func LoadRelation(ctx context.Context, conn *pgconn.PgConn, oid uint32, schema, name string, cols []string) (*walparse.Relation, error) {
	generated := "false"
	if pgsql.ServerMajor(conn) >= 12 {
		generated = "a.attgenerated <> ''"
	}
	oidText := strconv.AppendUint(nil, uint64(oid), 10)
	res := conn.ExecParams(ctx, fmt.Sprintf(relationQuery, generated),
		[][]byte{oidText, []byte(pgsql.QuoteIdent(schema) + "." + pgsql.QuoteIdent(name))}, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, fmt.Errorf("describe table %s.%s: %w", schema, name, res.Err)
	}
	if len(res.Rows) == 0 {
		return nil, fmt.Errorf("%w: %s.%s (oid %d)", ErrTableGone, schema, name, oid)
	}
	first := res.Rows[0]
	if len(first) != 9 {
		return nil, fmt.Errorf("describe table %s.%s: %d columns, want 9", schema, name, len(first))
	}
	if string(first[0]) != schema || string(first[1]) != name {
		return nil, fmt.Errorf("%w: %s.%s (oid %d is now %s.%s)", ErrTableGone, schema, name, oid, first[0], first[1])
	}
	if !bytes.Equal(first[8], oidText) {
		return nil, fmt.Errorf("%w: %s.%s (oid %d; the name now resolves to %q)", ErrTableGone, schema, name, oid, first[8])
	}
	if len(first[2]) != 1 {
		return nil, fmt.Errorf("describe table %s.%s: relreplident %q", schema, name, first[2])
	}
	rel := &walparse.Relation{RelationID: oid, Namespace: schema, Name: name, ReplicaIdentity: first[2][0]}
	want := make(map[string]bool, len(cols))
	for _, c := range cols {
		want[c] = true
	}
	for _, r := range res.Rows {
		if r[3] == nil { // no columns at all
			break
		}
		attname := string(r[3])
		if cols != nil && !want[attname] {
			continue
		}
		delete(want, attname)
		if string(r[6]) == "t" {
			continue
		}
		typ, err := strconv.ParseUint(string(r[4]), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("describe table %s.%s: column %q: atttypid %q: %w", schema, name, attname, r[4], err)
		}
		mod, err := strconv.ParseInt(string(r[5]), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("describe table %s.%s: column %q: atttypmod %q: %w", schema, name, attname, r[5], err)
		}
		c := walparse.RelationColumn{Name: attname, TypeOID: uint32(typ), TypeMod: int32(mod)}
		if string(r[7]) == "t" {
			c.Flags = walparse.ColumnFlagKey
		}
		rel.Columns = append(rel.Columns, c)
	}
	if len(want) > 0 {
		missing := make([]string, 0, len(want))
		for _, c := range cols {
			if want[c] {
				missing = append(missing, strconv.Quote(c))
			}
		}
		return nil, fmt.Errorf("describe table %s.%s: no column %s", schema, name, strings.Join(missing, ", "))
	}
	return rel, nil
}
