// Command pgbench measures pgstream against pg_recvlogical on a throwaway PostgreSQL: throughput,
// client CPU and peak memory on sibling slots holding the same changes, commit-to-acknowledged
// latency at a steady rate, a CPU profile of the pipeline, and the decoder and encoder
// micro-benchmarks. It also measures an initial snapshot of a table (snapshot.mode: initial_only,
// file sink) against a plain COPY of the same table. It prints a Markdown report and writes it to
// <out>/results.md.
//
//	go run ./bench/cmd/pgbench [-rows N] [-bigtx-rows N] [-snapshot-rows N] [-repeats R] [-out DIR]
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/pgstream/pgstream/bench"
	"github.com/pgstream/pgstream/internal/lsn"
	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/sinks/file"
)

const publication = "bench"

// snapPublication publishes bench.SnapshotTable alone.
const snapPublication = "bench_snapshot"

// The measured clients, in the order each repeat runs them.
const (
	clientRecv   = "pg_recvlogical"
	clientFile   = "pgstream file"
	clientStdout = "pgstream stdout>/dev/null"
)

var clients = []string{clientRecv, clientFile, clientStdout}

// The clients of the snapshot figure. clientPsql, a child process like pgstream, is the baseline.
const (
	clientPsql   = `COPY via psql \copy → /dev/null`
	clientCopyGo = "COPY via pgconn → io.Discard"
)

func snapClient(workers int) string {
	return fmt.Sprintf("pgstream initial_only, file, workers %d", workers)
}

type options struct {
	sizes      bench.Sizes
	repeats    int
	rate       int
	latencyDur time.Duration
	latConns   int
	out        string
	workdir    string
	goTool     string
	phases     map[string]bool
	profile    bool
	ckInterval time.Duration
	timeout    time.Duration
	env        listFlag // extra environment of the pgstream child processes
	snapRows   int
	snapWork   []int    // snapshot.workers of the measured snapshot runs
	pipeline   listFlag // extra key: value lines of the pgstream pipeline section
}

// listFlag collects the values of a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	os.Exit(realMain())
}

func realMain() int {
	var o options
	flag.IntVar(&o.sizes.Rows, "rows", 1_000_000, "rows inserted by the mixed workload (updates and deletes are 20% and 10% of it)")
	flag.IntVar(&o.sizes.BigTxRows, "bigtx-rows", 1_000_000, "rows of the single-transaction workload")
	flag.IntVar(&o.repeats, "repeats", 3, "runs of each client per workload (medians are reported)")
	flag.IntVar(&o.rate, "rate", 2000, "single-row transactions per second of the latency run")
	flag.DurationVar(&o.latencyDur, "latency-duration", 10*time.Second, "length of the latency run")
	flag.IntVar(&o.latConns, "latency-conns", 4, "connections the latency load is spread over")
	flag.StringVar(&o.out, "out", "bench/out", "directory for results.md, the CPU profile and its pprof -top")
	flag.StringVar(&o.workdir, "workdir", "", "scratch directory for the binary and the sinks' output (default: a new temporary directory)")
	flag.StringVar(&o.goTool, "go", "go", "the go command, for building pgstream and running the micro-benchmarks")
	phases := flag.String("phases", "mixed,bigtx,snapshot,latency,micro", "comma-separated phases to run: mixed, bigtx, snapshot, latency, micro (the walparse and events go test benchmarks)")
	flag.DurationVar(&o.ckInterval, "latency-checkpoint-interval", 0, "pipeline checkpoint_interval of the latency run (0: pgstream's default)")
	flag.BoolVar(&o.profile, "profile", true, "profile an in-process pipeline run on the mixed workload")
	flag.DurationVar(&o.timeout, "run-timeout", 10*time.Minute, "a measured client still running after this is killed and the benchmark fails")
	flag.Var(&o.env, "env", "KEY=VALUE added to the environment of pgstream runs (repeatable), e.g. GOMEMLIMIT=48MiB")
	flag.IntVar(&o.snapRows, "snapshot-rows", 2_000_000, "rows of the snapshot table (0 skips the snapshot phase)")
	snapWorkers := flag.String("snapshot-workers", "2,1", "comma-separated snapshot.workers values, one measured pgstream snapshot run each per repeat")
	flag.Var(&o.pipeline, "pipeline", "key=value added to the pipeline section of pgstream's configuration (repeatable), e.g. max_in_flight_bytes=8388608")
	flag.Parse()
	o.phases = map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "mixed", "bigtx", "snapshot", "latency", "micro":
			o.phases[p] = true
		default:
			fmt.Fprintf(os.Stderr, "pgbench: unknown phase %q: use mixed, bigtx, snapshot, latency, micro\n", p)
			return 2
		}
	}
	if o.snapRows < 0 {
		fmt.Fprintln(os.Stderr, "pgbench: -snapshot-rows must not be negative")
		return 2
	}
	if o.snapRows == 0 {
		delete(o.phases, "snapshot")
	}
	for _, w := range strings.Split(*snapWorkers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "pgbench: -snapshot-workers %q: want positive numbers separated by commas\n", *snapWorkers)
			return 2
		}
		o.snapWork = append(o.snapWork, n)
	}
	for _, kv := range append(append([]string(nil), o.env...), o.pipeline...) {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			fmt.Fprintf(os.Stderr, "pgbench: %q: want key=value\n", kv)
			return 2
		}
	}
	if err := o.sizes.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "pgbench:", err)
		return 2
	}
	if o.repeats < 1 || o.rate < 1 || o.latConns < 1 || o.latencyDur <= 0 {
		fmt.Fprintln(os.Stderr, "pgbench: -repeats, -rate, -latency-conns and -latency-duration must be positive")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "pgbench:", err)
		return 1
	}
	return 0
}

