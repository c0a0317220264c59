package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// The "no regression against REV" targets: the current build's median throughput (changes or rows
// per second) is at least minThroughputRatio of the baseline's, and its median CPU per change at most
// maxCPURatio of the baseline's. The metrics endpoint's cost target holds the endpoint-on client to
// the same ratios of the endpoint-off one.
const (
	minThroughputRatio = 0.95
	maxCPURatio        = 1.05
)

// baseline is pgstream built at another revision of this repository (-baseline), measured as one
// more client beside the current build: in the streaming phases with the file sink on its own
// sibling slot, in the snapshot phase as one more run. Its configuration is the current clients'
// template without the keys its revision does not know. Not safe for concurrent use.
type baseline struct {
	rev    string // as given to -baseline
	commit string // the commit rev resolved to
	bin    string
	// known holds "section" and "section.key" for every key the revision's configs/pgstream.yaml
	// names, commented-out examples included. nil: the revision has no such file, and configurations
	// are written unchanged.
	known   map[string]bool
	dropped []string // the keys left out of the baseline's configurations so far, sorted
}

// streamClient is the name of the baseline's file-sink client in the streaming phases.
func (b *baseline) streamClient() string { return "pgstream@" + b.rev + " file" }

// knows reports whether the revision accepts the configuration key ("section.key").
func (b *baseline) knows(key string) bool {
	return b.known == nil || b.known[key]
}

// buildBaseline resolves rev, checks it out in a detached worktree under work, builds its
// ./cmd/pgstream into work/pgstream-base with goTool, reads the configuration keys the revision
// documents, and removes the worktree. It runs git in the current directory, which must be inside
// this repository.
func buildBaseline(ctx context.Context, goTool, rev, work string) (b *baseline, err error) {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--verify", "--quiet", rev+"^{commit}").Output()
	if err != nil {
		return nil, fmt.Errorf("-baseline %s: no such revision in this repository (git rev-parse --verify %s^{commit}: %v); give a commit, branch or tag that git log shows", rev, rev, err)
	}
	b = &baseline{rev: rev, commit: strings.TrimSpace(string(out)), bin: filepath.Join(work, "pgstream-base")}
	src := filepath.Join(work, "baseline-src")
	if out, err := exec.CommandContext(ctx, "git", "worktree", "add", "--detach", src, b.commit).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("-baseline %s: check out %s: git worktree add: %w: %s", rev, b.commit, err, outputTail(out))
	}
	defer func() {
		// Not under ctx: the worktree is removed even when the build was interrupted.
		if out, rerr := exec.Command("git", "worktree", "remove", "--force", src).CombinedOutput(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove the baseline's worktree (run git worktree remove --force %s): %w: %s", src, rerr, outputTail(out)))
		}
	}()
	logf("building pgstream at %s (%s) into %s", rev, b.commit[:min(len(b.commit), 12)], b.bin)
	build := exec.CommandContext(ctx, goTool, "build", "-o", b.bin, "./cmd/pgstream")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("-baseline %s: go build ./cmd/pgstream at %s failed; pick a revision that builds: %w: %s", rev, b.commit, err, outputTail(out))
	}
	example, err := os.ReadFile(filepath.Join(src, "configs", "pgstream.yaml"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		logf("%s has no configs/pgstream.yaml: its configurations are written with every key of the template", rev)
	case err != nil:
		return nil, err
	default:
		b.known = exampleKeys(string(example))
	}
	return b, nil
}

// outputTail returns the last 2 KiB of a command's output, trimmed, for an error message.
func outputTail(out []byte) string {
	return strings.TrimSpace(string(out[max(0, len(out)-2048):]))
}

// exampleKeyLine matches a key of an example configuration, commented out or not, at the start of
// its line or after a list item's "- ": indentation, "#", "- ", the key, the colon.
var exampleKeyLine = regexp.MustCompile(`^( *)(#\s*)?(?:-\s+)?([a-z_][a-z0-9_]*):(?:\s|$)`)

// exampleKeys returns "section" and "section.key" for every key of an example configuration
// (configs/pgstream.yaml): a top-level key starts a section, an indented one is a key of the
// current section (the keys of list items, such as sinks, are keys of their section). Keys that
// are commented out count: they are examples of keys the revision accepts.
func exampleKeys(example string) map[string]bool {
	known := map[string]bool{}
	section := ""
	for _, line := range strings.Split(example, "\n") {
		m := exampleKeyLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		indent, comment, key := m[1], m[2], m[3]
		switch {
		case indent == "" && comment == "":
			section = key
			known[key] = true
		case indent == "" && comment != "":
			// A top-level comment: prose or a commented-out section; neither says what follows.
		case section != "":
			known[section+"."+key] = true
		}
	}
	return known
}

// configKeyLine matches a key line of a configuration the benchmark writes.
var configKeyLine = regexp.MustCompile(`^( *)(?:-\s+)?([a-z_][a-z0-9_]*):`)

// config returns cfg, a configuration the benchmark wrote for the current build (one key per line,
// no multi-line values), without the keys the revision does not know: the line of an unknown key of
// a section, or a whole section the revision does not know. It records what it left out.
func (b *baseline) config(cfg string) string {
	var out []string
	section, skipSection := "", false
	for _, line := range strings.SplitAfter(cfg, "\n") {
		m := configKeyLine.FindStringSubmatch(line)
		switch {
		case m == nil:
			if skipSection && strings.HasPrefix(line, " ") {
				continue
			}
		case m[1] == "":
			section = m[2]
			skipSection = !b.knows(section)
			if skipSection {
				b.drop(section)
				continue
			}
		case skipSection:
			continue
		case !b.knows(section + "." + m[2]):
			b.drop(section + "." + m[2])
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, "")
}

func (b *baseline) drop(key string) {
	if i, found := slices.BinarySearch(b.dropped, key); !found {
		b.dropped = slices.Insert(b.dropped, i, key)
	}
}

// versus is one client's medians over another's (the current build's over the baseline's, the
// endpoint-on client's over the file-sink client's): throughput (changes or rows per second), CPU
// per change and peak RSS. A ratio whose reference figure is 0 is NaN.
type versus struct {
	throughput, cpu, rss float64
}

func ratio(cur, base float64) float64 {
	if base == 0 {
		return math.NaN()
	}
	return cur / base
}

// streamFigures are the ratios in the words of the streaming phases.
func (v versus) streamFigures() string {
	return fmt.Sprintf("throughput %.2f×, CPU per change %.2f×, peak RSS %.2f×", v.throughput, v.cpu, v.rss)
}

// ok reports whether the client shows no regression against its reference: throughput ratio ≥
// minThroughputRatio and CPU ratio ≤ maxCPURatio. A NaN ratio is not ok.
func (v versus) ok() bool { return v.throughput >= minThroughputRatio && v.cpu <= maxCPURatio }

// noRegression is the first column of the "no regression" row of the Targets table for a phase:
// what is compared, and the thresholds in the phase's words (throughput "throughput" or "rows/s",
// per "change" or "row").
func noRegression(rev, what, throughput, per string) string {
	return fmt.Sprintf("no regression against %s (%s; met when %s ≥ %.2f× and CPU per %s ≤ %.2f× the baseline's, medians)",
		rev, what, throughput, minThroughputRatio, per, maxCPURatio)
}
