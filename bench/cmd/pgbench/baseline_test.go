package main

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
)

// An example configuration of an older revision: no snapshot section, no file sink mode, a
// commented-out stdout sink and password file.
const oldExample = `# pgstream configuration. Every key is optional unless marked required.
# Durations are written with a unit: 500ms.

source:
  # Required. A libpq-style URL.
  url: postgres://pgstream@localhost:5432/app
  # password_file: /run/secrets/pg-password   # first line is the password
  slot: pgstream              # logical replication slot
  publication: pgstream
  create_slot: true
  create_publication: true

checkpoint:
  path: ./pgstream.checkpoint

# Required: at least one.
sinks:
  - type: file                # one JSON event per line
    path: ./changes.jsonl
  # - type: stdout
  #   include: [public.orders]

pipeline:
  max_batch_events: 4096
  stats_interval: 30s         # progress log line; negative disables

log:
  level: info
`

func TestExampleKeys(t *testing.T) {
	known := exampleKeys(oldExample)
	for _, k := range []string{"source", "source.url", "source.password_file", "source.create_publication", "checkpoint.path",
		"sinks", "sinks.type", "sinks.path", "sinks.include", "pipeline.stats_interval", "log.level"} {
		if !known[k] {
			t.Errorf("%s is not known", k)
		}
	}
	for _, k := range []string{"snapshot", "snapshot.mode", "sinks.mode", "pipeline.max_in_flight_bytes", "pgstream", "durations", "required"} {
		if known[k] {
			t.Errorf("%s is known", k)
		}
	}
}

// The baseline's configuration is the current one without what the revision does not know; a
// revision without an example configuration gets it unchanged.
func TestBaselineConfig(t *testing.T) {
	cfg := snapshotConfig("postgres://x", "s1", "/tmp/ck", "/tmp/out.jsonl", "  max_in_flight_bytes: 8388608\n", 2)
	cfg = strings.Replace(cfg, "    path: /tmp/out.jsonl\n", "    path: /tmp/out.jsonl\n    mode: \"0600\"\n", 1)
	b := &baseline{rev: "old", known: exampleKeys(oldExample)}
	got := b.config(cfg)
	want := `source:
  url: postgres://x
  slot: s1
  publication: bench_snapshot
  create_slot: true
  create_publication: false
checkpoint:
  path: /tmp/ck
sinks:
  - type: file
    path: /tmp/out.jsonl
pipeline:
  stats_interval: -1s
log:
  level: info
`
	if got != want {
		t.Errorf("baseline config:\n%s\nwant\n%s", got, want)
	}
	if wantDropped := []string{"log.format", "pipeline.max_in_flight_bytes", "sinks.mode", "snapshot"}; !slices.Equal(b.dropped, wantDropped) {
		t.Errorf("dropped %q, want %q", b.dropped, wantDropped)
	}
	if b.knows("snapshot.mode") {
		t.Error("the old revision knows snapshot.mode")
	}

	unknown := &baseline{rev: "older"}
	if got := unknown.config(cfg); got != cfg || len(unknown.dropped) != 0 {
		t.Errorf("without an example the config changed to\n%s\ndropped %q", got, unknown.dropped)
	}
}

// This tree's configs/pgstream.yaml names every key the benchmark writes, so that a baseline at
// this revision gets the configurations unchanged.
func TestExampleNamesTemplateKeys(t *testing.T) {
	example, err := os.ReadFile("../../../configs/pgstream.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := &baseline{rev: "HEAD", known: exampleKeys(string(example))}
	pipeline := "  max_in_flight_bytes: 8388608\n  max_batch_events: 1024\n"
	for _, cfg := range []string{
		streamConfig("postgres://x", "s", "/ck", "  - type: file\n    path: /out\n", pipeline),
		streamConfig("postgres://x", "s", "/ck", "  - type: stdout\n", pipeline),
		snapshotConfig("postgres://x", "s", "/ck", "/out", pipeline, 2),
		streamConfig("postgres://x", "s", "/ck", fileSink("/out"), pipeline) + (&scraper{listen: "127.0.0.1:10001"}).config(),
	} {
		if got := b.config(cfg); got != cfg {
			t.Errorf("config changed:\n%s\nto\n%s", cfg, got)
		}
	}
	if len(b.dropped) != 0 {
		t.Errorf("dropped %q", b.dropped)
	}
}

// Every client runs once a repeat; the baseline and the endpoint-on client run next to the
// current file-sink client, the group turning by one place each repeat.
func TestRunOrder(t *testing.T) {
	clients := streamClients(&baseline{rev: "old"}, false)
	if want := []string{clientRecv, clientFile, clientStdout, "pgstream@old file"}; !slices.Equal(clients, want) {
		t.Fatalf("clients %q, want %q", clients, want)
	}
	for r, want := range [][]int{{0, 1, 3, 2}, {0, 3, 1, 2}, {0, 1, 3, 2}} {
		if got := runOrder(clients, r); !slices.Equal(got, want) {
			t.Errorf("repeat %d: order %v, want %v", r, got, want)
		}
	}
	if got := runOrder(streamClients(nil, false), 1); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("without a baseline: order %v", got)
	}
	if got := runOrder(streamClients(nil, true), 1); !slices.Equal(got, []int{0, 3, 1, 2}) {
		t.Errorf("with the endpoint: order %v", got)
	}
	clients = streamClients(&baseline{rev: "old"}, true)
	if want := []string{clientRecv, clientFile, clientStdout, "pgstream@old file", clientEndpoint}; !slices.Equal(clients, want) {
		t.Fatalf("clients %q, want %q", clients, want)
	}
	for r, want := range [][]int{{0, 1, 3, 4, 2}, {0, 3, 4, 1, 2}, {0, 4, 1, 3, 2}, {0, 1, 3, 4, 2}} {
		if got := runOrder(clients, r); !slices.Equal(got, want) {
			t.Errorf("baseline and endpoint, repeat %d: order %v, want %v", r, got, want)
		}
	}
}

// Every client of a repeat has its own slot.
func TestSlotNames(t *testing.T) {
	got := slotNames("mixed", 2, streamClients(&baseline{rev: "old"}, true))
	want := [][]string{
		{"mixed_recv_1", "mixed_file_1", "mixed_stdout_1", "mixed_base_1", "mixed_endpoint_1"},
		{"mixed_recv_2", "mixed_file_2", "mixed_stdout_2", "mixed_base_2", "mixed_endpoint_2"},
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("slots %q, want %q", got, want)
	}
}

// A revision that does not exist is refused before anything is checked out or built.
func TestBuildBaselineUnknownRevision(t *testing.T) {
	work := t.TempDir()
	_, err := buildBaseline(context.Background(), "go", "no-such-revision-of-pgstream", work)
	if err == nil || !strings.Contains(err.Error(), "-baseline no-such-revision-of-pgstream: no such revision in this repository") {
		t.Fatalf("err = %v", err)
	}
	if entries, _ := os.ReadDir(work); len(entries) != 0 {
		t.Errorf("left %d entries in the scratch directory", len(entries))
	}
}
