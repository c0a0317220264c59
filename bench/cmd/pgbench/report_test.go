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
		for _, c := range streamClients(nil, false) {
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

// withBaseline returns everyPhase's results with a baseline measured beside the current tree: in
// mixed it is slower (current throughput 1.10×, CPU per change 1.00×, peak RSS 0.80×: met), in
// bigtx faster (throughput 0.50×: NOT met), in the snapshot it uses more CPU (rows/s 1.00×, CPU
// 1.25×: NOT met).
func withBaseline() *results {
	r := everyPhase()
	r.base = &baseline{rev: "abc1234", commit: "abc1234def", known: map[string]bool{}}
	mixed := bench.Usage{Wall: 1100 * time.Millisecond, User: time.Second / 2, MaxRSS: 25 << 20}
	big := bench.Usage{Wall: time.Second / 2, User: time.Second / 2, MaxRSS: 20 << 20}
	r.runs = append(r.runs,
		bench.Run{Workload: "mixed", Client: r.base.streamClient(), Repeat: 1, Changes: r.changes["mixed"], Usage: mixed},
		bench.Run{Workload: "bigtx", Client: r.base.streamClient(), Repeat: 1, Changes: r.changes["bigtx"], Usage: big})
	r.snap.runs = append(r.snap.runs, bench.SnapshotRun{Client: snapBaseClient("abc1234", 1), Repeat: 1, Rows: 100,
		Usage: bench.Usage{Wall: time.Second, User: time.Second / 2 * 4 / 5, MaxRSS: 40 << 20}})
	return r
}

// targetRows returns the rows of the Targets table that compare with the baseline.
func targetRows(report string) []string {
	_, table, _ := strings.Cut(report, "\n## Targets\n")
	var out []string
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, "| no regression against ") {
			out = append(out, line)
		}
	}
	return out
}

// With -baseline, each phase compares the current tree with the baseline: its section has both
// medians and their ratios, and the Targets table one row per phase with the thresholds.
func TestReportBaseline(t *testing.T) {
	var b bytes.Buffer
	withBaseline().write(&b)
	report := b.String()
	for _, want := range []string{
		"- baseline: pgstream at abc1234 (commit abc1234def), built from a detached worktree and measured beside the current tree in the mixed, bigtx and snapshot phases; its configurations are the current template unchanged\n",
		"### pgstream file against pgstream@abc1234 file (medians)",
		"No regression: throughput ratio ≥ 0.95 and CPU-per-change ratio ≤ 1.05.",
		"| mixed | 13 / 12 | 1.10× | 38461.54 / 38461.54 | 1.00× | 20.0 / 25.0 | 0.80× |\n",
		"| bigtx | 10 / 20 | 0.50× | 50000.00 / 50000.00 | 1.00× | 20.0 / 20.0 | 1.00× |\n",
		"| pgstream@abc1234 file | 1 | 1.10 |", // the baseline is one more client of the summary table
		"### pgstream initial_only, file, workers 1 against pgstream@abc1234 initial_only, file, workers 1 (medians)",
		"No regression: rows/s ratio ≥ 0.95 and CPU-per-row ratio ≤ 1.05.",
		"| 100 / 100 | 1.00× | 0.50 / 0.40 | 1.25× | 20.0 / 40.0 | 0.50× |\n",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	want := []string{
		"| no regression against abc1234 (mixed, file sink; met when throughput ≥ 0.95× and CPU per change ≤ 1.05× the baseline's, medians) | throughput 1.10×, CPU per change 1.00×, peak RSS 0.80× | met |",
		"| no regression against abc1234 (bigtx, file sink; met when throughput ≥ 0.95× and CPU per change ≤ 1.05× the baseline's, medians) | throughput 0.50×, CPU per change 1.00×, peak RSS 1.00× | NOT met |",
		"| no regression against abc1234 (snapshot, file sink, workers 1; met when rows/s ≥ 0.95× and CPU per row ≤ 1.05× the baseline's, medians) | rows/s 1.00×, CPU per row 1.25×, peak RSS 0.50× | NOT met |",
	}
	if got := targetRows(report); !slices.Equal(got, want) {
		t.Errorf("baseline targets:\n%q\nwant\n%q", got, want)
	}
	// The other targets are unchanged, in their order, the baseline's rows among them.
	if got := targets(report); len(got) != 13 || got[2] != strings.TrimPrefix(strings.Split(want[0], " | ")[0], "| ") {
		t.Errorf("targets %q", got)
	}
}

// Without -baseline nothing mentions one; with -baseline but no figure of the baseline's, each
// phase's row says so and is not met.
func TestReportBaselineAbsent(t *testing.T) {
	var b bytes.Buffer
	everyPhase().write(&b)
	for _, absent := range []string{"no regression", "- baseline:", "pgstream@", " against "} {
		if strings.Contains(b.String(), absent) {
			t.Errorf("report without -baseline holds %q:\n%s", absent, b.String())
		}
	}

	r := everyPhase()
	r.base = &baseline{rev: "abc1234", commit: "abc1234def", known: map[string]bool{}, dropped: []string{"sinks.mode", "snapshot.max_rows_per_second"}}
	b.Reset()
	r.write(&b)
	want := []string{
		"| no regression against abc1234 (mixed, file sink; met when throughput ≥ 0.95× and CPU per change ≤ 1.05× the baseline's, medians) | no baseline figure | NOT met |",
		"| no regression against abc1234 (bigtx, file sink; met when throughput ≥ 0.95× and CPU per change ≤ 1.05× the baseline's, medians) | no baseline figure | NOT met |",
		"| no regression against abc1234 (snapshot, file sink, workers 1; met when rows/s ≥ 0.95× and CPU per row ≤ 1.05× the baseline's, medians) | no baseline figure | NOT met |",
	}
	if got := targetRows(b.String()); !slices.Equal(got, want) {
		t.Errorf("baseline targets without its figures:\n%q\nwant\n%q", got, want)
	}
	for _, s := range []string{
		"; its configurations leave out sinks.mode, snapshot.max_rows_per_second, which that revision's configs/pgstream.yaml does not name\n",
		"| mixed | no figure | | | | | |\n",
		"| no figure | | | | | |\n",
	} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, b.String())
		}
	}

	// A failed snapshot phase has no figure; a baseline that cannot snapshot is not measured.
	r = withBaseline()
	r.snap.err = errors.New("the file sink's output does not match")
	r.snap.runs = r.snap.runs[:3] // the baseline's run did not complete
	b.Reset()
	r.write(&b)
	if got := targetRows(b.String()); len(got) != 3 || !strings.HasSuffix(got[2], "| failed: no figure | NOT met |") {
		t.Errorf("failed snapshot phase, targets %q", got)
	}
	r.snap.err, r.snap.baseSkipped = nil, "abc1234 has no snapshot.mode in its configs/pgstream.yaml"
	b.Reset()
	r.write(&b)
	if got := targetRows(b.String()); len(got) != 3 || !strings.HasSuffix(got[2], "| not measured: abc1234 has no snapshot.mode in its configs/pgstream.yaml | NOT met |") {
		t.Errorf("baseline without snapshots, targets %q", got)
	}
}

