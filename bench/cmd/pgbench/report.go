package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pgstream/pgstream/bench"
)

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

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
