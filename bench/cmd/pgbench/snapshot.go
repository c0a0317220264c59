package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/bench"
)

// snapPublication publishes bench.SnapshotTable alone.
const snapPublication = "bench_snapshot"

// The clients of the snapshot figure. clientPsql, a child process like pgstream, is the reference.
const (
	clientPsql   = `COPY via psql \copy → /dev/null`
	clientCopyGo = "COPY via pgconn → io.Discard"
)

func snapClient(workers int) string {
	return fmt.Sprintf("pgstream initial_only, file, workers %d", workers)
}

// snapBaseClient is the baseline's snapshot client: the same run, with the pgstream of revision rev.
func snapBaseClient(rev string, workers int) string {
	return fmt.Sprintf("pgstream@%s initial_only, file, workers %d", rev, workers)
}

type snapResult struct {
	rows     int
	workers  []int
	rowBytes float64
	tableMiB float64
	setup    time.Duration
	runs     []bench.SnapshotRun
	outMiB   float64 // size of the file sink's output of the current tree's last pgstream run
	problems []string
	nProblem int
	err      error // the phase failed: no figure
	// baseSkipped says why the baseline was not measured although -baseline was given.
	baseSkipped string
}

// snapshot creates the snapshot table, then, repeat after repeat, copies it out with COPY (in this
// process and with psql) and snapshots it with pgstream for each -snapshot-workers value, each on
// a fresh slot and checkpoint; with -baseline, once more with the baseline's pgstream at the first
// -snapshot-workers value, next to the current tree's run at that value (after it in the first
// repeat, before it in the second, and so on). A pgstream run whose output is not exactly one read
// per row fails the phase.
func (m *measurer) snapshot(ctx context.Context, sr *snapResult) error {
	o, conn := m.o, m.conn
	sr.rows, sr.workers = o.snapRows, o.snapWork
	base := m.base != nil
	if base && !m.base.knows("snapshot.mode") {
		base, sr.baseSkipped = false, fmt.Sprintf("%s has no snapshot.mode in its configs/pgstream.yaml", m.base.rev)
		logf("snapshot: the baseline is not measured: %s", sr.baseSkipped)
	}
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

		for i, w := range o.snapWork {
			runs := []bool{false} // whether each run is the baseline's
			if base && i == 0 {
				runs = []bool{false, true}
				if r%2 == 0 {
					runs = []bool{true, false}
				}
			}
			for _, b := range runs {
				client := snapClient(w)
				if b {
					client = snapBaseClient(m.base.rev, w)
				}
				u, err := m.snapshotRun(ctx, sr, w, r, b)
				if err != nil {
					return fmt.Errorf("%s, repeat %d: %w", client, r, err)
				}
				m.addSnapRun(sr, bench.SnapshotRun{Client: client, Repeat: r, Rows: int64(o.snapRows), Usage: u})
			}
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

// snapshotRun runs `pgstream run` (with base, the baseline's) with snapshot.mode initial_only on a
// new slot and checkpoint, checks the file sink's output, collects the warnings and errors of its
// log, and drops the slot.
func (m *measurer) snapshotRun(ctx context.Context, sr *snapResult, workers, repeat int, base bool) (bench.Usage, error) {
	slot, who := fmt.Sprintf("snapshot_w%d_%d", workers, repeat), ""
	if base {
		slot, who = fmt.Sprintf("snapshot_base_w%d_%d", workers, repeat), "baseline "+m.base.rev+", "
	}
	dir, err := os.MkdirTemp(m.work, slot+"-")
	if err != nil {
		return bench.Usage{}, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "out.jsonl")
	cfg := snapshotConfig(m.url, slot, filepath.Join(dir, "checkpoint"), out, m.pipelineLines(), workers)
	cmd, err := m.pgstreamCmd(ctx, base, dir, cfg)
	if err != nil {
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
	cmd.Stdout, cmd.Stderr = devnull, logFile
	u, runErr := bench.RunChild(cmd, m.o.timeout)
	problems, n, lerr := bench.LogProblems(logPath, 10)
	for _, p := range problems {
		sr.problems = append(sr.problems, fmt.Sprintf("%sworkers %d, repeat %d: %s", who, workers, repeat, p))
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
	if fi, err := os.Stat(out); err == nil && !base {
		sr.outMiB = float64(fi.Size()) / (1 << 20)
	}
	return u, dropErr
}

// snapshotConfig is the configuration template of the snapshot runs: pgstream creates the slot,
// reads the table with snapshot.mode initial_only into the file sink at out, and exits.
func snapshotConfig(url, slot, checkpoint, out, pipeline string, workers int) string {
	return fmt.Sprintf(`source:
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
`, url, slot, snapPublication, checkpoint, out, pipeline, workers)
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
		"Per repeat, in this order: `psql -c '\\copy (SELECT * FROM %s) TO /dev/null'` over one connection, a child process timed from start to exit like pgstream (the reference); "+
		"the same COPY with pgconn's CopyTo into io.Discard in the benchmark process (the statement alone is timed; CPU is the whole benchmark process's); then `pgstream run` with snapshot.mode initial_only on a new slot and checkpoint for each snapshot.workers value "+
		"(process start to exit; each run's file must hold exactly one op \"r\" line per row, every id once). Repeats: %d; medians.\n",
		bench.SnapshotTable, sn.rows, sn.rowBytes, sn.tableMiB, sn.setup.Seconds(), snapPublication, bench.SnapshotTable, r.repeats)
	if r.base != nil {
		fmt.Fprintf(w, "\nWith the baseline %s: one more run per repeat, `pgstream run` built at that revision with the same configuration, at workers %d, next to the current tree's run at workers %d (after it in the first repeat, before it in the second, and so on).\n",
			r.base.rev, sn.workers[0], sn.workers[0])
	}
	if len(sn.runs) > 0 {
		sums := bench.SummarizeSnapshot(sn.runs, clientPsql)
		bench.WriteSnapshotTables(w, clientPsql, sums, sn.runs)
		if r.base != nil {
			r.writeSnapshotVersus(w, sums)
		}
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

// writeSnapshotTargets writes the snapshot rows of the Targets table.
func (r *results) writeSnapshotTargets(w io.Writer) {
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
		if r.base != nil {
			r.writeSnapshotBaseTarget(w, sums)
		}
	}
}

// snapshotVersus compares the current tree's snapshot run at the first -snapshot-workers value
// with the baseline's: rows/s, CPU (per row: both read the same rows) and peak RSS. ok is false
// without -baseline or when either has no runs; complete is false when either has fewer runs
// than the repeats.
func (r *results) snapshotVersus(sums []bench.SnapshotSummary) (v versus, cur, base bench.SnapshotSummary, ok, complete bool) {
	if r.base == nil || len(r.snap.workers) == 0 {
		return versus{}, cur, base, false, false
	}
	wk := r.snap.workers[0]
	cur, okCur := findSnap(sums, snapClient(wk))
	base, okBase := findSnap(sums, snapBaseClient(r.base.rev, wk))
	if !okCur || !okBase {
		return versus{}, cur, base, false, false
	}
	v = versus{throughput: ratio(cur.RowsPerSec, base.RowsPerSec), cpu: ratio(cur.CPU.Seconds(), base.CPU.Seconds()),
		rss: ratio(cur.MaxRSSMiB, base.MaxRSSMiB)}
	return v, cur, base, true, cur.Runs >= r.repeats && base.Runs >= r.repeats
}

// writeSnapshotVersus writes the current tree's snapshot medians beside the baseline's.
func (r *results) writeSnapshotVersus(w io.Writer, sums []bench.SnapshotSummary) {
	wk := r.snap.workers[0]
	fmt.Fprintf(w, "\n### %s against %s (medians)\n\n", snapClient(wk), snapBaseClient(r.base.rev, wk))
	if r.snap.baseSkipped != "" {
		fmt.Fprintf(w, "The baseline was not measured: %s.\n", r.snap.baseSkipped)
		return
	}
	fmt.Fprintf(w, "Ratios are current / baseline. No regression: rows/s ratio ≥ %.2f and CPU-per-row ratio ≤ %.2f.\n\n", minThroughputRatio, maxCPURatio)
	fmt.Fprintln(w, "| rows/s: current / baseline | ratio | client CPU s: current / baseline | ratio | peak RSS MiB: current / baseline | ratio |")
	fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | ---: | ---: |")
	v, cur, base, ok, _ := r.snapshotVersus(sums)
	if !ok {
		fmt.Fprintln(w, "| no figure | | | | | |")
		return
	}
	fmt.Fprintf(w, "| %.0f / %.0f | %.2f× | %.2f / %.2f | %.2f× | %.1f / %.1f | %.2f× |\n",
		cur.RowsPerSec, base.RowsPerSec, v.throughput, cur.CPU.Seconds(), base.CPU.Seconds(), v.cpu, cur.MaxRSSMiB, base.MaxRSSMiB, v.rss)
}

// writeSnapshotBaseTarget writes the snapshot's "no regression" row of the Targets table.
func (r *results) writeSnapshotBaseTarget(w io.Writer, sums []bench.SnapshotSummary) {
	sn := r.snap
	if len(sn.workers) == 0 {
		return
	}
	target := noRegression(r.base.rev, fmt.Sprintf("snapshot, file sink, workers %d", sn.workers[0]), "rows/s", "row")
	v, _, _, ok, complete := r.snapshotVersus(sums)
	switch {
	case sn.baseSkipped != "":
		fmt.Fprintf(w, "| %s | not measured: %s | NOT met |\n", target, sn.baseSkipped)
	case sn.err != nil && !complete:
		fmt.Fprintf(w, "| %s | failed: no figure | NOT met |\n", target)
	case ok:
		fmt.Fprintf(w, "| %s | rows/s %.2f×, CPU per row %.2f×, peak RSS %.2f× | %s |\n", target, v.throughput, v.cpu, v.rss, verdict(v.ok()))
	default:
		fmt.Fprintf(w, "| %s | no baseline figure | NOT met |\n", target)
	}
}
