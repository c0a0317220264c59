package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"time"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/bench"
	"github.com/pgstream/pgstream/lsn"
)

type profileResult struct {
	wall   time.Duration
	top    string
	allocs string
	path   string
}

// profileRun runs the pipeline in this process with a CPU profile, draining slot up to end, and
// returns `go tool pprof -top` of the profile.
func (m *measurer) profileRun(ctx context.Context, slot string, end lsn.LSN, outDir string) (profileResult, error) {
	dir, err := os.MkdirTemp(m.work, "profile-")
	if err != nil {
		return profileResult{}, err
	}
	defer os.RemoveAll(dir)
	path, err := filepath.Abs(filepath.Join(outDir, "cpu-mixed.pprof"))
	if err != nil {
		return profileResult{}, err
	}
	f, err := os.Create(path)
	if err != nil {
		return profileResult{}, err
	}
	defer f.Close()
	logf("mixed  in-process pipeline with a CPU profile → %s", path)
	// The allocation profile counts from process start; the run's own allocations are the difference
	// between a snapshot taken now and one taken after it.
	basePath := filepath.Join(dir, "allocs-base.pprof")
	if err := writeProfile("allocs", basePath); err != nil {
		return profileResult{}, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return profileResult{}, err
	}
	t := time.Now()
	runErr := bench.InProcess{URL: m.url, Slot: slot, Publication: publication, Dir: dir, End: end, Log: zap.NewNop()}.Run(ctx)
	wall := time.Since(t)
	pprof.StopCPUProfile()
	if runErr != nil {
		return profileResult{}, fmt.Errorf("in-process run: %w", runErr)
	}
	if err := f.Close(); err != nil {
		return profileResult{}, err
	}
	top, err := exec.CommandContext(ctx, m.o.goTool, "tool", "pprof", "-top", "-nodecount=35", path).Output()
	if err != nil {
		return profileResult{}, fmt.Errorf("go tool pprof: %w", err)
	}
	if err := os.WriteFile(filepath.Join(outDir, "pprof-top.txt"), top, 0o644); err != nil {
		return profileResult{}, err
	}
	cum, err := exec.CommandContext(ctx, m.o.goTool, "tool", "pprof", "-top", "-cum", "-nodecount=35", path).Output()
	if err != nil {
		return profileResult{}, fmt.Errorf("go tool pprof: %w", err)
	}
	if err := os.WriteFile(filepath.Join(outDir, "pprof-top-cum.txt"), cum, 0o644); err != nil {
		return profileResult{}, err
	}
	// Allocations since this process started: the pipeline run dominates them.
	apath := filepath.Join(outDir, "allocs-mixed.pprof")
	if err := writeProfile("allocs", apath); err != nil {
		return profileResult{}, err
	}
	allocs, err := exec.CommandContext(ctx, m.o.goTool, "tool", "pprof", "-sample_index=alloc_space", "-top", "-nodecount=20",
		"-diff_base", basePath, apath).Output()
	if err != nil {
		return profileResult{}, fmt.Errorf("go tool pprof: %w", err)
	}
	if err := os.WriteFile(filepath.Join(outDir, "pprof-allocs-top.txt"), allocs, 0o644); err != nil {
		return profileResult{}, err
	}
	return profileResult{wall: wall, top: string(top), allocs: string(allocs), path: path}, nil
}

// writeProfile writes the named runtime/pprof profile to path.
func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = pprof.Lookup(name).WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s profile: %w", name, err)
	}
	return nil
}

// writeCPUProfile writes the CPU and allocation profile section of the report.
func (r *results) writeCPUProfile(w io.Writer) {
	if r.profile.top != "" {
		fmt.Fprintf(w, "\n## CPU profile of the pipeline on the mixed workload (in-process, %.2f s)\n\n`go tool pprof -top %s`\n\n```\n%s```\n",
			r.profile.wall.Seconds(), r.profile.path, r.profile.top)
		fmt.Fprintf(w, "\nBytes allocated during that run (`go tool pprof -sample_index=alloc_space -top -diff_base`; the base is a snapshot taken just before it):\n\n```\n%s```\n", r.profile.allocs)
	}
}