// logf reports progress on stderr; the report goes to stdout.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (o options) has(phase string) bool { return o.phases[phase] }

type results struct {
	cmdline    string
	started    time.Time
	machine    bench.Machine
	recvVer    string
	rowBytes   float64
	sizes      bench.Sizes
	repeats    int
	runs       []bench.Run
	workloadT  map[string]time.Duration
	changes    map[string]int64
	profile    profileResult
	latency    latencyResult
	fsync      bench.LatencySummary
	micro      []string
	env        []string
	pipeline   []string
	loadavg    map[string]string // 1, 5 and 15 minute load averages when each phase started
	microAlloc map[string]float64
	snap       snapResult
}

type snapResult struct {
	rows     int
	workers  []int
	rowBytes float64
	tableMiB float64
	setup    time.Duration
	runs     []bench.SnapshotRun
	outMiB   float64 // size of the file sink's output of the last pgstream run
	problems []string
	nProblem int
	err      error // the phase failed: no figure
}

type profileResult struct {
	wall   time.Duration
	top    string
	allocs string
	path   string
}

type latencyResult struct {
	load   bench.LoadResult
	sum    bench.LatencySummary
	done   bool
	start  time.Time
	writes []bench.WriteLatency
}

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

	slots := 3*o.repeats + 4
	logf("starting PostgreSQL")
	cl, err := pgtest.Start(pgtest.Options{Settings: map[string]string{
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
	m := &measurer{o: o, bin: bin, recv: recv, url: url, work: work, conn: conn}

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

func (m *measurer) mixed(ctx context.Context, res *results) error {
	o, conn := m.o, m.conn
	mixedSlots := slotNames("mixed", o.repeats)
	profSlot := "mixed_profile"
	if err := bench.CreateSlots(ctx, conn, append(flatten(mixedSlots), profSlot)); err != nil {
		return err
	}
	logf("mixed workload: %d inserts, %d updates, %d deletes", o.sizes.Rows, o.sizes.Updates, o.sizes.Deletes)
	t := time.Now()
	if err := bench.RunMixed(ctx, conn, o.sizes); err != nil {
		return err
	}
	res.workloadT["mixed"] = time.Since(t)
	end, err := bench.CurrentLSN(ctx, conn)
	if err != nil {
		return err
	}
	res.changes["mixed"] = o.sizes.MixedChanges()
	if res.rowBytes, err = bench.AvgRowBytes(ctx, conn, bench.MixedTable); err != nil {
		return err
	}
	res.loadavg["mixed"] = loadavg()
	runs, err := m.measure(ctx, "mixed", mixedSlots, end, o.sizes.MixedChanges())
	res.runs = append(res.runs, runs...)
	if err != nil {
		return err
	}
	if o.profile {
		if res.profile, err = m.profileRun(ctx, profSlot, end, o.out); err != nil {
			return err
		}
	}
	return bench.DropSlots(ctx, conn, []string{profSlot})
}

func (m *measurer) bigTx(ctx context.Context, res *results) error {
	o, conn := m.o, m.conn
	bigSlots := slotNames("bigtx", o.repeats)
	if err := bench.CreateSlots(ctx, conn, flatten(bigSlots)); err != nil {
		return err
	}
	logf("bigtx workload: one transaction of %d inserts", o.sizes.BigTxRows)
	t := time.Now()
	if err := bench.RunBigTx(ctx, conn, o.sizes.BigTxRows); err != nil {
		return err
	}
	res.workloadT["bigtx"] = time.Since(t)
	end, err := bench.CurrentLSN(ctx, conn)
	if err != nil {
		return err
	}
	res.changes["bigtx"] = int64(o.sizes.BigTxRows)
	res.loadavg["bigtx"] = loadavg()
	runs, err := m.measure(ctx, "bigtx", bigSlots, end, int64(o.sizes.BigTxRows))
	res.runs = append(res.runs, runs...)
	return err
}

// snapshot creates the snapshot table, then, repeat after repeat, copies it out with COPY (in this
// process and with psql) and snapshots it with pgstream for each -snapshot-workers value, each on
// a fresh slot and checkpoint. A pgstream run whose output is not exactly one read per row fails the
// phase.
func (m *measurer) snapshot(ctx context.Context, sr *snapResult) error {
	o, conn := m.o, m.conn
	sr.rows, sr.workers = o.snapRows, o.snapWork
	logf("snapshot table: %d rows", o.snapRows)
	t := time.Now()
	if err := bench.SetupSnapshot(ctx, conn, o.snapRows, snapPublication); err != nil {
		return err
	}
	sr.setup = time.Since(t)
	var err error
	if sr.rowBytes, err = bench.AvgRowBytes(ctx, conn, bench.SnapshotTable); err != nil {
		return err
	}
	size, err := bench.QueryOne(ctx, conn, "SELECT pg_table_size('"+bench.SnapshotTable+"')")
	if err != nil {
		return err
	}
	if b, err := strconv.ParseFloat(size, 64); err == nil {
		sr.tableMiB = b / (1 << 20)
	}
	// One unmeasured read, so that the first measured client does not pay for a cold cache alone.
	if _, err := bench.CopyOut(ctx, m.url, bench.SnapshotTable); err != nil {
		return err
	}
	psql := filepath.Join(filepath.Dir(m.recv), "psql")
	for r := 1; r <= o.repeats; r++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, psql, "-X", "-v", "ON_ERROR_STOP=1", "-d", m.url,
			"-c", `\copy (SELECT * FROM `+bench.SnapshotTable+`) TO '/dev/null'`)
		cmd.Stdout = &out
		u, err := bench.RunChild(cmd, o.timeout)
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(out.String()); got != fmt.Sprintf("COPY %d", o.snapRows) {
			return fmt.Errorf("psql \\copy printed %q, want COPY %d", got, o.snapRows)
		}
		m.addSnapRun(sr, bench.SnapshotRun{Client: clientPsql, Repeat: r, Rows: int64(o.snapRows), Usage: u})

		c, err := bench.CopyOut(ctx, m.url, bench.SnapshotTable)
		if err != nil {
			return err
		}
		if c.Rows != int64(o.snapRows) {
			return fmt.Errorf("COPY returned %d rows, the table has %d", c.Rows, o.snapRows)
		}
		m.addSnapRun(sr, bench.SnapshotRun{Client: clientCopyGo, Repeat: r, Rows: c.Rows, InProcess: true,
			Usage: bench.Usage{Wall: c.Wall, User: c.User, System: c.System}})

		for _, w := range o.snapWork {
			u, err := m.snapshotRun(ctx, sr, w, r)
			if err != nil {
				return fmt.Errorf("%s, repeat %d: %w", snapClient(w), r, err)
			}
			m.addSnapRun(sr, bench.SnapshotRun{Client: snapClient(w), Repeat: r, Rows: int64(o.snapRows), Usage: u})
		}
	}
	return nil
}

func (m *measurer) addSnapRun(sr *snapResult, r bench.SnapshotRun) {
	sr.runs = append(sr.runs, r)
	rss := "-"
	if !r.InProcess {
		rss = fmt.Sprintf("%.1f MiB", float64(r.Usage.MaxRSS)/(1<<20))
	}
	logf("snapshot %-40s repeat %d: %6.2f s, %8.0f rows/s, cpu %6.2f s, rss %s", r.Client, r.Repeat,
		r.Usage.Wall.Seconds(), float64(r.Rows)/r.Usage.Wall.Seconds(), r.Usage.CPU().Seconds(), rss)
}

// snapshotRun runs `pgstream run` with snapshot.mode initial_only on a new slot and checkpoint, checks
// the file sink's output, collects the warnings and errors of its log, and drops the slot.
func (m *measurer) snapshotRun(ctx context.Context, sr *snapResult, workers, repeat int) (bench.Usage, error) {
	slot := fmt.Sprintf("snapshot_w%d_%d", workers, repeat)
	dir, err := os.MkdirTemp(m.work, slot+"-")
	if err != nil {
		return bench.Usage{}, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "out.jsonl")
	cfg := fmt.Sprintf(`source:
  url: %s
  slot: %s
  publication: %s
  create_slot: true
  create_publication: false
checkpoint:
  path: %s
sinks:
  - type: file
    path: %s
pipeline:
  stats_interval: -1s
%ssnapshot:
  mode: initial_only
  workers: %d
log:
  level: info
  format: json
`, m.url, slot, snapPublication, filepath.Join(dir, "checkpoint"), out, m.pipelineLines(), workers)
	cfgPath := filepath.Join(dir, "pgstream.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return bench.Usage{}, err
	}
	logPath := filepath.Join(dir, "pgstream.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return bench.Usage{}, err
	}
	defer logFile.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return bench.Usage{}, err
	}
	defer devnull.Close()
	cmd := exec.CommandContext(ctx, m.bin, "run", "--config", cfgPath)
	cmd.Env = append(os.Environ(), m.o.env...)
	cmd.Stdout, cmd.Stderr = devnull, logFile
	u, runErr := bench.RunChild(cmd, m.o.timeout)
	problems, n, lerr := bench.LogProblems(logPath, 10)
	for _, p := range problems {
		sr.problems = append(sr.problems, fmt.Sprintf("workers %d, repeat %d: %s", workers, repeat, p))
	}
	sr.nProblem += n
	dropErr := dropSlotWhenInactive(ctx, m.conn, slot)
	if runErr != nil {
		return u, fmt.Errorf("%w; log: %s", runErr, logTail(logPath))
	}
	if lerr != nil {
		return u, lerr
	}
	if _, err := bench.CheckSnapshotOutput(out, m.o.snapRows); err != nil {
		return u, fmt.Errorf("%w; log: %s", err, logTail(logPath))
	}
	if fi, err := os.Stat(out); err == nil {
		sr.outMiB = float64(fi.Size()) / (1 << 20)
	}
	return u, dropErr
}

