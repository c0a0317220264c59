package pipeline

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/checkpoint"
	ckfile "github.com/pgstream/pgstream/checkpoint/file"
	"github.com/pgstream/pgstream/lsn"
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

// fakeTimelines is the server as a timelineReader sees it: srv, or unreadable when !ok.
type fakeTimelines struct {
	srv   checkpoint.Server
	ok    bool
	reads int
}

func (f *fakeTimelines) read(label int32) (checkpoint.Server, bool) {
	f.reads++
	srv := f.srv
	if srv.Timeline == label {
		srv.History = nil
	}
	return srv, f.ok
}

func (f *fakeTimelines) close() {}

// TestCheckpointFollowsTimeline: while the source is a standby, a save reads the server's timeline
// after the position. The same timeline is kept; a later one whose history leaves the checkpoint's
// at or after the durable position is recorded with the new position; one that left it before is a
// server gone back in time, and another system a mismatch: nothing is saved then, nor when the
// timeline cannot be read.
func TestCheckpointFollowsTimeline(t *testing.T) {
	const durable, next = 0x1000, 0x2000
	promoted := checkpoint.Server{SystemID: "7", Database: "db", WALEnd: 0x9000, Timeline: 2,
		History: []checkpoint.TimelineSwitch{{Timeline: 1, End: 0x1800}}}
	for _, tc := range []struct {
		name     string
		srv      checkpoint.Server
		ok       bool
		durable  lsn.LSN
		want     error // nil: saved
		timeline int32 // the saved checkpoint's
	}{
		{name: "same timeline", srv: checkpoint.Server{SystemID: "7", Database: "db", WALEnd: 0x9000, Timeline: 1}, ok: true, durable: durable, timeline: 1},
		{name: "promoted after the durable position", srv: promoted, ok: true, durable: durable, timeline: 2},
		{name: "promoted at the durable position", srv: promoted, ok: true, durable: 0x1800, timeline: 2},
		{name: "forked before the durable position", srv: promoted, ok: true, durable: 0x1801, want: checkpoint.ErrRewound},
		{name: "another system", srv: checkpoint.Server{SystemID: "8", Database: "db", WALEnd: 0x9000, Timeline: 1}, ok: true, durable: durable,
			want: checkpoint.ErrMismatch},
		{name: "unreadable", ok: false, durable: durable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "checkpoint.json")
			store := ckfile.New(path, ckfile.OSFS())
			f := &fakeTimelines{srv: tc.srv, ok: tc.ok}
			start := checkpoint.Position{CommitLSN: tc.durable, EndLSN: tc.durable}
			c := &checkpointer{store: store, snap: &snapState{}, interval: time.Second, now: time.Now, log: zap.NewNop(),
				follow: f, tracker: checkpoint.NewTracker(1, start),
				ident: checkpoint.Checkpoint{SystemID: "7", Timeline: 1, Database: "db", Slot: "s"}}
			c.durable.Store(&start)
			if err := c.save(); err != nil || f.reads != 0 {
				t.Fatalf("a save without a new position: %v, %d timeline reads", err, f.reads)
			}
			seq := c.tracker.Add(checkpoint.Position{CommitLSN: next - 0x10, EndLSN: next}, 1)
			if err := c.tracker.Ack(0, seq); err != nil {
				t.Fatal(err)
			}
			err := c.save()
			cp, found, lerr := store.Load()
			if lerr != nil {
				t.Fatal(lerr)
			}
			switch {
			case tc.want != nil:
				if !errors.Is(err, tc.want) || found {
					t.Fatalf("save = %v, saved %v; want %v and nothing saved", err, found, tc.want)
				}
			case !tc.ok:
				if err != nil || found || c.Durable() != start {
					t.Fatalf("save with the timeline unreadable = %v, saved %v, durable %+v", err, found, c.Durable())
				}
			default:
				if err != nil || !found || cp.FlushLSN != next || cp.Timeline != tc.timeline {
					t.Fatalf("save = %v, saved %v at %s on timeline %d; want %s on timeline %d", err, found, cp.FlushLSN, cp.Timeline, lsn.LSN(next), tc.timeline)
				}
			}
		})
	}
}
