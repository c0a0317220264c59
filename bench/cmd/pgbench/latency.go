package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/pgstream/pgstream/bench"
	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/sinks/file"
)

type latencyResult struct {
	load   bench.LoadResult
	sum    bench.LatencySummary
	done   bool
	start  time.Time
	writes []bench.WriteLatency
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
	fs, err := file.New(file.Config{Path: r.OutputPath()}, sinks.Env{})
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

// writeLatency writes the latency section of the report.
func (r *results) writeLatency(w io.Writer) {
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
}

// writeLatencyTargets writes the latency row of the Targets table.
func (r *results) writeLatencyTargets(w io.Writer) {
	l := r.latency
	if l.load.Sent > 0 {
		rate := float64(l.load.Sent) / max(l.load.Elapsed.Seconds(), 1e-9)
		fmt.Fprintf(w, "| latency p99 < 10 ms at %.0f tx/s | %s | %s |\n", rate, ms(l.sum.P99), verdict(l.done && l.sum.N > 0 && l.sum.P99 < 10*time.Millisecond))
	}
}