// dropSlotWhenInactive drops slot, waiting up to 10 s for the walsender of a client that just
// exited to release it. A slot that does not exist is not an error: the run may have failed
// before creating it.
func dropSlotWhenInactive(ctx context.Context, conn *pgconn.PgConn, slot string) error {
	err := waitFor(ctx, 10*time.Second, func() (bool, error) {
		s, err := bench.QueryOne(ctx, conn, "SELECT count(*) FILTER (WHERE active) || '/' || count(*) FROM pg_replication_slots WHERE slot_name = '"+slot+"'")
		return s == "0/1" || s == "0/0", err
	})
	if err != nil {
		return fmt.Errorf("wait for slot %s to be released: %w", slot, err)
	}
	if s, err := bench.QueryOne(ctx, conn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '"+slot+"'"); err != nil || s == "0" {
		return err
	}
	return bench.DropSlots(ctx, conn, []string{slot})
}

// logTail returns the last 2 KiB of the file at path.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(bytes.TrimSpace(b[max(0, len(b)-2048):]))
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

// slotNames returns, per repeat, one slot name per client.
func slotNames(workload string, repeats int) [][]string {
	out := make([][]string, repeats)
	for r := range out {
		for _, c := range []string{"recv", "file", "stdout"} {
			out[r] = append(out[r], fmt.Sprintf("%s_%s_%d", workload, c, r+1))
		}
	}
	return out
}

