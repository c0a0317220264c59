package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pgstream/pgstream/bench"
)

// results is what the phases measured, for the report.
type results struct {
	cmdline    string
	started    time.Time
	machine    bench.Machine
	recvVer    string
	rowBytes   float64
	sizes      bench.Sizes
	repeats    int
	runs       []bench.Run
	workloadT  map[string]time.Duration
	changes    map[string]int64
	profile    profileResult
	latency    latencyResult
	fsync      bench.LatencySummary
	micro      []string
	env        []string
	pipeline   []string
	loadavg    map[string]string // 1, 5 and 15 minute load averages when each phase started
	microAlloc map[string]float64
	snap       snapResult
	base       *baseline       // nil without -baseline
	endpoint   endpointResults // nil without -endpoint
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// write writes the Markdown report: the header, then each phase's section, then the Targets table.
// The file of a phase holds its section and its rows of the Targets table; a phase that did not
// run writes nothing.
func (r *results) write(w io.Writer) {
	fmt.Fprintf(w, "# pgstream benchmark, %s\n\n", r.started.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Command: `%s`\n\n", r.cmdline)
	r.machine.Write(w)
	fmt.Fprintf(w, "- reference client: %s\n", r.recvVer)
	if b := r.base; b != nil {
		fmt.Fprintf(w, "- baseline: pgstream at %s (commit %s), built from a detached worktree and measured beside the current tree in the mixed, bigtx and snapshot phases", b.rev, b.commit)
		switch {
		case b.known == nil:
			fmt.Fprintln(w, "; that revision has no configs/pgstream.yaml, so its configurations are the current template unchanged")
		case len(b.dropped) > 0:
			fmt.Fprintf(w, "; its configurations leave out %s, which that revision's configs/pgstream.yaml does not name\n", strings.Join(b.dropped, ", "))
		default:
			fmt.Fprintln(w, "; its configurations are the current template unchanged")
		}
	}
	if len(r.env) > 0 || len(r.pipeline) > 0 {
		fmt.Fprintf(w, "- pgstream runs with environment %v and pipeline settings %v\n", r.env, r.pipeline)
	}
	for _, ph := range []string{"mixed", "bigtx", "snapshot", "latency"} {
		if la, ok := r.loadavg[ph]; ok {
			fmt.Fprintf(w, "- load average when the %s phase started: %s\n", ph, la)
		}
	}
	r.writeStreaming(w)
	r.writeSnapshot(w)
	r.writeLatency(w)
	r.writeMicro(w)
	r.writeCPUProfile(w)

	fmt.Fprintln(w, "\n## Targets")
	fmt.Fprintln(w, "\n| target | measured | verdict |\n| --- | --- | --- |")
	r.writeStreamingTargets(w)
	r.writeMicroTargets(w)
	r.writeSnapshotTargets(w)
	r.writeLatencyTargets(w)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
