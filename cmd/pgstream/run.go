package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/internal/httpapi"
	"github.com/pgstream/pgstream/internal/inspect"
	"github.com/pgstream/pgstream/internal/metrics"
	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/replication"
	"github.com/pgstream/pgstream/sinks"
)

// runStream runs the pipeline until ctx ends; bar, when not nil, shows snapshot progress.
func runStream(ctx context.Context, cfg *Config, log *zap.Logger, out io.Writer, bar *progressBar) error {
	specs, err := buildSinks(ctx, cfg, log, out)
	if err != nil {
		return err
	}
	store, err := cfg.Checkpoint.open(log)
	if err != nil {
		closeSinks(specs)
		return err
	}
	p, err := pipeline.New(cfg.Pipeline, cfg.Source.Config, store, specs, log)
	if err != nil {
		closeSinks(specs)
		return err
	}
	fields := []zap.Field{zap.String("version", buildVersion()), zap.String("source", replication.RedactURL(cfg.Source.URL))}
	if cfg.Source.PrimaryURL != "" {
		fields = append(fields, zap.String("primary", replication.RedactURL(cfg.Source.PrimaryURL)))
	}
	log.Info("pgstream starting", append(fields, zap.Int("sinks", len(specs)), zap.String("checkpoint", cfg.Checkpoint.where()))...)
	if cfg.HTTP.Listen != "" {
		m, h := metrics.New(buildVersion()), health.NewBoard(nil)
		p.Observe(m, h)
		// A loop may be silent for a reconnect's longest backoff plus two connection attempts.
		live := time.Minute + cfg.Pipeline.ReconnectMax + 2*cfg.Source.ConnectTimeout
		stop, err := serveHTTP(cfg.HTTP.Listen, httpapi.Handler(httpapi.Options{Metrics: m, Health: h, Liveness: live,
			Status: func() any { return p.Status() }}), log)
		if err != nil {
			closeSinks(specs)
			return err
		}
		defer stop()
	}
	if bar != nil {
		bctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); bar.follow(bctx, p) }()
		defer func() { stop(); <-done }()
	}
	return p.Run(ctx)
}

// serveHTTP listens on addr and serves h until stop is called.
func serveHTTP(addr string, h http.Handler, log *zap.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http.listen %s: %w (is another process using the port?)", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("operations endpoint stopped", zap.Error(err))
		}
	}()
	log.Info("operations endpoint listening", zap.String("address", ln.Addr().String()))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// buildSinks creates every configured sink and checks that each destination answers, so that a bad
// broker address fails before replication starts.
func buildSinks(ctx context.Context, cfg *Config, log *zap.Logger, out io.Writer) ([]pipeline.SinkSpec, error) {
	var specs []pipeline.SinkSpec
	for i, raw := range cfg.Sinks {
		h, err := parseSinkHeader(i, raw)
		if err != nil {
			closeSinks(specs)
			return nil, err
		}
		s, err := newSink(h, i, log.With(zap.String("sink", h.Name)), out)
		if err != nil {
			closeSinks(specs)
			return nil, err
		}
		if p, ok := s.(sinks.Pinger); ok {
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := p.Ping(pctx)
			cancel()
			if err != nil {
				_ = s.Close()
				closeSinks(specs)
				return nil, fmt.Errorf("sink %s (%s): %w", h.Name, h.Type, err)
			}
		}
		filter, _ := pipeline.NewFilter(h.Include, h.Exclude) // checked by validate
		specs = append(specs, pipeline.SinkSpec{Name: h.Name, Sink: s, Filter: filter})
	}
	return specs, nil
}

// newSink decodes a sink entry and opens the sink. Its errors name the sink.
func newSink(h sinkHeader, i int, log *zap.Logger, out io.Writer) (sinks.Sink, error) {
	c, err := sinkConfig(h, i)
	if err != nil {
		return nil, err
	}
	s, err := c.Open(sinks.Env{Log: log, Stdout: out})
	if err != nil {
		return nil, fmt.Errorf("sink %s (%s): %w", h.Name, h.Type, err)
	}
	return s, nil
}

// sinkConfig decodes and validates a sink entry's own keys into its registered type's Config. No
// I/O.
func sinkConfig(h sinkHeader, i int) (sinks.Config, error) {
	t, ok := sinks.Lookup(h.Type)
	if !ok {
		return nil, fmt.Errorf("sinks[%d]: unknown type %q", i, h.Type)
	}
	c := t.NewConfig()
	if err := decodeSinkConfig(h, i, c); err != nil {
		return nil, err
	}
	return c, nil
}

func closeSinks(specs []pipeline.SinkSpec) {
	for _, s := range specs {
		_ = s.Sink.Close()
	}
}

// checkSink checks a sink entry the way buildSinks opens and pings it, but changes nothing at the
// destination (sinks.Check). The note says what run would create.
func checkSink(ctx context.Context, h sinkHeader, i int, log *zap.Logger) (note string, err error) {
	c, err := sinkConfig(h, i)
	if err != nil {
		return "", err
	}
	return sinks.Check(ctx, c, sinks.Env{Log: log, Stdout: io.Discard})
}

