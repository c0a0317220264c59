package replication

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/internal/pgsql"
)

// The session settings and version that connections of this package share with package pgsql.

// TestServerMajor: the major version pgsql.ServerMajor reads from a connection of this package is
// the cluster's. (parseMajor's cases are pgsql's own tests.)
func TestServerMajor(t *testing.T) {
	pg := mainCluster(t)
	conn, err := NewSQLConn(ctxT(t, 30*time.Second), Config{URL: pg.URL("postgres")})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if got := pgsql.ServerMajor(conn); got != pg.Version || got < 10 {
		t.Errorf("ServerMajor = %d, cluster version %d (server_version %q)", got, pg.Version, conn.ParameterStatus("server_version"))
	}
}

// TestSessionSQLMatchesTheStartupPacket: SessionSQL turns a session with other settings into one
// whose settings are those a connection of this package starts with.
func TestSessionSQLMatchesTheStartupPacket(t *testing.T) {
	pg := mainCluster(t)
	ctx := ctxT(t, 30*time.Second)
	show := func(conn *pgconn.PgConn) map[string]string {
		t.Helper()
		got := map[string]string{}
		for _, k := range slices.Sorted(maps.Keys(pgsql.SessionParams())) {
			res := conn.ExecParams(ctx, "SELECT current_setting($1)", [][]byte{[]byte(k)}, nil, nil, nil).Read()
			if res.Err != nil || len(res.Rows) != 1 {
				t.Fatalf("current_setting(%s): %v", k, res.Err)
			}
			got[k] = string(res.Rows[0][0])
		}
		return got
	}
	started, err := NewSQLConn(ctx, Config{URL: pg.URL("postgres")})
	if err != nil {
		t.Fatal(err)
	}
	defer started.Close(ctx)
	want := show(started)

	plain, err := pgconn.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(ctx)
	// DateStyle keeps its field order (MDY) here, as it does in the startup packet.
	if _, err := plain.Exec(ctx, `SET DateStyle = SQL; SET TimeZone = 'Asia/Kolkata'; SET IntervalStyle = sql_standard;
		SET extra_float_digits = 0; SET bytea_output = escape; SET client_encoding = 'LATIN1'; SET standard_conforming_strings = off`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	if before := show(plain); maps.Equal(before, want) {
		t.Fatalf("the other settings did not take: %v", before)
	}
	if _, err := plain.Exec(ctx, pgsql.SessionSQL()).ReadAll(); err != nil {
		t.Fatalf("SessionSQL: %v\n%s", err, pgsql.SessionSQL())
	}
	if got := show(plain); !maps.Equal(got, want) {
		t.Errorf("after SessionSQL:\n got %v\nwant %v (startup packet)", got, want)
	}
}
