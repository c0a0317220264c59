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

// The measured clients, in the order each repeat runs them.
const (
	clientRecv   = "pg_recvlogical"
	clientFile   = "pgstream file"
	clientStdout = "pgstream stdout>/dev/null"
)

var clients = []string{clientRecv, clientFile, clientStdout}

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