// No regression means a throughput ratio of at least 0.95 and a CPU ratio of at most 1.05; a ratio
// without a baseline figure is never met.
func TestVersusThresholds(t *testing.T) {
	for _, tc := range []struct {
		v  versus
		ok bool
	}{
		{versus{throughput: 1, cpu: 1}, true},
		{versus{throughput: 0.95, cpu: 1.05}, true},
		{versus{throughput: 0.9499, cpu: 1}, false},
		{versus{throughput: 1, cpu: 1.0501}, false},
		{versus{throughput: ratio(1, 0), cpu: 1}, false},
		{versus{throughput: 1, cpu: ratio(1, 0)}, false},
	} {
		if got := tc.v.ok(); got != tc.ok {
			t.Errorf("%+v ok = %v, want %v", tc.v, got, tc.ok)
		}
	}
}

// withEndpoint returns everyPhase's results with the endpoint-on client measured beside the
// file-sink client: in mixed it costs 2% of the throughput, 4% more CPU per change and 10% more
// peak RSS (met); in bigtx 10% more CPU (NOT met), and its check run did not complete.
func withEndpoint() *results {
	r := everyPhase()
	r.endpoint = endpointResults{}
	mixed := bench.Usage{Wall: 1020 * time.Millisecond, User: 520 * time.Millisecond, MaxRSS: 22 << 20}
	big := bench.Usage{Wall: time.Second, User: 550 * time.Millisecond, MaxRSS: 20 << 20}
	r.runs = append(r.runs,
		bench.Run{Workload: "mixed", Client: clientEndpoint, Repeat: 1, Changes: r.changes["mixed"], Usage: mixed},
		bench.Run{Workload: "bigtx", Client: clientEndpoint, Repeat: 1, Changes: r.changes["bigtx"], Usage: big})
	*r.endpoint.of("mixed") = endpointFigures{scrapes: []int{3}, checked: true, checkScrapes: 4, checkEvents: 13}
	*r.endpoint.of("bigtx") = endpointFigures{scrapes: []int{2}}
	return r
}

// endpointRows returns the rows of the Targets table for the metrics endpoint's cost.
func endpointRows(report string) []string {
	_, table, _ := strings.Cut(report, "\n## Targets\n")
	var out []string
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, "| metrics endpoint costs ") {
			out = append(out, line)
		}
	}
	return out
}

