package snapshot

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/pgstream/pgstream/internal/pgtest"
)

// One PostgreSQL cluster is shared by the tests of this package that need a server; it starts on
// first use and stops when the package's tests end. Each test works in a database of its own.
var (
	clusterOnce sync.Once
	cluster     *pgtest.Cluster
	clusterErr  error
)

func sharedCluster(tb testing.TB) *pgtest.Cluster {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs a PostgreSQL server (skipped with -short)")
	}
	clusterOnce.Do(func() { cluster, clusterErr = pgtest.Start(pgtest.Options{}) })
	if clusterErr != nil {
		tb.Fatalf("start PostgreSQL: %v", clusterErr)
	}
	return cluster
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster != nil {
		cluster.Close()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left running:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// newDB creates database db on the shared cluster and runs setup in it.
func newDB(tb testing.TB, db, setup string) *pgtest.Cluster {
	tb.Helper()
	c := sharedCluster(tb)
	if err := c.CreateDB(db); err != nil {
		tb.Fatalf("create database %s: %v", db, err)
	}
	if setup != "" {
		c.MustExec(tb, db, setup)
	}
	return c
}

// connect opens a connection to db that the test closes when it ends.
func connect(tb testing.TB, ctx context.Context, c *pgtest.Cluster, db string) *pgconn.PgConn {
	tb.Helper()
	conn, err := c.Connect(ctx, db)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func execSQL(tb testing.TB, ctx context.Context, conn *pgconn.PgConn, sql string) {
	tb.Helper()
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

// queryRows runs sql and returns every row as text; NULL is "".
func queryRows(tb testing.TB, ctx context.Context, conn *pgconn.PgConn, sql string) [][]string {
	tb.Helper()
	res := conn.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		tb.Fatalf("%s: %v", sql, res.Err)
	}
	out := make([][]string, len(res.Rows))
	for i, r := range res.Rows {
		out[i] = make([]string, len(r))
		for j, v := range r {
			out[i][j] = string(v)
		}
	}
	return out
}
