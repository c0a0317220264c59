package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// file sink and with the stdout sink, with -baseline the baseline with the file sink, and with
// -endpoint the file-sink client with its operations endpoint on.
func streamClients(base *baseline, endpoint bool) []string {
	c := []string{clientRecv, clientFile, clientStdout}
	if base != nil {
		c = append(c, base.streamClient())
	}
	if endpoint {
		c = append(c, clientEndpoint)
	}
	return c
}

func (m *measurer) streamClients() []string { return streamClients(m.base, m.o.endpoint) }

// slotTag names a client of streamClients in slot names.
func slotTag(client string) string {
	switch client {
	case clientRecv:
		return "recv"
	case clientFile:
		return "file"
	case clientStdout:
		return "stdout"
	case clientEndpoint:
		return "endpoint"
	}
	return "base"
}

// runOrder returns the indexes of clients (streamClients) in the order repeat (from 0) runs them:
// pg_recvlogical, then the current file-sink client together with the clients measured against
// it (the baseline, the endpoint-on variant), then the stdout client. That group turns by one
// place each repeat, so that none of them always follows another: with the baseline alone it runs
// after the file-sink client in the first repeat, before it in the second, and so on.
func runOrder(clients []string, repeat int) []int {
	var first, group, last []int
	for i, c := range clients {
		switch c {
		case clientRecv:
			first = append(first, i)
		case clientStdout:
			last = append(last, i)
		default:
			group = append(group, i)
		}
	}
	k := repeat % max(len(group), 1)
	order := append(first, group[k:]...)
	order = append(order, group[:k]...)
	return append(order, last...)
}

