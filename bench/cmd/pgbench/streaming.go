package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/pgstream/pgstream/bench"
	"github.com/pgstream/pgstream/lsn"
)

// The measured clients of the streaming phases.
const (
	clientRecv   = "pg_recvlogical"
	clientFile   = "pgstream file"
	clientStdout = "pgstream stdout>/dev/null"
)

// streamClients returns the clients of the streaming phases: pg_recvlogical, pgstream with the
// file sink and with the stdout sink, and with -baseline the baseline with the file sink.
func streamClients(base *baseline) []string {
	c := []string{clientRecv, clientFile, clientStdout}
	if base != nil {
		c = append(c, base.streamClient())
	}
	return c
}

// slotTags name the clients of streamClients, in the same order, in slot names.
var slotTags = []string{"recv", "file", "stdout", "base"}

// runOrder returns the indexes of streamClients in the order repeat (from 0) runs them. The
// baseline runs next to the current file-sink client, after it in the first repeat, before it in
// the second, and so on, so that neither always follows the other.
func runOrder(clients, repeat int) []int {
	switch {
	case clients < 4:
		return []int{0, 1, 2}
	case repeat%2 == 0:
		return []int{0, 1, 3, 2}
	default:
		return []int{0, 3, 1, 2}
	}
}

func (m *measurer) mixed(ctx context.Context, res *results) error {
	o, conn := m.o, m.conn
	mixedSlots := slotNames("mixed", o.repeats, len(streamClients(m.base)))
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
	bigSlots := slotNames("bigtx", o.repeats, len(streamClients(m.base)))
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

// slotNames returns, per repeat, one slot name for each of the first clients of streamClients.
func slotNames(workload string, repeats, clients int) [][]string {
	out := make([][]string, repeats)
	for r := range out {
		for _, c := range slotTags[:clients] {
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

// measure runs every client on its own slot, alternating (runOrder), repeat after repeat, each
// draining its slot up to end. Each slot is dropped after its run.
func (m *measurer) measure(ctx context.Context, workload string, slots [][]string, end lsn.LSN, changes int64) ([]bench.Run, error) {
	var runs []bench.Run
	clients := streamClients(m.base)
	for r, names := range slots {
		for _, i := range runOrder(len(clients), r) {
			client := clients[i]
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
	base := m.base != nil && client == m.base.streamClient()
	switch {
	case client == clientRecv:
		cmd := exec.CommandContext(ctx, m.recv, "-d", m.url, "-S", slot, "--start", "-P", "pgoutput",
			"-o", "proto_version=1", "-o", "publication_names="+publication, "--endpos="+end.String(),
			"-f", "/dev/null", "--no-loop")
		return bench.RunChild(cmd, m.o.timeout)
	case client == clientFile, client == clientStdout, base:
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
		cfg := streamConfig(m.url, slot, filepath.Join(dir, "checkpoint"), sink, m.pipelineLines())
		cmd, err := m.pgstreamCmd(ctx, base, dir, cfg, "--endpos", end.String())
		if err != nil {
			return bench.Usage{}, err
		}
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
		if client != clientStdout {
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

// streamConfig is the configuration template of the streaming clients: the slot exists, no
// snapshot, sink and pipeline are lines of their sections.
func streamConfig(url, slot, checkpoint, sink, pipeline string) string {
	return fmt.Sprintf(`source:
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
`, url, slot, publication, checkpoint, sink, pipeline)
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

// writeStreaming writes the throughput, client CPU and peak RSS section of the report.
func (r *results) writeStreaming(w io.Writer) {
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
		if r.base != nil {
			r.writeStreamingVersus(w, mixed, big)
		}
		fmt.Fprintln(w, "\n<details><summary>every run</summary>")
		bench.WriteRunsTable(w, r.runs)
		fmt.Fprintln(w, "\n</details>")
	}
}

// writeStreamingTargets writes the throughput, CPU and peak RSS rows of the Targets table.
func (r *results) writeStreamingTargets(w io.Writer) {
	mixed, big := r.summaries("mixed"), r.summaries("bigtx")
	for _, wl := range []struct {
		name string
		sums []bench.ClientSummary
	}{{"mixed", mixed}, {"bigtx", big}} {
		if f, ok := find(wl.sums, clientFile); ok {
			fmt.Fprintf(w, "| file sink throughput ≥ 1.0× pg_recvlogical (%s) | %.2f× | %s |\n", wl.name, f.Throughput, verdict(f.Throughput >= 1))
			fmt.Fprintf(w, "| client CPU per change ≤ pg_recvlogical's (%s, file sink) | %.2f× | %s |\n", wl.name, f.CPU, verdict(f.CPU <= 1))
			if r.base != nil {
				target := noRegression(r.base.rev, wl.name+", file sink", "throughput", "change")
				if v, _, _, ok := r.streamingVersus(wl.sums); ok {
					fmt.Fprintf(w, "| %s | throughput %.2f×, CPU per change %.2f×, peak RSS %.2f× | %s |\n", target, v.throughput, v.cpu, v.rss, verdict(v.ok()))
				} else {
					fmt.Fprintf(w, "| %s | no baseline figure | NOT met |\n", target)
				}
			}
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
}

// streamingVersus compares the current file-sink client's medians on a workload with the
// baseline's; ok is false without -baseline or when either has no runs.
func (r *results) streamingVersus(sums []bench.ClientSummary) (v versus, cur, base bench.ClientSummary, ok bool) {
	if r.base == nil {
		return versus{}, cur, base, false
	}
	cur, okCur := find(sums, clientFile)
	base, okBase := find(sums, r.base.streamClient())
	if !okCur || !okBase {
		return versus{}, cur, base, false
	}
	v = versus{throughput: ratio(cur.ChangesPerSec, base.ChangesPerSec), cpu: ratio(cur.CPUPerMillion, base.CPUPerMillion),
		rss: ratio(cur.MaxRSSMiB, base.MaxRSSMiB)}
	return v, cur, base, true
}

// writeStreamingVersus writes the current file-sink client's medians beside the baseline's.
func (r *results) writeStreamingVersus(w io.Writer, mixed, big []bench.ClientSummary) {
	fmt.Fprintf(w, "\n### %s against %s (medians)\n\n", clientFile, r.base.streamClient())
	fmt.Fprintf(w, "The current tree and the baseline %s, both with the file sink and the same configuration, each on its own sibling slot of the same changes; "+
		"ratios are current / baseline. No regression: throughput ratio ≥ %.2f and CPU-per-change ratio ≤ %.2f.\n\n", r.base.rev, minThroughputRatio, maxCPURatio)
	fmt.Fprintln(w, "| workload | changes/s: current / baseline | ratio | client CPU s / M changes: current / baseline | ratio | peak RSS MiB: current / baseline | ratio |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, wl := range []struct {
		name string
		sums []bench.ClientSummary
	}{{"mixed", mixed}, {"bigtx", big}} {
		if len(wl.sums) == 0 {
			continue
		}
		v, cur, base, ok := r.streamingVersus(wl.sums)
		if !ok {
			fmt.Fprintf(w, "| %s | no figure | | | | | |\n", wl.name)
			continue
		}
		fmt.Fprintf(w, "| %s | %.0f / %.0f | %.2f× | %.2f / %.2f | %.2f× | %.1f / %.1f | %.2f× |\n", wl.name,
			cur.ChangesPerSec, base.ChangesPerSec, v.throughput, cur.CPUPerMillion, base.CPUPerMillion, v.cpu, cur.MaxRSSMiB, base.MaxRSSMiB, v.rss)
	}
}
