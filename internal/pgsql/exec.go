package pgsql

import (
	"context"

	"github.com/jackc/pgx/v5/pgconn"
)

// Exec runs one or more simple-protocol statements that return no rows (BEGIN, COMMIT, ROLLBACK,
// SET …).
func Exec(ctx context.Context, pg *pgconn.PgConn, sql string) error {
	_, err := pg.Exec(ctx, sql).ReadAll()
	return err
}

// Query runs sql and returns every row of its result as text, NULL as "". With args, sql is one
// statement and args are its text parameters ($1, $2, …); without, sql may be several
// simple-protocol statements (the only protocol a walsender accepts) and the rows are those of
// the last result, nil when there is none.
func Query(ctx context.Context, pg *pgconn.PgConn, sql string, args ...string) ([][]string, error) {
	res, err := last(ctx, pg, sql, args)
	if err != nil || res == nil {
		return nil, err
	}
	out := make([][]string, len(res.Rows))
	for i, row := range res.Rows {
		out[i] = make([]string, len(row))
		for j, v := range row {
			out[i][j] = string(v)
		}
	}
	return out, nil
}

// Value runs sql as Query does and returns the first column of the first row of the last result:
// "" when there is none, or for NULL.
func Value(ctx context.Context, pg *pgconn.PgConn, sql string, args ...string) (string, error) {
	res, err := last(ctx, pg, sql, args)
	if err != nil || res == nil || len(res.Rows) == 0 || len(res.Rows[0]) == 0 {
		return "", err
	}
	return string(res.Rows[0][0]), nil
}

// last runs sql (with args as text parameters, or, without, as simple-protocol statements) and
// returns its last result, nil when there is none.
func last(ctx context.Context, pg *pgconn.PgConn, sql string, args []string) (*pgconn.Result, error) {
	if len(args) == 0 {
		rs, err := pg.Exec(ctx, sql).ReadAll()
		if err != nil || len(rs) == 0 {
			return nil, err
		}
		return rs[len(rs)-1], nil
	}
	params := make([][]byte, len(args))
	for i, a := range args {
		params[i] = []byte(a)
	}
	res := pg.ExecParams(ctx, sql, params, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	return res, nil
}

// ImportSnapshot opens a read-only REPEATABLE READ transaction that sees the database as the
// exported snapshot does (SET TRANSACTION SNAPSHOT): the one a replication slot's creation
// exported, for example.
func ImportSnapshot(ctx context.Context, pg *pgconn.PgConn, snapshot string) error {
	return Exec(ctx, pg, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT "+QuoteLiteral(snapshot))
}