func (m *measurer) mixed(ctx context.Context, res *results) error {
	o, conn := m.o, m.conn
	mixedSlots := slotNames("mixed", o.repeats, m.streamClients())
	profSlot := "mixed_profile"
	if err := bench.CreateSlots(ctx, conn, append(flatten(mixedSlots), append(m.checkSlots("mixed"), profSlot)...)); err != nil {
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
	if err := m.measure(ctx, res, "mixed", mixedSlots, end, o.sizes.MixedChanges()); err != nil {
		return err
	}
	if err := m.checkEndpoint(ctx, res, "mixed", o.sizes.MixedChanges()); err != nil {
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
	bigSlots := slotNames("bigtx", o.repeats, m.streamClients())
	if err := bench.CreateSlots(ctx, conn, append(flatten(bigSlots), m.checkSlots("bigtx")...)); err != nil {
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
	if err := m.measure(ctx, res, "bigtx", bigSlots, end, int64(o.sizes.BigTxRows)); err != nil {
		return err
	}
	return m.checkEndpoint(ctx, res, "bigtx", int64(o.sizes.BigTxRows))
}

// slotNames returns, per repeat, one slot name for each client.
func slotNames(workload string, repeats int, clients []string) [][]string {
	out := make([][]string, repeats)
	for r := range out {
		for _, c := range clients {
			out[r] = append(out[r], fmt.Sprintf("%s_%s_%d", workload, slotTag(c), r+1))
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
// draining its slot up to end, and adds the runs to res. Each slot is dropped after its run.
func (m *measurer) measure(ctx context.Context, res *results, workload string, slots [][]string, end lsn.LSN, changes int64) error {
	clients := m.streamClients()
	for r, names := range slots {
		for _, i := range runOrder(clients, r) {
			client := clients[i]
			if err := ctx.Err(); err != nil {
				return err
			}
			u, scrapes, err := m.runClient(ctx, client, names[i], end, changes)
			if err != nil {
				return fmt.Errorf("%s, %s, repeat %d: %w", workload, client, r+1, err)
			}
			confirmed, err := bench.SlotConfirmed(ctx, m.conn, names[i])
			if err != nil {
				return err
			}
			scraped := ""
			if client == clientEndpoint {
				res.endpoint.of(workload).scrapes = append(res.endpoint.of(workload).scrapes, scrapes)
				scraped = fmt.Sprintf(", %d scrapes", scrapes)
			}
			logf("%-6s %-26s repeat %d: %6.2f s, cpu %6.2f s, rss %6.1f MiB, slot confirmed %s (end %s)%s", workload, client, r+1,
				u.Wall.Seconds(), u.CPU().Seconds(), float64(u.MaxRSS)/(1<<20), confirmed, end, scraped)
			res.runs = append(res.runs, bench.Run{Workload: workload, Client: client, Repeat: r + 1, Changes: changes, Usage: u})
			if err := bench.DropSlots(ctx, m.conn, []string{names[i]}); err != nil {
				return err
			}
		}
	}
	return nil
}

// runClient runs client on slot up to end. scrapes is the number of answered scrapes of the
// endpoint-on client's endpoint, 0 for the others.
func (m *measurer) runClient(ctx context.Context, client, slot string, end lsn.LSN, changes int64) (u bench.Usage, scrapes int, err error) {
	if client == clientRecv {
		cmd := exec.CommandContext(ctx, m.recv, "-d", m.url, "-S", slot, "--start", "-P", "pgoutput",
			"-o", "proto_version=1", "-o", "publication_names="+publication, "--endpos="+end.String(),
			"-f", "/dev/null", "--no-loop")
		u, err = bench.RunChild(cmd, m.o.timeout)
		return u, 0, err
	}
	if !slices.Contains(m.streamClients(), client) {
		return u, 0, fmt.Errorf("unknown client %q", client)
	}
	dir, err := os.MkdirTemp(m.work, slot+"-")
	if err != nil {
		return u, 0, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "out.jsonl")
	sink := fileSink(out)
	if client == clientStdout {
		sink = "  - type: stdout\n"
	}
	cfg := streamConfig(m.url, slot, filepath.Join(dir, "checkpoint"), sink, m.pipelineLines())
	var scr *scraper
	if client == clientEndpoint {
		if scr, err = newScraper(); err != nil {
			return u, 0, err
		}
		defer scr.close()
		cfg += scr.config()
	}
	base := m.base != nil && client == m.base.streamClient()
	cmd, err := m.pgstreamCmd(ctx, base, dir, cfg, "--endpos", end.String())
	if err != nil {
		return u, 0, err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return u, 0, err
	}
	defer devnull.Close()
	cmd.Stdout = devnull
	if scr != nil {
		u, scrapes, err = scr.during(cmd, m.o.timeout, changes)
	} else {
		u, err = bench.RunChild(cmd, m.o.timeout)
	}
	if err != nil {
		return u, scrapes, err
	}
	if client != clientStdout {
		n, err := bench.CountLines(out)
		if err != nil {
			return u, scrapes, err
		}
		if n != changes {
			return u, scrapes, fmt.Errorf("the file sink holds %d events, the workload made %d changes", n, changes)
		}
	}
	return u, scrapes, nil
}

// fileSink is the sinks section's lines of a file sink writing to path.
func fileSink(path string) string { return "  - type: file\n    path: " + path + "\n" }

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

// workloadSums is the client summaries of one streaming workload.
type workloadSums struct {
	name string
	sums []bench.ClientSummary
}

// streamingWorkloads returns the summaries of the mixed and bigtx workloads, in that order.
func (r *results) streamingWorkloads() []workloadSums {
	return []workloadSums{{"mixed", r.summaries("mixed")}, {"bigtx", r.summaries("bigtx")}}
}

// writeStreaming writes the throughput, client CPU and peak RSS section of the report.
func (r *results) writeStreaming(w io.Writer) {
	wls := r.streamingWorkloads()
	if len(wls[0].sums)+len(wls[1].sums) > 0 {
		fmt.Fprintf(w, "\nWorkloads: mixed = %d inserts (transactions of %d, ~%.0f bytes/row on disk), then %d updates and %d deletes (transactions of %d), generated in %.1f s; bigtx = one transaction of %d inserts, generated in %.1f s. %d repeats per client, alternating; each run drains its own sibling slot up to the LSN recorded after the workload.\n",
			r.sizes.Rows, r.sizes.InsertTx, r.rowBytes, r.sizes.Updates, r.sizes.Deletes, r.sizes.ChangeTx,
			r.workloadT["mixed"].Seconds(), r.sizes.BigTxRows, r.workloadT["bigtx"].Seconds(), r.repeats)
		fmt.Fprintln(w, "\n## Throughput, client CPU, peak RSS")
		for _, wl := range wls {
			if len(wl.sums) > 0 {
				bench.WriteSummaryTable(w, wl.name, r.changes[wl.name], wl.sums)
			}
		}
		if r.base != nil {
			p := r.basePair()
			fmt.Fprintf(w, "\n### %s against %s (medians)\n\n", p.cur, p.ref)
			fmt.Fprintf(w, "The current tree and the baseline %s, both with the file sink and the same configuration, each on its own sibling slot of the same changes; "+
				"ratios are current / baseline. No regression: throughput ratio ≥ %.2f and CPU-per-change ratio ≤ %.2f.\n\n", r.base.rev, minThroughputRatio, maxCPURatio)
			writeVersusTable(w, p, wls)
		}
		if r.endpoint != nil {
			r.writeEndpoint(w, wls)
		}
		fmt.Fprintln(w, "\n<details><summary>every run</summary>")
		bench.WriteRunsTable(w, r.runs)
		fmt.Fprintln(w, "\n</details>")
	}
}

// writeStreamingTargets writes the throughput, CPU and peak RSS rows of the Targets table.
func (r *results) writeStreamingTargets(w io.Writer) {
	wls := r.streamingWorkloads()
	for _, wl := range wls {
		if f, ok := find(wl.sums, clientFile); ok {
			fmt.Fprintf(w, "| file sink throughput ≥ 1.0× pg_recvlogical (%s) | %.2f× | %s |\n", wl.name, f.Throughput, verdict(f.Throughput >= 1))
			fmt.Fprintf(w, "| client CPU per change ≤ pg_recvlogical's (%s, file sink) | %.2f× | %s |\n", wl.name, f.CPU, verdict(f.CPU <= 1))
			if r.base != nil {
				target := noRegression(r.base.rev, wl.name+", file sink", "throughput", "change")
				if v, _, _, ok := versusOf(wl.sums, r.basePair()); ok {
					fmt.Fprintf(w, "| %s | %s | %s |\n", target, v.streamFigures(), verdict(v.ok()))
				} else {
					fmt.Fprintf(w, "| %s | no baseline figure | NOT met |\n", target)
				}
			}
			if r.endpoint != nil {
				r.writeEndpointTarget(w, wl)
			}
		}
	}
	mixed, big := wls[0].sums, wls[1].sums
	if f, ok := find(big, clientFile); ok {
		fmt.Fprintf(w, "| peak RSS ≤ 64 MiB on the %d-row transaction (file sink, every repeat) | median %.1f MiB, worst %.1f MiB | %s |\n",
			r.sizes.BigTxRows, f.MaxRSSMiB, f.WorstRSSMiB, verdict(f.WorstRSSMiB <= 64))
		if g, ok := find(mixed, clientFile); ok {
			fmt.Fprintf(w, "| peak RSS not growing with transaction size (file sink, %d-row vs %d-row transactions; met within 25%% + 4 MiB) | %.1f vs %.1f MiB | %s |\n",
				r.sizes.BigTxRows, r.sizes.InsertTx, f.MaxRSSMiB, g.MaxRSSMiB, verdict(f.MaxRSSMiB <= g.MaxRSSMiB*1.25+4))
		}
	}
}

// pair is two streaming clients compared on their medians, cur over ref, with the words the
// report calls them by.
type pair struct {
	cur, ref         string
	curWord, refWord string
}

// basePair compares the current file-sink client with the baseline's (-baseline).
func (r *results) basePair() pair {
	return pair{cur: clientFile, ref: r.base.streamClient(), curWord: "current", refWord: "baseline"}
}

// versusOf compares the medians of p's clients on a workload; ok is false when either has no runs.
func versusOf(sums []bench.ClientSummary, p pair) (v versus, cur, ref bench.ClientSummary, ok bool) {
	cur, okCur := find(sums, p.cur)
	ref, okRef := find(sums, p.ref)
	if !okCur || !okRef {
		return versus{}, cur, ref, false
	}
	v = versus{throughput: ratio(cur.ChangesPerSec, ref.ChangesPerSec), cpu: ratio(cur.CPUPerMillion, ref.CPUPerMillion),
		rss: ratio(cur.MaxRSSMiB, ref.MaxRSSMiB)}
	return v, cur, ref, true
}

// writeVersusTable writes the medians of p's clients side by side with their ratios, a row per
// workload that ran.
func writeVersusTable(w io.Writer, p pair, wls []workloadSums) {
	words := p.curWord + " / " + p.refWord
	fmt.Fprintf(w, "| workload | changes/s: %s | ratio | client CPU s / M changes: %s | ratio | peak RSS MiB: %s | ratio |\n", words, words, words)
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, wl := range wls {
		if len(wl.sums) == 0 {
			continue
		}
		v, cur, ref, ok := versusOf(wl.sums, p)
		if !ok {
			fmt.Fprintf(w, "| %s | no figure | | | | | |\n", wl.name)
			continue
		}
		fmt.Fprintf(w, "| %s | %.0f / %.0f | %.2f× | %.2f / %.2f | %.2f× | %.1f / %.1f | %.2f× |\n", wl.name,
			cur.ChangesPerSec, ref.ChangesPerSec, v.throughput, cur.CPUPerMillion, ref.CPUPerMillion, v.cpu, cur.MaxRSSMiB, ref.MaxRSSMiB, v.rss)
	}
}