func flatten(s [][]string) []string {
	var out []string
	for _, x := range s {
		out = append(out, x...)
	}
	return out
}

type measurer struct {
	o    options
	bin  string
	recv string
	url  string
	work string
	conn *pgconn.PgConn
}

// measure runs every client on its own slot, alternating, repeat after repeat, each draining its
// slot up to end. Each slot is dropped after its run.
func (m *measurer) measure(ctx context.Context, workload string, slots [][]string, end lsn.LSN, changes int64) ([]bench.Run, error) {
	var runs []bench.Run
	for r, names := range slots {
		for i, client := range clients {
			if err := ctx.Err(); err != nil {
				return runs, err
			}
			u, err := m.runClient(ctx, client, names[i], end, changes)
			if err != nil {
				return runs, fmt.Errorf("%s, %s, repeat %d: %w", workload, client, r+1, err)
			}
			confirmed, err := bench.SlotConfirmed(ctx, m.conn, names[i])
			if err != nil {
				return runs, err
			}
			logf("%-6s %-26s repeat %d: %6.2f s, cpu %6.2f s, rss %6.1f MiB, slot confirmed %s (end %s)", workload, client, r+1,
				u.Wall.Seconds(), u.CPU().Seconds(), float64(u.MaxRSS)/(1<<20), confirmed, end)
			runs = append(runs, bench.Run{Workload: workload, Client: client, Repeat: r + 1, Changes: changes, Usage: u})
			if err := bench.DropSlots(ctx, m.conn, []string{names[i]}); err != nil {
				return runs, err
			}
		}
	}
	return runs, nil
}

func (m *measurer) runClient(ctx context.Context, client, slot string, end lsn.LSN, changes int64) (bench.Usage, error) {
	switch client {
	case clientRecv:
		cmd := exec.CommandContext(ctx, m.recv, "-d", m.url, "-S", slot, "--start", "-P", "pgoutput",
			"-o", "proto_version=1", "-o", "publication_names="+publication, "--endpos="+end.String(),
			"-f", "/dev/null", "--no-loop")
		return bench.RunChild(cmd, m.o.timeout)
	case clientFile, clientStdout:
		dir, err := os.MkdirTemp(m.work, slot+"-")
		if err != nil {
			return bench.Usage{}, err
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "out.jsonl")
		sink := "  - type: file\n    path: " + out + "\n"
		if client == clientStdout {
			sink = "  - type: stdout\n"
		}
		cfg := fmt.Sprintf(`source:
  url: %s
  slot: %s
  publication: %s
  create_slot: false
  create_publication: false
checkpoint:
  path: %s
sinks:
%spipeline:
  stats_interval: -1s
%ssnapshot:
  mode: never
log:
  level: warn
  format: json
`, m.url, slot, publication, filepath.Join(dir, "checkpoint"), sink, m.pipelineLines())
		cfgPath := filepath.Join(dir, "pgstream.yaml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			return bench.Usage{}, err
		}
		cmd := exec.CommandContext(ctx, m.bin, "run", "--config", cfgPath, "--endpos", end.String())
		cmd.Env = append(os.Environ(), m.o.env...)
		devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return bench.Usage{}, err
		}
		defer devnull.Close()
		cmd.Stdout = devnull
		u, err := bench.RunChild(cmd, m.o.timeout)
		if err != nil {
			return u, err
		}
		if client == clientFile {
			n, err := bench.CountLines(out)
			if err != nil {
				return u, err
			}
			if n != changes {
				return u, fmt.Errorf("the file sink holds %d events, the workload made %d changes", n, changes)
			}
		}
		return u, nil
	}
	return bench.Usage{}, fmt.Errorf("unknown client %q", client)
}

