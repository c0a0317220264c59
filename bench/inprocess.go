package bench

import (
	"context"
	"fmt"
	"path/filepath"

	"go.uber.org/zap"

	ckfile "github.com/pgstream/pgstream/checkpoint/file"
	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/replication"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/sinks/file"
)

// InProcess describes one in-process pgstream run: the pipeline with the file sink, as
// `pgstream run` builds it, on an existing slot and publication.
type InProcess struct {
	URL         string
	Slot        string
	Publication string
	// Dir receives the output file (out.jsonl) and the checkpoint.
	Dir string
	// End stops the run once everything up to it is delivered; 0 runs until ctx ends.
	End lsn.LSN
	// Sink, when set, is the sink the pipeline writes to (and closes); nil means a file sink at
	// OutputPath.
	Sink sinks.Sink
	// Pipeline tunes the pipeline; its zero value is pgstream's defaults, except that a zero
	// Snapshot.Mode means never (these runs measure streaming), EndLSN is taken from End, and a zero
	// StatsInterval disables the progress log.
	Pipeline pipeline.Config
	Log      *zap.Logger
}

// OutputPath is where the file sink writes.
func (r InProcess) OutputPath() string { return filepath.Join(r.Dir, "out.jsonl") }

// Run runs the pipeline until r.End is delivered or ctx ends.
func (r InProcess) Run(ctx context.Context) error {
	no := false
	src := replication.Config{URL: r.URL, Slot: r.Slot, Publication: r.Publication, CreateSlot: &no, CreatePublication: &no}
	s := r.Sink
	if s == nil {
		fs, err := file.New(file.Config{Path: r.OutputPath()}, sinks.Env{})
		if err != nil {
			return err
		}
		s = fs
	}
	store := ckfile.New(filepath.Join(r.Dir, "checkpoint"), ckfile.OSFS())
	cfg := r.Pipeline
	cfg.EndLSN = r.End
	if cfg.StatsInterval == 0 {
		cfg.StatsInterval = -1
	}
	if cfg.Snapshot.Mode == "" {
		cfg.Snapshot.Mode = pipeline.SnapshotNever
	}
	p, err := pipeline.New(cfg, src, store,
		[]pipeline.SinkSpec{{Name: "file", Sink: s}}, r.Log)
	if err != nil {
		_ = s.Close()
		return fmt.Errorf("create pipeline: %w", err)
	}
	err = p.Run(ctx)
	// Run closes the sinks once streaming started; when connecting failed it has not. Sinks'
	// Close is idempotent (the file sink's and LatencySink's are).
	if cerr := s.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}
