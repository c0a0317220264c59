package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/pflag"

	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/replication"
)

// runSnapshotRequest asks the pgstream streaming from the configured slot to re-read tables while it
// keeps streaming. The request is a transactional logical decoding message, so it travels through
// the slot itself: it is acted on even if pgstream is down right now (on its next start), and never
// twice.
func runSnapshotRequest(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("snapshot", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	addConfigFlags(fs)
	tables := fs.StringArray("table", nil, "table to re-snapshot (schema.table; repeat for more)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(*tables) == 0 {
		fmt.Fprintln(stderr, "pgstream snapshot: name at least one table with --table schema.table")
		return 2
	}
	cfg, err := loadConfig(fs)
	if err != nil {
		fmt.Fprintf(stderr, "pgstream: %v\n", err)
		return 2
	}
	ctx, stop := signalContext()
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	lsn, active, err := requestSnapshot(ctx, cfg.Source.Config, *tables)
	if err != nil {
		fmt.Fprintf(stderr, "pgstream snapshot: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "snapshot of %v requested at %s on slot %s\n", *tables, lsn, cfg.Source.Slot)
	if active {
		fmt.Fprintln(stdout, "the running pgstream re-reads the tables while it streams; its log says \"table snapshot complete\" for each")
	} else {
		fmt.Fprintln(stdout, "no pgstream is streaming from the slot now: the request waits in the slot and is carried out when pgstream starts")
	}
	return 0
}

// requestSnapshot checks the slot and the tables and writes the request message. It returns the
// request's LSN and whether a consumer is streaming from the slot.
func requestSnapshot(ctx context.Context, src replication.Config, tables []string) (string, bool, error) {
	conn, err := replication.NewSQLConn(ctx, src)
	if err != nil {
		return "", false, err
	}
	defer conn.Close(context.Background())
	res := conn.ExecParams(ctx, "SELECT active::text FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()",
		[][]byte{[]byte(src.Slot)}, nil, nil, nil).Read()
	if res.Err != nil {
		return "", false, fmt.Errorf("read slot %s: %w", src.Slot, res.Err)
	}
	if len(res.Rows) == 0 {
		return "", false, fmt.Errorf("replication slot %s does not exist in this database: start pgstream first (it creates the slot and snapshots every published table on its first run)", src.Slot)
	}
	active := string(res.Rows[0][0]) == "true"
	found, err := snapshot.LookupTables(ctx, conn, src.Publication, tables)
	if err != nil {
		return "", false, err
	}
	names := make([]string, len(found))
	for i := range found {
		names[i] = found[i].QualifiedName()
	}
	w, err := requestTarget(ctx, conn, src)
	if err != nil {
		return "", false, err
	}
	if w != conn {
		defer w.Close(context.Background())
	}
	at, err := pipeline.WriteRequest(ctx, w, src.Slot, names)
	if err != nil {
		return "", false, err
	}
	return at.String(), active, nil
}

// requestTarget returns the connection to write the request on: conn, to the source, unless the
// source is a standby, where nothing can be written; then a new connection to source.primary_url,
// from where the request reaches the standby's slot like every other change.
func requestTarget(ctx context.Context, conn *pgconn.PgConn, src replication.Config) (*pgconn.PgConn, error) {
	rec, err := pgsql.Value(ctx, conn, "SELECT pg_is_in_recovery()::text")
	if err != nil {
		return nil, fmt.Errorf("read pg_is_in_recovery(): %w", err)
	}
	if rec != "true" {
		return conn, nil
	}
	pc, ok := src.Primary()
	if !ok {
		return nil, errors.New("source.url is a standby, where the request cannot be written: set source.primary_url to its primary, where it is written and reaches the standby's slot")
	}
	w, err := replication.NewSQLConn(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to source.primary_url: %w", err)
	}
	return w, nil
}