func (m *measurer) pipelineLines() string {
	var b strings.Builder
	for _, kv := range m.o.pipeline {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "  %s: %s\n", k, v)
	}
	return b.String()
}

// profileRun runs the pipeline in this process with a CPU profile, draining slot up to end, and
// returns `go tool pprof -top` of the profile.
func (m *measurer) profileRun(ctx context.Context, slot string, end lsn.LSN, outDir string) (profileResult, error) {
	dir, err := os.MkdirTemp(m.work, "profile-")
	if err != nil {
		return profileResult{}, err
	}
	defer os.RemoveAll(dir)
	path, err := filepath.Abs(filepath.Join(outDir, "cpu-mixed.pprof"))
	if err != nil {
		return profileResult{}, err
	}
	f, err := os.Create(path)
	if err != nil {
		return profileResult{}, err
	}
	defer f.Close()
	logf("mixed  in-process pipeline with a CPU profile → %s", path)
	// The allocation profile counts from process start; the run's own allocations are the difference
	// between a snapshot taken now and one taken after it.
	basePath := filepath.Join(dir, "allocs-base.pprof")
	if err := writeProfile("allocs", basePath); err != nil {
		return profileResult{}, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return profileResult{}, err
	}
	t := time.Now()
	runErr := bench.InProcess{URL: m.url, Slot: slot, Publication: publication, Dir: dir, End: end, Log: zap.NewNop()}.Run(ctx)
	wall := time.Since(t)
	pprof.StopCPUProfile()
	if runErr != nil {
		return profileResult{}, fmt.Errorf("in-process run: %w", runErr)
	}
	if err := f.Close(); err != nil {
		return profileResult{}, err
	}
	top, err := exec.CommandContext(ctx, m.o.goTool, "tool", "pprof", "-top", "-nodecount=35", path).Output()
	if err != nil {
		return profileResult{}, fmt.Errorf("go tool pprof: %w", err)
	}
	if err := os.WriteFile(filepath.Join(outDir, "pprof-top.txt"), top, 0o644); err != nil {
		return profileResult{}, err
	}
	cum, err := exec.CommandContext(ctx, m.o.goTool, "tool", "pprof", "-top", "-cum", "-nodecount=35", path).Output()
	if err != nil {
		return profileResult{}, fmt.Errorf("go tool pprof: %w", err)
	}
	if err := os.WriteFile(filepath.Join(outDir, "pprof-top-cum.txt"), cum, 0o644); err != nil {
		return profileResult{}, err
	}
	// Allocations since this process started: the pipeline run dominates them.
	apath := filepath.Join(outDir, "allocs-mixed.pprof")
	if err := writeProfile("allocs", apath); err != nil {
		return profileResult{}, err
	}
	allocs, err := exec.CommandContext(ctx, m.o.goTool, "tool", "pprof", "-sample_index=alloc_space", "-top", "-nodecount=20",
		"-diff_base", basePath, apath).Output()
	if err != nil {
		return profileResult{}, fmt.Errorf("go tool pprof: %w", err)
	}
	if err := os.WriteFile(filepath.Join(outDir, "pprof-allocs-top.txt"), allocs, 0o644); err != nil {
		return profileResult{}, err
	}
	return profileResult{wall: wall, top: string(top), allocs: string(allocs), path: path}, nil
}

// writeProfile writes the named runtime/pprof profile to path.
func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = pprof.Lookup(name).WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s profile: %w", name, err)
	}
	return nil
}

