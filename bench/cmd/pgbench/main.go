// Command pgbench measures pgstream against pg_recvlogical on a throwaway PostgreSQL: throughput,
// client CPU and peak memory on sibling slots holding the same changes, commit-to-acknowledged
// latency at a steady rate, a CPU profile of the pipeline, and the decoder and encoder
// micro-benchmarks. It also measures an initial snapshot of a table (snapshot.mode: initial_only,
// file sink) against a plain COPY of the same table. With -baseline REV it also builds pgstream at
// that git revision and measures it beside the current tree in the same run (the mixed, bigtx and
// snapshot phases), so that a change is compared with its base. With -endpoint (the default) it
// also measures, in the mixed and bigtx phases, pgstream with its operations endpoint on and
// scraped every second, beside the same client with it off, so that what the metrics cost shows.
// It prints a Markdown report and writes it to <out>/results.md.
//
//	go run ./bench/cmd/pgbench [-rows N] [-bigtx-rows N] [-snapshot-rows N] [-repeats R] [-out DIR] [-baseline REV] [-endpoint=false]
//
// The program is laid out by phase. run builds pgstream, starts PostgreSQL and runs the phases in
// order; each phase is a method of measurer in its own file, beside the code that writes the
// phase's section of the report and its rows of the Targets table:
//
//	flags.go      the flags and their checks
//	run.go        run, measurer and what the phases share
//	baseline.go   -baseline: building pgstream at a revision, its configuration, the ratios and thresholds
//	streaming.go  phases mixed and bigtx: pgstream against pg_recvlogical on sibling slots
//	endpoint.go   -endpoint: the endpoint-on client, its scrapes and check run, its ratios and target
//	snapshot.go   phase snapshot: an initial snapshot against psql COPY
//	latency.go    phase latency: commit-to-acknowledged latency at a steady rate
//	profile.go    the CPU and allocation profiles of an in-process run on the mixed workload
//	micro.go      phase micro: the walparse and events go test benchmarks
//	report.go     results and the Markdown report
//
// A new phase adds its name to those parseOptions accepts, a file with its method and result, a
// field of results, a call in run, calls in results.write, and its section and Targets rows to
// report_test.go. What the phases are made of (workloads, child processes, summaries and tables) is
// in package bench.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(realMain())
}

func realMain() int {
	o, err := parseOptions()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgbench:", err)
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
