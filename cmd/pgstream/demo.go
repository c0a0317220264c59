package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/pgstream/pgstream/internal/pgcluster"
)

const demoSchema = `
CREATE TABLE accounts (
    id         serial PRIMARY KEY,
    owner      text NOT NULL,
    balance    numeric(12,2) NOT NULL DEFAULT 0,
    tags       text[],
    meta       jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
    id         bigserial PRIMARY KEY,
    account_id int NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    amount     numeric(10,2) NOT NULL,
    status     text NOT NULL,
    placed_on  date NOT NULL DEFAULT current_date
);
INSERT INTO accounts (owner, balance, tags, meta)
SELECT 'owner-' || i, i * 10, ARRAY['seed', 'n' || i], jsonb_build_object('tier', i % 3) FROM generate_series(1, 5) i;
`

// runDemo starts a throwaway PostgreSQL, runs a small live workload against it and streams the
// changes to stdout (and to a file sink in the cluster's directory) until the duration ends or
// SIGINT arrives. It needs the PostgreSQL server binaries on the machine (scripts/setup.sh).
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	duration := fs.Duration("duration", 20*time.Second, "how long the workload runs (0: until Ctrl-C)")
	rate := fs.Int("rate", 5, "transactions per second of the workload")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, _ := newLogger("info", "auto", stderr, isTerminal(stderr))
	defer log.Sync() //nolint:errcheck

	fmt.Fprintln(stderr, "pgstream demo: starting a throwaway PostgreSQL (initdb, wal_level=logical)…")
	cluster, err := pgcluster.Start(pgcluster.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "pgstream demo: %v\n", err)
		return 1
	}
	defer cluster.Close()
	if err := cluster.Exec("postgres", demoSchema); err != nil {
		fmt.Fprintf(stderr, "pgstream demo: create demo tables: %v\n", err)
		return 1
	}
	out := filepath.Join(cluster.Dir, "changes.jsonl")
	cfg := &Config{}
	cfg.Source.URL = cluster.URL("postgres")
	cfg.Source.StatusInterval = time.Second
	cfg.Checkpoint.Keys = map[string]any{"path": filepath.Join(cluster.Dir, "pgstream.checkpoint")}
	cfg.Sinks = []map[string]any{{"type": "stdout"}, {"type": "file", "path": out}}
	cfg.Pipeline.StatsInterval = 5 * time.Second
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "pgstream demo: %v\n", err)
		return 1
	}

	ctx, stop := signalContext()
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration+2*time.Second)
		defer cancel()
	}
	fmt.Fprintf(stderr, "pgstream demo: PostgreSQL on 127.0.0.1:%d; changes go to stdout and %s; Ctrl-C stops\n", cluster.Port, out)

	var wg sync.WaitGroup
	wlCtx, wlCancel := context.WithCancel(ctx)
	if *duration > 0 {
		wlCtx, wlCancel = context.WithTimeout(ctx, *duration)
	}
	defer wlCancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := demoWorkload(wlCtx, cluster, *rate); err != nil && wlCtx.Err() == nil {
			log.Warn("demo workload stopped", zap.Error(err))
		}
	}()
	err = runStream(ctx, cfg, log, stdout, nil)
	wlCancel()
	wg.Wait()
	if err != nil {
		fmt.Fprintf(stderr, "pgstream demo: %v\n", err)
		return 1
	}
	if st, err := os.Stat(out); err == nil {
		fmt.Fprintf(stderr, "pgstream demo: done; the file sink held %d bytes of events\n", st.Size())
	}
	return 0
}

// demoWorkload inserts, updates and deletes rows at about rate transactions per second.
func demoWorkload(ctx context.Context, c *pgcluster.Cluster, rate int) error {
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if rate <= 0 {
		rate = 1
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		var sql string
		switch r := rand.IntN(10); {
		case r < 4:
			sql = fmt.Sprintf(`BEGIN;
INSERT INTO accounts (owner, balance, tags, meta) VALUES ('owner-%d', %d.%02d, ARRAY['live','x"%d'], '{"source":"demo","n":%d}');
INSERT INTO orders (account_id, amount, status) SELECT max(id), %d.50, 'new' FROM accounts;
COMMIT;`, i, rand.IntN(1000), rand.IntN(100), i, i, rand.IntN(500))
		case r < 8:
			sql = fmt.Sprintf(`UPDATE accounts SET balance = balance + %d, updated_at = now() WHERE id = (SELECT id FROM accounts ORDER BY random() LIMIT 1);
UPDATE orders SET status = 'shipped' WHERE id = (SELECT id FROM orders WHERE status = 'new' ORDER BY id LIMIT 1);`, rand.IntN(50))
		case r < 9:
			sql = `DELETE FROM accounts WHERE id = (SELECT id FROM accounts ORDER BY id LIMIT 1) AND (SELECT count(*) FROM accounts) > 5;`
		default:
			sql = fmt.Sprintf(`SELECT pg_logical_emit_message(true, 'demo', 'checkpoint %d');`, i)
		}
		if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
			return err
		}
	}
}
