package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/lsn"
)

// Table names of the workloads.
const (
	MixedTable   = "bench_mixed"
	BigTxTable   = "bench_bigtx"
	LatencyTable = "bench_latency"
)

// ErrSizes is returned by Sizes.Validate.
var ErrSizes = errors.New("invalid workload sizes")

// Sizes are the workload sizes. The zero value means the defaults documented per field.
type Sizes struct {
	// Rows inserted by the mixed workload. Default 1,000,000.
	Rows int
	// InsertTx is the number of rows per insert transaction of the mixed workload. Default 10,000.
	InsertTx int
	// Updates and Deletes are the rows the mixed workload updates and then deletes after inserting.
	// Defaults 200,000 and 100,000 (scaled down with Rows when Rows is below the default, so that
	// both stay within the inserted rows). They may not overlap: Updates+Deletes <= Rows.
	Updates int
	Deletes int
	// ChangeTx is the number of rows per update and per delete transaction. Default 1,000.
	ChangeTx int
	// BigTxRows is the size of the single-transaction workload. Default 1,000,000.
	BigTxRows int
}

// Validate fills in defaults and rejects sizes that cannot work.
func (s *Sizes) Validate() error {
	if s.Rows == 0 {
		s.Rows = 1_000_000
	}
	if s.InsertTx == 0 {
		s.InsertTx = 10_000
	}
	if s.Updates == 0 {
		s.Updates = s.Rows / 5
	}
	if s.Deletes == 0 {
		s.Deletes = s.Rows / 10
	}
	if s.ChangeTx == 0 {
		s.ChangeTx = 1_000
	}
	if s.BigTxRows == 0 {
		s.BigTxRows = 1_000_000
	}
	if s.Rows < 0 || s.InsertTx <= 0 || s.Updates < 0 || s.Deletes < 0 || s.ChangeTx <= 0 || s.BigTxRows < 0 {
		return fmt.Errorf("%w: sizes must be positive", ErrSizes)
	}
	if s.Updates+s.Deletes > s.Rows {
		return fmt.Errorf("%w: updates (%d) and deletes (%d) exceed the inserted rows (%d)", ErrSizes, s.Updates, s.Deletes, s.Rows)
	}
	return nil
}

// MixedChanges is the number of row changes the mixed workload produces.
func (s Sizes) MixedChanges() int64 { return int64(s.Rows + s.Updates + s.Deletes) }

// columns is the shape of both throughput tables: about 200 bytes a row on disk.
const columns = `id int8 PRIMARY KEY, name text, amount numeric(12,2), created timestamptz, attrs jsonb,
	active bool, score float8, tags text[], note text`

// Setup creates the workload tables and the publication pub FOR ALL TABLES.
func Setup(ctx context.Context, conn *pgconn.PgConn, pub string) error {
	sql := fmt.Sprintf(`CREATE TABLE %s (%s);
CREATE TABLE %s (%s);
CREATE TABLE %s (id bigserial PRIMARY KEY, t0 timestamptz NOT NULL DEFAULT clock_timestamp(), payload text);
CREATE PUBLICATION %s FOR ALL TABLES;`, MixedTable, columns, BigTxTable, columns, LatencyTable, pub)
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		return fmt.Errorf("create tables: %w", err)
	}
	return nil
}

// insertSQL inserts the rows with ids lo..hi (inclusive) into table in one statement.
func insertSQL(table string, lo, hi int) string {
	return fmt.Sprintf(`INSERT INTO %s
SELECT g, 'customer-' || g, (g %% 100000) / 100.0, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
	jsonb_build_object('k', g, 'h', md5(g::text), 'f', g %% 3 = 0), g %% 2 = 0, g * 1.25,
	ARRAY['tag-' || (g %% 10), 'tag-' || (g %% 7), 'x'], repeat('n', 40) || g
FROM generate_series(%d, %d) AS g`, table, lo, hi)
}

// execSQL runs one statement in its own transaction.
func execSQL(ctx context.Context, conn *pgconn.PgConn, sql string) error {
	_, err := conn.Exec(ctx, sql).ReadAll()
	return err
}