// With -endpoint, the streaming section compares the endpoint-on client with the file-sink client
// and lists what the scrapes counted, and the Targets table has a cost row per workload.
func TestReportEndpoint(t *testing.T) {
	var b bytes.Buffer
	withEndpoint().write(&b)
	report := b.String()
	for _, want := range []string{
		"### pgstream file, endpoint on against pgstream file (medians)",
		"scraped (GET /metrics) every 1s by the benchmark while it runs",
		"The endpoint costs less than 5%: throughput ratio ≥ 0.95 and CPU-per-change ratio ≤ 1.05.",
		"| workload | changes/s: on / off | ratio | client CPU s / M changes: on / off | ratio | peak RSS MiB: on / off | ratio |\n",
		"| mixed | 13 / 13 | 0.98× | 40000.00 / 38461.54 | 1.04× | 22.0 / 20.0 | 1.10× |\n",
		"| bigtx | 10 / 10 | 1.00× | 55000.00 / 50000.00 | 1.10× | 20.0 / 20.0 | 1.00× |\n",
		"| mixed | 3 | 4 | 13 | 13 |\n",
		"| bigtx | 2 | not run | – | 10 |\n",
		"| pgstream file, endpoint on | 1 | 1.02 |",         // one more client of the summary table
		"| mixed | pgstream file, endpoint on | 1 | 1.02 |", // and of every run
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	want := []string{
		"| metrics endpoint costs < 5% throughput/CPU (mixed, file sink scraped every 1s; met when throughput ≥ 0.95× and CPU per change ≤ 1.05× endpoint off, medians) | throughput 0.98×, CPU per change 1.04×, peak RSS 1.10× | met |",
		"| metrics endpoint costs < 5% throughput/CPU (bigtx, file sink scraped every 1s; met when throughput ≥ 0.95× and CPU per change ≤ 1.05× endpoint off, medians) | throughput 1.00×, CPU per change 1.10×, peak RSS 1.00× | NOT met |",
	}
	if got := endpointRows(report); !slices.Equal(got, want) {
		t.Errorf("endpoint targets:\n%q\nwant\n%q", got, want)
	}
	// Each workload's row follows its file-sink rows; the other targets are unchanged.
	rowOf := func(line string) string { return strings.TrimPrefix(strings.Split(line, " | ")[0], "| ") }
	if got := targets(report); len(got) != 12 || got[2] != rowOf(want[0]) || got[5] != rowOf(want[1]) {
		t.Errorf("targets %q", got)
	}

	// With -baseline too, both comparisons are made, the baseline's first.
	r := withEndpoint()
	base := withBaseline()
	r.base, r.runs = base.base, append(r.runs, base.runs[len(base.runs)-2:]...)
	b.Reset()
	r.write(&b)
	report = b.String()
	if i, j := strings.Index(report, "### pgstream file against pgstream@abc1234 file"), strings.Index(report, "### pgstream file, endpoint on against pgstream file"); i < 0 || j < i {
		t.Errorf("versus sections at %d and %d:\n%s", i, j, report)
	}
	got := targets(report)
	if len(got) != 15 || !strings.HasPrefix(got[2], "no regression against abc1234 (mixed") || !strings.HasPrefix(got[3], "metrics endpoint costs < 5% throughput/CPU (mixed") {
		t.Errorf("targets with both %q", got)
	}
}

// Without -endpoint nothing mentions the endpoint; with -endpoint but no endpoint-on figure, each
// workload's row says so and is not met.
func TestReportEndpointAbsent(t *testing.T) {
	var b bytes.Buffer
	everyPhase().write(&b)
	for _, absent := range []string{"endpoint", "scrape"} {
		if strings.Contains(b.String(), absent) {
			t.Errorf("report without -endpoint holds %q:\n%s", absent, b.String())
		}
	}

	r := everyPhase()
	r.endpoint = endpointResults{}
	b.Reset()
	r.write(&b)
	want := []string{
		"| metrics endpoint costs < 5% throughput/CPU (mixed, file sink scraped every 1s; met when throughput ≥ 0.95× and CPU per change ≤ 1.05× endpoint off, medians) | no endpoint-on figure | NOT met |",
		"| metrics endpoint costs < 5% throughput/CPU (bigtx, file sink scraped every 1s; met when throughput ≥ 0.95× and CPU per change ≤ 1.05× endpoint off, medians) | no endpoint-on figure | NOT met |",
	}
	if got := endpointRows(b.String()); !slices.Equal(got, want) {
		t.Errorf("endpoint targets without its figures:\n%q\nwant\n%q", got, want)
	}
	for _, s := range []string{"| mixed | no figure | | | | | |\n", "| mixed |  | not run | – | 13 |\n"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, b.String())
		}
	}
}
