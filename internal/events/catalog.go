package events

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
)

// pgCatalog is the Catalog of NewCatalog.
type pgCatalog struct {
	conn  *pgconn.PgConn
	types map[uint32]TypeInfo
	pks   map[uint32][]string
}

var (
	_ Catalog     = (*pgCatalog)(nil)
	_ Invalidator = (*pgCatalog)(nil)
)

// NewCatalog returns a Catalog that queries pg_type and pg_index over conn, an ordinary (not
// replication) connection to the replicated database, and caches the answers until invalidated.
// It is not safe for concurrent use, and conn must not be used by anyone else meanwhile.
func NewCatalog(conn *pgconn.PgConn) Catalog {
	return &pgCatalog{conn: conn, types: make(map[uint32]TypeInfo), pks: make(map[uint32][]string)}
}

const typeQuery = `SELECT oid, typname, typtype, typcategory, typbasetype, typelem, typdelim
FROM pg_catalog.pg_type WHERE oid = $1`

// A primary key's columns in key order.
const pkQuery = `SELECT a.attname
FROM pg_catalog.pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1 AND i.indisprimary
ORDER BY k.ord`

func (c *pgCatalog) ResolveType(ctx context.Context, oid uint32) (TypeInfo, error) {
	if t, ok := c.types[oid]; ok {
		return t, nil
	}
	res := c.conn.ExecParams(ctx, typeQuery, [][]byte{strconv.AppendUint(nil, uint64(oid), 10)}, nil, nil, nil).Read()
	if res.Err != nil {
		return TypeInfo{}, fmt.Errorf("query pg_type: %w", res.Err)
	}
	if len(res.Rows) == 0 {
		return TypeInfo{}, fmt.Errorf("%w: oid %d not in pg_type", ErrUnknownType, oid)
	}
	row := make([]string, len(res.Rows[0]))
	for i, v := range res.Rows[0] {
		row[i] = string(v)
	}
	t, err := parseTypeRow(row)
	if err != nil {
		return TypeInfo{}, err
	}
	c.types[oid] = t
	return t, nil
}

func (c *pgCatalog) PrimaryKey(ctx context.Context, relationID uint32) ([]string, error) {
	if pk, ok := c.pks[relationID]; ok {
		return pk, nil
	}
	res := c.conn.ExecParams(ctx, pkQuery, [][]byte{strconv.AppendUint(nil, uint64(relationID), 10)}, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, fmt.Errorf("query primary key: %w", res.Err)
	}
	var pk []string
	for _, r := range res.Rows {
		if len(r) != 1 {
			return nil, fmt.Errorf("query primary key: %d columns, want 1", len(r))
		}
		pk = append(pk, string(r[0]))
	}
	c.pks[relationID] = pk
	return pk, nil
}

func (c *pgCatalog) InvalidateType(oid uint32)            { delete(c.types, oid) }
func (c *pgCatalog) InvalidateRelation(relationID uint32) { delete(c.pks, relationID) }

// parseTypeRow reads the text columns of typeQuery.
func parseTypeRow(r []string) (TypeInfo, error) {
	if len(r) != 7 {
		return TypeInfo{}, fmt.Errorf("pg_type row: %d columns, want 7", len(r))
	}
	var t TypeInfo
	var nums [3]uint32
	for i, s := range []string{r[0], r[4], r[5]} {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return TypeInfo{}, fmt.Errorf("pg_type row: oid column %q: %w", s, err)
		}
		nums[i] = uint32(n)
	}
	t.OID, t.BaseOID, t.ElemOID = nums[0], nums[1], nums[2]
	t.Name = r[1]
	for _, f := range []struct {
		dst *byte
		s   string
	}{{&t.Type, r[2]}, {&t.Category, r[3]}, {&t.Delim, r[6]}} {
		if len(f.s) != 1 {
			return TypeInfo{}, fmt.Errorf("pg_type row %q: char column %q is not one byte", t.Name, f.s)
		}
		*f.dst = f.s[0]
	}
	return t, nil
}
