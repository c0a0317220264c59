package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/bench"
	"github.com/pgstream/pgstream/internal/pgcluster"
)

// publication (FOR ALL TABLES) is what the streaming, profile and latency runs read.
const publication = "bench"

// measurer runs the phases. It holds what they share: the options, the pgstream binary, the
// baseline's (nil without -baseline), pg_recvlogical, the server's URL, the scratch directory, and
// a connection for the workloads and the slots.
type measurer struct {
	o    options
	bin  string
	base *baseline
	recv string
	url  string
	work string
	conn *pgconn.PgConn
}

// run builds pgstream, starts PostgreSQL, runs the phases o selects in order and writes the report.
func run(ctx context.Context, o options) (err error) {
	res := &results{cmdline: strings.TrimSpace("go run ./bench/cmd/pgbench " + strings.Join(os.Args[1:], " ")), started: time.Now().UTC(), machine: bench.ReadMachine(),
		sizes: o.sizes, repeats: o.repeats, env: o.env, pipeline: o.pipeline, workloadT: map[string]time.Duration{}, loadavg: map[string]string{}, changes: map[string]int64{}}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	work := o.workdir
	if work == "" {
		if work, err = os.MkdirTemp("", "pgstream-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	bin := filepath.Join(work, "pgstream")
	logf("building pgstream into %s", bin)
	if out, err := exec.CommandContext(ctx, o.goTool, "build", "-o", bin, "./cmd/pgstream").CombinedOutput(); err != nil {
		return fmt.Errorf("build pgstream (run from the repository root): %w: %s", err, out)
	}
	var base *baseline
	if o.baseline != "" {
		if base, err = buildBaseline(ctx, o.goTool, o.baseline, work); err != nil {
			return err
		}
		res.base = base
	}

	if o.endpoint {
		res.endpoint = endpointResults{}
	}

	// The measured slots of a workload, its profile or check slots, and the latency's and snapshot's.
	slots := len(streamClients(base, o.endpoint))*o.repeats + 4
	logf("starting PostgreSQL")
	cl, err := pgcluster.Start(pgcluster.Options{Settings: map[string]string{
		"max_replication_slots": strconv.Itoa(slots),
		"max_wal_senders":       strconv.Itoa(slots + 2),
		"shared_buffers":        "256MB",
		"max_wal_size":          "8GB",
		"checkpoint_timeout":    "30min",
	}})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer cl.Close()
	conn, err := cl.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if res.machine.Postgres, err = bench.QueryOne(ctx, conn, "SHOW server_version"); err != nil {
		return err
	}
	recv := filepath.Join(cl.BinDir, "pg_recvlogical")
	if out, err := exec.Command(recv, "--version").Output(); err == nil {
		res.recvVer = strings.TrimSpace(string(out))
	} else {
		return fmt.Errorf("%s: %w", recv, err)
	}
	if err := bench.Setup(ctx, conn, publication); err != nil {
		return err
	}
	url := cl.URL("postgres")
	m := &measurer{o: o, bin: bin, base: base, recv: recv, url: url, work: work, conn: conn}

	if o.has("mixed") {
		if err := m.mixed(ctx, res); err != nil {
			return err
		}
	}
	if o.has("bigtx") {
		if err := m.bigTx(ctx, res); err != nil {
			return err
		}
	}
	if o.has("snapshot") {
		res.loadavg["snapshot"] = loadavg()
		res.snap.err = m.snapshot(ctx, &res.snap)
		if res.snap.err != nil {
			logf("snapshot: %v", res.snap.err)
			if ctx.Err() != nil {
				return res.snap.err
			}
		}
	}
	if o.has("latency") {
		// What one fsync costs on the disk the file sink writes to, then latency at a steady rate.
		probe, err := bench.FsyncProbe(work, 500, 4096)
		if err != nil {
			return err
		}
		res.fsync = bench.Summarize(probe)
		res.loadavg["latency"] = loadavg()
		if res.latency, err = m.latencyRun(ctx); err != nil {
			return err
		}
	}
	if o.has("micro") {
		if res.micro, res.microAlloc, err = microBenchmarks(ctx, o.goTool); err != nil {
			return err
		}
	}

	var buf bytes.Buffer
	res.write(&buf)
	if err := os.WriteFile(filepath.Join(o.out, "results.md"), buf.Bytes(), 0o644); err != nil {
		return err
	}
	if _, err := os.Stdout.Write(buf.Bytes()); err != nil {
		return err
	}
	if res.snap.err != nil {
		return fmt.Errorf("snapshot phase: %w", res.snap.err)
	}
	return nil
}

// loadavg returns the first three fields of /proc/loadavg, or "" when it cannot be read.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// pipelineLines returns the -pipeline values as lines of the pipeline section of a pgstream
// configuration.
func (m *measurer) pipelineLines() string {
	var b strings.Builder
	for _, kv := range m.o.pipeline {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "  %s: %s\n", k, v)
	}
	return b.String()
}

// errTimeout is returned by waitFor when its condition did not hold in time.
var errTimeout = errors.New("timed out")

// waitFor polls cond every 20 ms until it holds, fails, ctx ends or d has passed (errTimeout).
func waitFor(ctx context.Context, d time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errTimeout
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// pgstreamCmd writes cfg to dir/pgstream.yaml and returns the command that runs `pgstream run` on it
// with args and the -env environment: the current build's, or with base the baseline's, whose
// configuration leaves out the keys its revision does not know.
func (m *measurer) pgstreamCmd(ctx context.Context, base bool, dir, cfg string, args ...string) (*exec.Cmd, error) {
	bin := m.bin
	if base {
		bin, cfg = m.base.bin, m.base.config(cfg)
	}
	path := filepath.Join(dir, "pgstream.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"run", "--config", path}, args...)...)
	cmd.Env = append(os.Environ(), m.o.env...)
	return cmd, nil
}