// RunMixed runs the mixed workload on conn: s.Rows inserts in transactions of s.InsertTx, then
// s.Updates updates (of ids 1..) and s.Deletes deletes (of the highest ids) in transactions of
// s.ChangeTx. s must have been validated.
func RunMixed(ctx context.Context, conn *pgconn.PgConn, s Sizes) error {
	for lo := 1; lo <= s.Rows; lo += s.InsertTx {
		if err := execSQL(ctx, conn, insertSQL(MixedTable, lo, min(lo+s.InsertTx-1, s.Rows))); err != nil {
			return fmt.Errorf("insert rows %d..: %w", lo, err)
		}
	}
	for lo := 1; lo <= s.Updates; lo += s.ChangeTx {
		hi := min(lo+s.ChangeTx-1, s.Updates)
		sql := fmt.Sprintf(`UPDATE %s SET score = score + 1, name = name || '*', active = NOT active WHERE id BETWEEN %d AND %d`, MixedTable, lo, hi)
		if err := execSQL(ctx, conn, sql); err != nil {
			return fmt.Errorf("update rows %d..: %w", lo, err)
		}
	}
	first := s.Rows - s.Deletes + 1
	for lo := first; lo <= s.Rows; lo += s.ChangeTx {
		hi := min(lo+s.ChangeTx-1, s.Rows)
		if err := execSQL(ctx, conn, fmt.Sprintf(`DELETE FROM %s WHERE id BETWEEN %d AND %d`, MixedTable, lo, hi)); err != nil {
			return fmt.Errorf("delete rows %d..: %w", lo, err)
		}
	}
	return nil
}

// RunBigTx inserts rows rows into the big-transaction table in one transaction.
func RunBigTx(ctx context.Context, conn *pgconn.PgConn, rows int) error {
	if err := execSQL(ctx, conn, insertSQL(BigTxTable, 1, rows)); err != nil {
		return fmt.Errorf("insert %d rows in one transaction: %w", rows, err)
	}
	return nil
}

// QueryOne returns the first column of the first row of sql as text.
func QueryOne(ctx context.Context, conn *pgconn.PgConn, sql string) (string, error) {
	res := conn.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return "", res.Err
	}
	if len(res.Rows) == 0 || len(res.Rows[0]) == 0 {
		return "", fmt.Errorf("%s: no rows", sql)
	}
	return string(res.Rows[0][0]), nil
}

// CurrentLSN returns pg_current_wal_lsn().
func CurrentLSN(ctx context.Context, conn *pgconn.PgConn) (lsn.LSN, error) {
	s, err := QueryOne(ctx, conn, "SELECT pg_current_wal_lsn()")
	if err != nil {
		return 0, fmt.Errorf("read current WAL position: %w", err)
	}
	return lsn.Parse(s)
}

// CreateSlots creates a pgoutput logical slot per name.
func CreateSlots(ctx context.Context, conn *pgconn.PgConn, names []string) error {
	for _, n := range names {
		sql := "SELECT lsn FROM pg_create_logical_replication_slot('" + n + "', 'pgoutput')"
		if _, err := QueryOne(ctx, conn, sql); err != nil {
			return fmt.Errorf("create slot %s: %w", n, err)
		}
	}
	return nil
}

// DropSlots drops the named slots.
func DropSlots(ctx context.Context, conn *pgconn.PgConn, names []string) error {
	var errs []error
	for _, n := range names {
		if err := execSQL(ctx, conn, "SELECT pg_drop_replication_slot('"+n+"')"); err != nil {
			errs = append(errs, fmt.Errorf("drop slot %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// SlotConfirmed returns the confirmed_flush_lsn of slot.
func SlotConfirmed(ctx context.Context, conn *pgconn.PgConn, slot string) (lsn.LSN, error) {
	s, err := QueryOne(ctx, conn, "SELECT coalesce(confirmed_flush_lsn, '0/0') FROM pg_replication_slots WHERE slot_name = '"+slot+"'")
	if err != nil {
		return 0, fmt.Errorf("read slot %s: %w", slot, err)
	}
	return lsn.Parse(s)
}

// AvgRowBytes returns the average on-disk size of a row of table.
func AvgRowBytes(ctx context.Context, conn *pgconn.PgConn, table string) (float64, error) {
	s, err := QueryOne(ctx, conn, "SELECT coalesce(avg(pg_column_size(t.*)), 0) FROM (SELECT * FROM "+table+" LIMIT 10000) t")
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(strings.TrimSpace(s), 64)
}
