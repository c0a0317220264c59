package pipeline

import (
	"reflect"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/snapshot"
)

// TestConfigValidateDoesNotChangeIt: Validate only checks, whether the config is valid or not.
func TestConfigValidateDoesNotChangeIt(t *testing.T) {
	off := false
	for name, c := range map[string]Config{
		"zero":     {},
		"snapshot": {Snapshot: SnapshotConfig{Mode: SnapshotNever, NewTables: &off}},
		"invalid":  {MaxBatchEvents: -1, ReconnectMin: time.Hour, Snapshot: SnapshotConfig{Mode: "sometimes"}},
	} {
		before := c
		_ = c.Validate()
		if !reflect.DeepEqual(c, before) {
			t.Errorf("%s: Config.Validate changed the config:\n got %+v\nwant %+v", name, c, before)
		}
		s := c.Snapshot
		_ = s.Validate()
		if !reflect.DeepEqual(s, before.Snapshot) {
			t.Errorf("%s: SnapshotConfig.Validate changed the config:\n got %+v\nwant %+v", name, s, before.Snapshot)
		}
	}
}

func TestConfigWithDefaults(t *testing.T) {
	var c Config
	d := c.WithDefaults()
	on := true
	want := Config{
		MaxBatchEvents:     4096,
		MaxBatchBytes:      1 << 20,
		MaxInFlightBytes:   16 << 20,
		MaxWriteEvents:     16384,
		CheckpointInterval: time.Second,
		ShutdownTimeout:    30 * time.Second,
		ReconnectMin:       500 * time.Millisecond,
		ReconnectMax:       30 * time.Second,
		StatsInterval:      30 * time.Second,
		Snapshot: SnapshotConfig{
			Mode:             SnapshotInitial,
			Workers:          2,
			ChunkPages:       snapshot.DefaultChunkPages,
			ProgressInterval: 10 * time.Second,
			NewTables:        &on,
			PollInterval:     10 * time.Second,
		},
		WALGuard:  WALGuardConfig{PollInterval: 10 * time.Second},
		Heartbeat: HeartbeatConfig{Interval: time.Minute},
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("defaults:\n got %+v %+v\nwant %+v %+v", d, d.Snapshot, want, want.Snapshot)
	}
	if !reflect.DeepEqual(c, Config{}) {
		t.Fatalf("WithDefaults changed its receiver: %+v", c)
	}
	// NewTables defaults to false with mode never; values that are set are kept.
	if s := (SnapshotConfig{Mode: SnapshotNever}).WithDefaults(); s.NewTables == nil || *s.NewTables {
		t.Fatalf("mode never: new_tables = %v", s.NewTables)
	}
	set := Config{MaxBatchEvents: 1, MaxBatchBytes: 2, MaxInFlightBytes: 3, MaxWriteEvents: 4,
		CheckpointInterval: 5, ShutdownTimeout: 6, ReconnectMin: 7, ReconnectMax: 8, StatsInterval: -1,
		Snapshot: SnapshotConfig{Mode: SnapshotInitialOnly, Workers: 9, ChunkPages: 10, ProgressInterval: -1,
			NewTables: new(bool), PollInterval: 11},
		WALGuard: WALGuardConfig{PollInterval: 12, MinSafeWALSize: 13}, Heartbeat: HeartbeatConfig{Interval: -1}}
	if got := set.WithDefaults(); !reflect.DeepEqual(got, set) {
		t.Fatalf("WithDefaults changed set values:\n got %+v\nwant %+v", got, set)
	}
}