// runCheck runs every check pgstream can make without streaming, printing each result. It
// changes nothing: what run would create (slot, stream, topic, output file) is reported instead.
// reportStart prints what a run would do at start-up, as Inspect decided it, or why it would refuse.
func reportStart(out io.Writer, report func(string, error), cfg *Config, st pipeline.StartState, err error) {
	ckpt := "checkpoint " + cfg.Checkpoint.where()
	if err != nil {
		var re *replication.Error
		if st.Slot.Name == "" || errors.As(err, &re) {
			report("slot "+cfg.Source.Slot, err)
		} else {
			report(ckpt, err)
		}
		return
	}
	report("slot "+cfg.Source.Slot, nil)
	switch {
	case st.CreateSlot:
		what := "snapshots the published tables, then streams from there"
		if !st.Snapshot {
			what = "starts there"
		}
		fmt.Fprintf(out, "ok    %s: none yet; the first run creates slot %s and %s\n", ckpt, cfg.Source.Slot, what)
	case st.Found:
		fmt.Fprintf(out, "ok    %s: resumes from %s, skipping transactions committed at or before %s\n", ckpt, st.Start.From, st.Start.SkipThrough)
		for _, t := range st.Checkpoint.Snapshot {
			fmt.Fprintf(out, "      snapshot of %s unfinished: %d of %d chunks done; the rest is read while streaming\n",
				t.Name(), t.Chunks()-uint32(len(t.Pending())), t.Chunks())
		}
	case st.Snapshot:
		fmt.Fprintf(out, "ok    %s: none yet; the published tables are snapshotted while streaming from the slot's position %s\n", ckpt, st.Start.From)
	default:
		fmt.Fprintf(out, "ok    %s: none yet; streaming starts at the slot's position %s\n", ckpt, st.Start.From)
	}
}

// reportFailover prints what failover needs, as the servers of source.url show it: what is
// ready, and what is not with its fix. What is missing is a warning: run works without it, but a
// failover would stop pgstream (or, without synchronized_standby_slots, may).
func reportFailover(out io.Writer, rep inspect.FailoverReport) {
	for _, f := range rep.Findings() {
		if f.OK {
			fmt.Fprintf(out, "ok    %s: %s\n", f.Subject, f.Message)
			continue
		}
		fmt.Fprintf(out, "WARN  %s\n      %s\n      fix: %s\n", f.Subject, replication.RedactURL(f.Message), f.Fix)
	}
}

func runCheck(ctx context.Context, cfg *Config, log *zap.Logger, out io.Writer) int {
	failed := false
	report := func(name string, err error) {
		if err != nil {
			failed = true
			fmt.Fprintf(out, "FAIL  %s\n      %v\n", name, err)
			return
		}
		fmt.Fprintf(out, "ok    %s\n", name)
	}
	conn, err := replication.Connect(ctx, cfg.Source.Config)
	what := "connect to " + replication.RedactURL(cfg.Source.URL) + " in replication mode"
	if err == nil {
		what += ": PostgreSQL " + conn.PgConn().ParameterStatus("server_version")
	}
	report(what, err)
	if err == nil {
		defer conn.Close(context.Background())
		sys, err := conn.IdentifySystem(ctx)
		report("IDENTIFY_SYSTEM", err)
		if err == nil {
			store, err := cfg.Checkpoint.open(log)
			var st pipeline.StartState
			if err == nil {
				st, err = pipeline.Inspect(ctx, conn, sys, store, cfg.Pipeline)
			}
			if st.Standby {
				to := "source.primary_url is not set, so heartbeats, snapshots while streaming, new tables and the signal table must be off"
				if cfg.Source.PrimaryURL != "" {
					to = "heartbeats, watermarks, snapshot requests and the publication are written on the primary, " + replication.RedactURL(cfg.Source.PrimaryURL)
				}
				fmt.Fprintf(out, "ok    source is a hot standby (PostgreSQL %s): decoding runs on it; %s\n", conn.PgConn().ParameterStatus("server_version"), to)
			}
			if len(st.Problems) == 0 {
				what := "preflight (wal_level, role, slots, wal senders, publication, tables)"
				if st.Standby {
					what = "preflight (wal_level, role, slots, wal senders, publication, tables; standby: version, hot_standby_feedback, primary)"
				}
				report(what, nil)
			}
			for _, p := range st.Problems {
				report("preflight: "+p.Check, fmt.Errorf("%s\n      fix: %s", p.Message, p.Fix))
			}
			reportStart(out, report, cfg, st, err)
			if cfg.Source.Failover && !inspect.HasCheck(st.Problems, "failover") {
				reportFailover(out, inspect.Failover(ctx, cfg.Source.Config))
			}
		}
	}
	for i, raw := range cfg.Sinks {
		h, err := parseSinkHeader(i, raw)
		if err != nil {
			report(fmt.Sprintf("sinks[%d]", i), err)
			continue
		}
		name := fmt.Sprintf("sink %s (%s)", h.Name, h.Type)
		note, err := checkSink(ctx, h, i, log.With(zap.String("sink", h.Name)))
		if err == nil && note != "" {
			name += ": " + note
		}
		report(name, err)
	}
	if failed {
		return 1
	}
	return 0
}
