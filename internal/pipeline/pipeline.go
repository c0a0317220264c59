package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/inspect"
	"github.com/pgstream/pgstream/replication"
)

// protoVersion is the pgoutput protocol pgstream asks for: whole transactions, sent at commit.
const protoVersion = 1

// receiveSlice caps how long one Receive may block, so that a shutdown request or a failed sink is
// noticed promptly even when the server is quiet.
const receiveSlice = 250 * time.Millisecond

// errEndReached ends the receive loop when Config.EndLSN has been reached.
var errEndReached = errors.New("end position reached")

// Store is where the durable checkpoint lives.
type Store = checkpoint.Store

// Pipeline streams changes from one replication slot to the configured sinks. It is used once:
// New, then Observe (optionally), then Run. It is the wiring: Run builds the parts once open has
// found where to start, and owns them until it returns.
type Pipeline struct {
	cfg   Config
	src   replication.Config
	store Store
	specs []SinkSpec
	log   *zap.Logger
	now   func() time.Time
	runID string // identifies this run's watermarks and heartbeats

	// Readable by other goroutines (Observe's scrapes, Status) from New on.
	obs     observers     // set by Observe, before Run
	snap    *snapProgress // the snapshot record and progress
	stats   stats
	pub     sessionPub
	commits commitTimes
	parts   atomic.Pointer[parts] // nil until Run built them
}

type stats struct {
	txs     atomic.Uint64 // transactions handed over
	events  atomic.Uint64
	bytes   atomic.Uint64
	batches atomic.Uint64
}

// New checks the configuration. It does no I/O. The pipeline owns the sinks from here on: Run
// closes them when it returns.
func New(cfg Config, src replication.Config, store Store, specs []SinkSpec, log *zap.Logger) (*Pipeline, error) {
	cfg, src = cfg.WithDefaults(), src.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := src.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("pipeline: a checkpoint store is required")
	}
	if len(specs) == 0 {
		return nil, errors.New("no sinks configured: add at least one entry under sinks (e.g. {type: stdout})")
	}
	if log == nil {
		log = zap.NewNop()
	}
	p := &Pipeline{cfg: cfg, src: src, store: store, specs: specs, log: log, now: time.Now, runID: newRunID()}
	p.snap = newSnapProgress(cfg.Snapshot, log, p.now)
	return p, nil
}

// Durable returns the newest position the checkpoint store holds (and the server may be told);
// zero before Run found it.
func (p *Pipeline) Durable() checkpoint.Position {
	if pp := p.parts.Load(); pp != nil {
		return pp.ck.Durable()
	}
	return checkpoint.Position{}
}

// SnapshotProgress is where the snapshots being read stand. Safe for concurrent use.
func (p *Pipeline) SnapshotProgress() SnapshotProgress { return p.snap.progress() }

// Run streams until ctx ends (a clean shutdown, returning nil) or an error that reconnecting cannot
// cure. On the way out it stops reading, lets every sink acknowledge what it holds, saves the
// checkpoint, sends a final status update and closes the connection, in that order (parts.run).
func (p *Pipeline) Run(ctx context.Context) error {
	o, err := p.open(ctx)
	if err != nil {
		p.obs.health.SetErr(ComponentSource, err)
		o.close()
		return errors.Join(append([]error{err}, p.closeSinks()...)...)
	}
	pp := p.build(o)
	p.parts.Store(pp)
	err = pp.run(ctx)
	p.obs.health.Set(ComponentSource, false, "stopped")
	closeErrs := p.closeSinks()
	d := p.Durable()
	p.log.Info("stopped", zap.Stringer("checkpoint_commit_lsn", d.CommitLSN), zap.Stringer("confirmed_flush_lsn", d.EndLSN),
		zap.Uint64("events", p.stats.events.Load()))
	return errors.Join(append([]error{err}, closeErrs...)...)
}

// closeSinks closes every sink; Run owns them from New on.
func (p *Pipeline) closeSinks() []error {
	var errs []error
	for _, s := range p.specs {
		if err := s.Sink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close sink %s: %w", s.Name, err))
		}
	}
	return errs
}

// PreflightError lists everything the preflight found wrong with the server, each with its fix.
type PreflightError struct {
	Problems []inspect.Problem
}

func (e *PreflightError) Error() string {
	s := fmt.Sprintf("the server is not ready for pgstream (%d problem(s)):", len(e.Problems))
	for _, pr := range e.Problems {
		s += fmt.Sprintf("\n  - %s: %s\n    fix: %s", pr.Check, pr.Message, pr.Fix)
	}
	return s
}
