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
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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
