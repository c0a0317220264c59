package pipeline

import (
	"slices"
	"strings"
	"testing"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/replication"
)

// TestStandbyWriteProblems: on a standby without source.primary_url, every feature that writes into
// the WAL is a finding naming source.primary_url and the option that turns it off; with
// source.primary_url there is none.
func TestStandbyWriteProblems(t *testing.T) {
	off := false
	src := replication.Config{URL: "postgres://u@standby/db"}
	withPrimary := replication.Config{URL: "postgres://u@standby/db", PrimaryURL: "postgres://u@primary/db"}
	pending := StartState{Found: true, Checkpoint: checkpoint.Checkpoint{Snapshot: []checkpoint.TableSnapshot{{OID: 1}}}}
	slotOnly := StartState{Slot: replication.SlotInfo{Name: "s", Exists: true}}
	for _, tc := range []struct {
		name  string
		cfg   Config
		src   replication.Config
		st    StartState
		check []string // the findings' Check, in order
		fixes []string // a part of each finding's fix
	}{
		{name: "defaults", cfg: Config{}, src: src, check: []string{"heartbeat", "snapshot.new_tables"},
			fixes: []string{"negative source.heartbeat_interval", "snapshot.new_tables: false"}},
		{name: "all off", cfg: Config{Heartbeat: HeartbeatConfig{Interval: -1}, Snapshot: SnapshotConfig{NewTables: &off}}, src: src},
		{name: "signal table", cfg: Config{Heartbeat: HeartbeatConfig{Interval: -1}, Snapshot: SnapshotConfig{NewTables: &off, SignalTable: "sig"}},
			src: src, check: []string{"snapshot.signal_table"}, fixes: []string{"remove snapshot.signal_table"}},
		{name: "initial only streams nothing", cfg: Config{Snapshot: SnapshotConfig{Mode: SnapshotInitialOnly, SignalTable: "sig"}}, src: src},
		{name: "unfinished snapshot", cfg: Config{Heartbeat: HeartbeatConfig{Interval: -1}, Snapshot: SnapshotConfig{NewTables: &off}},
			src: src, st: pending, check: []string{"snapshot"}, fixes: []string{"source.primary_url"}},
		{name: "slot without checkpoint", cfg: Config{Heartbeat: HeartbeatConfig{Interval: -1}, Snapshot: SnapshotConfig{NewTables: &off}},
			src: src, st: slotOnly, check: []string{"snapshot"}, fixes: []string{"snapshot.mode: never"}},
		{name: "slot without checkpoint, mode never", cfg: Config{Heartbeat: HeartbeatConfig{Interval: -1}, Snapshot: SnapshotConfig{Mode: SnapshotNever}},
			src: src, st: slotOnly},
		{name: "primary", cfg: Config{Snapshot: SnapshotConfig{SignalTable: "sig"}}, src: withPrimary, st: pending},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probs := standbyWriteProblems(tc.cfg.WithDefaults(), tc.src, tc.st)
			var checks []string
			for _, p := range probs {
				checks = append(checks, p.Check)
			}
			if !slices.Equal(checks, tc.check) {
				t.Fatalf("findings %v, want %v: %+v", checks, tc.check, probs)
			}
			for i, p := range probs {
				if !strings.Contains(p.Fix, "source.primary_url") || !strings.Contains(p.Fix, tc.fixes[i]) {
					t.Errorf("%s: fix %q names neither source.primary_url nor %q", p.Check, p.Fix, tc.fixes[i])
				}
			}
		})
	}
}
