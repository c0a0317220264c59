package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/pgstream/pgstream/bench"
	"github.com/pgstream/pgstream/internal/pipeline"
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
	fs, err := file.Open(file.Config{Path: r.OutputPath()})
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