// latencyRun streams the latency table in-process while a steady load runs, and summarizes how long
// after its insert each row was acknowledged by the file sink.
func (m *measurer) latencyRun(ctx context.Context) (latencyResult, error) {
	const slot = "latency"
	if err := bench.CreateSlots(ctx, m.conn, []string{slot}); err != nil {
		return latencyResult{}, err
	}
	dir, err := os.MkdirTemp(m.work, "latency-")
	if err != nil {
		return latencyResult{}, err
	}
	defer os.RemoveAll(dir)
	r := bench.InProcess{URL: m.url, Slot: slot, Publication: publication, Dir: dir,
		Pipeline: pipeline.Config{CheckpointInterval: m.o.ckInterval}, Log: zap.NewNop()}
	fs, err := file.Open(file.Config{Path: r.OutputPath()})
	if err != nil {
		return latencyResult{}, err
	}
	ls := bench.NewLatencySink(fs, bench.LatencyTable, "t0")
	r.Sink = ls
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(pctx)
	g.Go(func() error {
		return r.Run(gctx)
	})
	var res latencyResult
	var start time.Time
	loadErr := func() error {
		// Wait until the pipeline streams, so that start-up is not counted as latency.
		if err := waitFor(gctx, 30*time.Second, func() (bool, error) {
			s, err := bench.QueryOne(gctx, m.conn, "SELECT active FROM pg_replication_slots WHERE slot_name = '"+slot+"'")
			return s == "t", err
		}); err != nil {
			return fmt.Errorf("wait for the pipeline to stream: %w", err)
		}
		time.Sleep(500 * time.Millisecond)
		start = time.Now()
		logf("latency: %d single-row transactions/s for %s over %d connections", m.o.rate, m.o.latencyDur, m.o.latConns)
		var err error
		if res.load, err = bench.DriveLoad(gctx, m.url, m.o.rate, m.o.latencyDur, m.o.latConns); err != nil {
			return err
		}
		werr := waitFor(gctx, 30*time.Second, func() (bool, error) { return ls.Count() >= res.load.Sent, nil })
		res.done = werr == nil
		if werr != nil && !errors.Is(werr, errTimeout) {
			return werr
		}
		return nil
	}()
	cancel()
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return res, fmt.Errorf("latency pipeline: %w", err)
	}
	if loadErr != nil {
		return res, loadErr
	}
	lat, perr := ls.Latencies()
	if perr != nil {
		return res, perr
	}
	res.sum = bench.Summarize(lat)
	res.writes = ls.Writes()
	res.start = start
	logf("latency: %d of %d acknowledged, p50 %s, p99 %s, max %s", res.sum.N, res.load.Sent, res.sum.P50, res.sum.P99, res.sum.Max)
	if err := bench.DropSlots(ctx, m.conn, []string{slot}); err != nil {
		return res, err
	}
	return res, nil
}

var errTimeout = errors.New("timed out")

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

var benchLine = regexp.MustCompile(`^(Benchmark\S+)\s+\d+\s+.*?(\d+(?:\.\d+)?) allocs/op`)

// microBenchmarks runs the decoder and encoder benchmarks and returns their result lines and
// allocs/op by benchmark name.
func microBenchmarks(ctx context.Context, goTool string) ([]string, map[string]float64, error) {
	logf("micro-benchmarks: go test -bench . -benchmem -benchtime=20000x ./walparse ./internal/events")
	cmd := exec.CommandContext(ctx, goTool, "test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime=20000x",
		"./walparse", "./internal/events")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, nil, fmt.Errorf("go test -bench: %w: %s", err, out)
	}
	var lines []string
	allocs := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "pkg:") || strings.HasPrefix(l, "cpu:") {
			lines = append(lines, l)
		}
		if mm := benchLine.FindStringSubmatch(l); mm != nil {
			v, _ := strconv.ParseFloat(mm[2], 64)
			allocs[mm[1]] = v
		}
	}
	return lines, allocs, nil
}

func (r *results) summaries(workload string) []bench.ClientSummary {
	var rs []bench.Run
	for _, x := range r.runs {
		if x.Workload == workload {
			rs = append(rs, x)
		}
	}
	return bench.SummarizeRuns(rs, clientRecv)
}

