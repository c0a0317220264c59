package main

import (
	"bytes"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/bench"
)

// everyPhase returns results as if every phase had run once, with one repeat.
func everyPhase() *results {
	u := bench.Usage{Wall: time.Second, User: time.Second / 2, MaxRSS: 20 << 20}
	r := &results{started: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), repeats: 1,
		sizes:     bench.Sizes{Rows: 10, InsertTx: 5, Updates: 2, Deletes: 1, ChangeTx: 1, BigTxRows: 10},
		workloadT: map[string]time.Duration{}, changes: map[string]int64{"mixed": 13, "bigtx": 10}, loadavg: map[string]string{},
		micro:      []string{"BenchmarkDecodeInsert 20000 50 ns/op 0 B/op 0 allocs/op"},
		microAlloc: map[string]float64{"BenchmarkDecodeInsert": 0, "BenchmarkEncodeInsert": 1},
		profile:    profileResult{wall: time.Second, top: "top\n", allocs: "allocs\n", path: "cpu-mixed.pprof"},
		latency:    latencyResult{load: bench.LoadResult{Sent: 100, Elapsed: time.Second}, sum: bench.LatencySummary{N: 100, P99: time.Millisecond}, done: true},
		snap:       snapResult{rows: 100, workers: []int{1}},
	}
	for _, wl := range []string{"mixed", "bigtx"} {
		for _, c := range clients {
			r.runs = append(r.runs, bench.Run{Workload: wl, Client: c, Repeat: 1, Changes: r.changes[wl], Usage: u})
		}
	}
	for _, c := range []string{clientPsql, clientCopyGo, snapClient(1)} {
		r.snap.runs = append(r.snap.runs, bench.SnapshotRun{Client: c, Repeat: 1, Rows: 100, Usage: u})
	}
	return r
}

var heading = regexp.MustCompile(`(?m)^## (.*)$`)

// targets returns the first column of the rows of the Targets table.
func targets(report string) []string {
	_, table, _ := strings.Cut(report, "\n## Targets\n")
	var out []string
	for _, line := range strings.Split(table, "\n")[3:] { // blank, header, separator
		if f := strings.Split(line, " | "); len(f) == 3 {
			out = append(out, strings.TrimPrefix(f[0], "| "))
		}
	}
	return out
}

// Each phase that ran writes its section and its rows of the Targets table, in a fixed order; a
// phase that did not run writes neither.
func TestReportSections(t *testing.T) {
	var b bytes.Buffer
	everyPhase().write(&b)
	var got []string
	for _, m := range heading.FindAllStringSubmatch(b.String(), -1) {
		got = append(got, m[1])
	}
	want := []string{
		"Throughput, client CPU, peak RSS",
		"Initial snapshot (snapshot.mode: initial_only, file sink) vs COPY",
		"Latency (commit to acknowledged by the file sink, in-process pipeline)",
		"Decoder and encoder (go test -bench . -benchmem -benchtime=20000x ./walparse ./internal/events)",
		"CPU profile of the pipeline on the mixed workload (in-process, 1.00 s)",
		"Targets",
	}
	if !slices.Equal(got, want) {
		t.Errorf("sections:\n%q\nwant\n%q", got, want)
	}
	wantTargets := []string{
		"file sink throughput ≥ 1.0× pg_recvlogical (mixed)",
		"client CPU per change ≤ pg_recvlogical's (mixed, file sink)",
		"file sink throughput ≥ 1.0× pg_recvlogical (bigtx)",
		"client CPU per change ≤ pg_recvlogical's (bigtx, file sink)",
		"peak RSS ≤ 64 MiB on the 10-row transaction (file sink, every repeat)",
		"peak RSS not growing with transaction size (file sink, 10-row vs 5-row transactions; met within 25% + 4 MiB)",
		"walparse decode 0 allocs/op",
		"encode ≤ 1 alloc/op",
		"snapshot rows/s ≥ 0.8× psql COPY (file sink, workers 1)",
		"latency p99 < 10 ms at 100 tx/s",
	}
	if got := targets(b.String()); !slices.Equal(got, wantTargets) {
		t.Errorf("targets:\n%q\nwant\n%q", got, wantTargets)
	}

	b.Reset()
	(&results{started: time.Now()}).write(&b)
	if got := heading.FindAllString(b.String(), -1); !slices.Equal(got, []string{"## Targets"}) {
		t.Errorf("no phase ran, sections %q", got)
	}
	if got := targets(b.String()); len(got) != 0 {
		t.Errorf("no phase ran, targets %q", got)
	}
}

// A failed snapshot phase still has its section, says so, and its target has no figure.
func TestReportSnapshotFailed(t *testing.T) {
	r := everyPhase()
	r.snap.err = errors.New("psql \\copy printed \"\", want COPY 100")
	r.snap.runs = r.snap.runs[:2] // pgstream's run did not complete
	var b bytes.Buffer
	r.write(&b)
	for _, want := range []string{
		"**The snapshot phase FAILED; the runs above are those that completed:**",
		"| snapshot rows/s ≥ 0.8× psql COPY (file sink, workers 1) | failed: no figure | NOT met |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