func find(sums []bench.ClientSummary, client string) (bench.ClientSummary, bool) {
	for _, s := range sums {
		if s.Client == client {
			return s, true
		}
	}
	return bench.ClientSummary{}, false
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func (r *results) write(w io.Writer) {
	fmt.Fprintf(w, "# pgstream benchmark, %s\n\n", r.started.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Command: `%s`\n\n", r.cmdline)
	r.machine.Write(w)
	fmt.Fprintf(w, "- baseline: %s\n", r.recvVer)
	if len(r.env) > 0 || len(r.pipeline) > 0 {
		fmt.Fprintf(w, "- pgstream runs with environment %v and pipeline settings %v\n", r.env, r.pipeline)
	}
	for _, ph := range []string{"mixed", "bigtx", "snapshot", "latency"} {
		if la, ok := r.loadavg[ph]; ok {
			fmt.Fprintf(w, "- load average when the %s phase started: %s\n", ph, la)
		}
	}
	mixed, big := r.summaries("mixed"), r.summaries("bigtx")
	if len(mixed)+len(big) > 0 {
		fmt.Fprintf(w, "\nWorkloads: mixed = %d inserts (transactions of %d, ~%.0f bytes/row on disk), then %d updates and %d deletes (transactions of %d), generated in %.1f s; bigtx = one transaction of %d inserts, generated in %.1f s. %d repeats per client, alternating; each run drains its own sibling slot up to the LSN recorded after the workload.\n",
			r.sizes.Rows, r.sizes.InsertTx, r.rowBytes, r.sizes.Updates, r.sizes.Deletes, r.sizes.ChangeTx,
			r.workloadT["mixed"].Seconds(), r.sizes.BigTxRows, r.workloadT["bigtx"].Seconds(), r.repeats)
		fmt.Fprintln(w, "\n## Throughput, client CPU, peak RSS")
		if len(mixed) > 0 {
			bench.WriteSummaryTable(w, "mixed", r.changes["mixed"], mixed)
		}
		if len(big) > 0 {
			bench.WriteSummaryTable(w, "bigtx", r.changes["bigtx"], big)
		}
		fmt.Fprintln(w, "\n<details><summary>every run</summary>")
		bench.WriteRunsTable(w, r.runs)
		fmt.Fprintln(w, "\n</details>")
	}

	r.writeSnapshot(w)

	l := r.latency
	if l.load.Sent > 0 {
		fmt.Fprintln(w, "\n## Latency (commit to acknowledged by the file sink, in-process pipeline)")
		fmt.Fprintf(w, "\n%d single-row transactions sent in %.2f s (%.0f/s; %d started more than one interval late); %d acknowledged%s.\n\n",
			l.load.Sent, l.load.Elapsed.Seconds(), float64(l.load.Sent)/max(l.load.Elapsed.Seconds(), 1e-9), l.load.Late, l.sum.N,
			map[bool]string{true: "", false: " (NOT all within 30 s)"}[l.done])
		fmt.Fprintln(w, "| p50 | p99 | max |\n| ---: | ---: | ---: |")
		fmt.Fprintf(w, "| %s | %s | %s |\n", ms(l.sum.P50), ms(l.sum.P99), ms(l.sum.Max))
		fmt.Fprintf(w, "\nFor comparison, a 4 KiB append + fsync on the same disk (%d probes): p50 %s, p99 %s, max %s.\n",
			r.fsync.N, ms(r.fsync.P50), ms(r.fsync.P99), ms(r.fsync.Max))
		var slow []bench.WriteLatency
		for _, x := range l.writes {
			if x.Max >= 10*time.Millisecond {
				slow = append(slow, x)
			}
		}
		fmt.Fprintf(w, "\n%d sink writes acknowledged the probes; %d of them held a probe 10 ms or older", len(l.writes), len(slow))
		if len(slow) > 0 {
			fmt.Fprintln(w, " (the first 40, by acknowledgement time since the load started):\n\n| acked at s | probes | oldest ms |\n| ---: | ---: | ---: |")
			for _, x := range slow[:min(len(slow), 40)] {
				fmt.Fprintf(w, "| %.3f | %d | %.1f |\n", x.Acked.Sub(l.start).Seconds(), x.Events, float64(x.Max)/float64(time.Millisecond))
			}
		} else {
			fmt.Fprintln(w, ".")
		}
	}

	if len(r.micro) > 0 {
		fmt.Fprintln(w, "\n## Decoder and encoder (go test -bench . -benchmem -benchtime=20000x ./walparse ./internal/events)\n\n```")
		for _, s := range r.micro {
			fmt.Fprintln(w, s)
		}
		fmt.Fprintln(w, "```")
	}
	if r.profile.top != "" {
		fmt.Fprintf(w, "\n## CPU profile of the pipeline on the mixed workload (in-process, %.2f s)\n\n`go tool pprof -top %s`\n\n```\n%s```\n",
			r.profile.wall.Seconds(), r.profile.path, r.profile.top)
		fmt.Fprintf(w, "\nBytes allocated during that run (`go tool pprof -sample_index=alloc_space -top -diff_base`; the base is a snapshot taken just before it):\n\n```\n%s```\n", r.profile.allocs)
	}

	fmt.Fprintln(w, "\n## Targets")
	fmt.Fprintln(w, "\n| target | measured | verdict |\n| --- | --- | --- |")
	for _, wl := range []struct {
		name string
		sums []bench.ClientSummary
	}{{"mixed", mixed}, {"bigtx", big}} {
		if f, ok := find(wl.sums, clientFile); ok {
			fmt.Fprintf(w, "| file sink throughput ≥ 1.0× pg_recvlogical (%s) | %.2f× | %s |\n", wl.name, f.Throughput, verdict(f.Throughput >= 1))
			fmt.Fprintf(w, "| client CPU per change ≤ pg_recvlogical's (%s, file sink) | %.2f× | %s |\n", wl.name, f.CPU, verdict(f.CPU <= 1))
		}
	}
	if f, ok := find(big, clientFile); ok {
		fmt.Fprintf(w, "| peak RSS ≤ 64 MiB on the %d-row transaction (file sink, every repeat) | median %.1f MiB, worst %.1f MiB | %s |\n",
			r.sizes.BigTxRows, f.MaxRSSMiB, f.WorstRSSMiB, verdict(f.WorstRSSMiB <= 64))
		if g, ok := find(mixed, clientFile); ok {
			fmt.Fprintf(w, "| peak RSS not growing with transaction size (file sink, %d-row vs %d-row transactions; met within 25%% + 4 MiB) | %.1f vs %.1f MiB | %s |\n",
				r.sizes.BigTxRows, r.sizes.InsertTx, f.MaxRSSMiB, g.MaxRSSMiB, verdict(f.MaxRSSMiB <= g.MaxRSSMiB*1.25+4))
		}
	}
	if len(r.microAlloc) > 0 {
		worstDec, worstEnc := -1.0, -1.0
		for name, a := range r.microAlloc {
			switch {
			case strings.HasPrefix(name, "BenchmarkDecode"):
				worstDec = max(worstDec, a)
			case strings.HasPrefix(name, "BenchmarkEncode"):
				worstEnc = max(worstEnc, a)
			}
		}
		if worstDec >= 0 {
			fmt.Fprintf(w, "| walparse decode 0 allocs/op | worst %.0f allocs/op | %s |\n", worstDec, verdict(worstDec == 0))
		}
		if worstEnc >= 0 {
			fmt.Fprintf(w, "| encode ≤ 1 alloc/op | worst %.0f allocs/op | %s |\n", worstEnc, verdict(worstEnc <= 1))
		}
	}
	if sn := r.snap; sn.rows > 0 {
		sums := bench.SummarizeSnapshot(sn.runs, clientPsql)
		for _, wk := range sn.workers {
			s, ok := findSnap(sums, snapClient(wk))
			switch {
			case sn.err != nil && (!ok || s.Runs < r.repeats):
				fmt.Fprintf(w, "| snapshot rows/s ≥ 0.8× psql COPY (file sink, workers %d) | failed: no figure | NOT met |\n", wk)
			case ok:
				fmt.Fprintf(w, "| snapshot rows/s ≥ 0.8× psql COPY (file sink, workers %d) | %.2f× (%.0f vs %.0f rows/s) | %s |\n",
					wk, s.Ratio, s.RowsPerSec, s.RowsPerSec/max(s.Ratio, 1e-9), verdict(s.Ratio >= 0.8))
			}
		}
	}
	if l.load.Sent > 0 {
		rate := float64(l.load.Sent) / max(l.load.Elapsed.Seconds(), 1e-9)
		fmt.Fprintf(w, "| latency p99 < 10 ms at %.0f tx/s | %s | %s |\n", rate, ms(l.sum.P99), verdict(l.done && l.sum.N > 0 && l.sum.P99 < 10*time.Millisecond))
	}
}

func findSnap(sums []bench.SnapshotSummary, client string) (bench.SnapshotSummary, bool) {
	for _, s := range sums {
		if s.Client == client {
			return s, true
		}
	}
	return bench.SnapshotSummary{}, false
}

// writeSnapshot writes the snapshot section of the report.
func (r *results) writeSnapshot(w io.Writer) {
	sn := r.snap
	if sn.rows == 0 {
		return
	}
	fmt.Fprintln(w, "\n## Initial snapshot (snapshot.mode: initial_only, file sink) vs COPY")
	fmt.Fprintf(w, "\nTable %s: %d rows (int8 key, int4, numeric(12,2), text of 40 bytes, timestamptz, jsonb of three keys; ~%.0f bytes/row, %.1f MiB on disk), generated and vacuumed in %.1f s; publication %s for it alone. "+
		"Per repeat, in this order: `psql -c '\\copy (SELECT * FROM %s) TO /dev/null'` over one connection, a child process timed from start to exit like pgstream (the baseline); "+
		"the same COPY with pgconn's CopyTo into io.Discard in the benchmark process (the statement alone is timed; CPU is the whole benchmark process's); then `pgstream run` with snapshot.mode initial_only on a new slot and checkpoint for each snapshot.workers value "+
		"(process start to exit; each run's file must hold exactly one op \"r\" line per row, every id once). Repeats: %d; medians.\n",
		bench.SnapshotTable, sn.rows, sn.rowBytes, sn.tableMiB, sn.setup.Seconds(), snapPublication, bench.SnapshotTable, r.repeats)
	if len(sn.runs) > 0 {
		bench.WriteSnapshotTables(w, clientPsql, bench.SummarizeSnapshot(sn.runs, clientPsql), sn.runs)
	}
	if sn.outMiB > 0 {
		fmt.Fprintf(w, "\nThe file sink's output of a pgstream run: %.1f MiB of JSON lines.\n", sn.outMiB)
	}
	if sn.err != nil {
		fmt.Fprintf(w, "\n**The snapshot phase FAILED; the runs above are those that completed:**\n\n```\n%s\n```\n", sn.err)
	}
	if sn.nProblem > 0 {
		fmt.Fprintf(w, "\npgstream logged %d warnings or errors during the snapshot runs (the first ones):\n\n```\n%s\n```\n", sn.nProblem, strings.Join(sn.problems, "\n"))
	} else if len(sn.runs) > 0 {
		fmt.Fprintln(w, "\npgstream logged no warnings or errors during the snapshot runs.")
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
