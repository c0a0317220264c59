package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/internal/inspect"
	"github.com/pgstream/pgstream/internal/metrics"
	"github.com/pgstream/pgstream/replication"
)

func TestSlotWatchReport(t *testing.T) {
	size := func(n int64) *int64 { return &n }
	for _, tc := range []struct {
		name    string
		minSafe int64
		st      inspect.SlotState
		ready   bool
		reason  string // in the slot component's reason
		lost    bool
		danger  bool // endangered is told
	}{
		{name: "reserved, unlimited", st: inspect.SlotState{WALStatus: "reserved", MaxSlotWALKeepBytes: -1}, ready: true},
		{name: "plenty of room", st: inspect.SlotState{WALStatus: "reserved", SafeWALSize: size(900 << 20), MaxSlotWALKeepBytes: 1 << 30}, ready: true},
		{name: "under a fifth of the limit", st: inspect.SlotState{WALStatus: "extended", SafeWALSize: size(100 << 20), MaxSlotWALKeepBytes: 1 << 30},
			reason: "under the margin of 214748364 bytes", danger: true},
		{name: "under the configured margin", minSafe: 500 << 20, st: inspect.SlotState{WALStatus: "reserved", SafeWALSize: size(400 << 20), MaxSlotWALKeepBytes: 1 << 30},
			reason: "under the margin of 524288000 bytes", danger: true},
		{name: "unreserved", st: inspect.SlotState{WALStatus: "unreserved", SafeWALSize: size(0), MaxSlotWALKeepBytes: 1 << 30}, reason: "wal_status unreserved", danger: true},
		{name: "lost, PostgreSQL 15", st: inspect.SlotState{WALStatus: "lost"}, reason: "invalidated: wal_removed", lost: true},
		{name: "lost for removed WAL, PostgreSQL 17", st: inspect.SlotState{WALStatus: "lost", InvalidationReason: "wal_removed", Conflicting: boolp(false)},
			reason: "invalidated: wal_removed", lost: true},
		{name: "lost for idle time, PostgreSQL 18", st: inspect.SlotState{WALStatus: "lost", InvalidationReason: "idle_timeout", Conflicting: boolp(false)},
			reason: "invalidated: idle_timeout", lost: true},
		{name: "conflicting, PostgreSQL 16", st: inspect.SlotState{WALStatus: "lost", Conflicting: boolp(true)},
			reason: "invalidated: rows_removed or wal_level_insufficient", lost: true},
		{name: "invalidated while its walsender still runs", st: inspect.SlotState{WALStatus: "unreserved", InvalidationReason: "rows_removed", Conflicting: boolp(true)},
			reason: "invalidated: rows_removed", lost: true},
		{name: "valid, PostgreSQL 18", st: inspect.SlotState{WALStatus: "reserved", MaxSlotWALKeepBytes: -1, Conflicting: boolp(false), IdleTimeoutSeconds: 3600},
			ready: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			board := health.NewBoard(nil)
			var told []int64
			w := &slotWatch{src: replication.Config{Slot: "s"}, log: zap.NewNop(), obs: observers{health: board, metrics: metrics.New("test")}, minSafe: tc.minSafe, endangered: func(st inspect.SlotState, margin int64) {
				if st.WALStatus != tc.st.WALStatus {
					t.Errorf("endangered told wal_status %q, want %q", st.WALStatus, tc.st.WALStatus)
				}
				told = append(told, margin)
			}}
			err := w.report(tc.st)
			if tc.danger != (len(told) == 1) || (tc.danger && told[0] != w.margin(tc.st)) {
				t.Fatalf("endangered told margins %v, want told %v with the margin %d", told, tc.danger, w.margin(tc.st))
			}
			if tc.lost != errors.Is(err, ErrSlotLost) {
				t.Fatalf("report = %v, want lost %v", err, tc.lost)
			}
			if tc.lost && (!strings.Contains(err.Error(), "snapshot.mode initial") || !strings.Contains(err.Error(), "pg_drop_replication_slot('s')") ||
				!strings.Contains(err.Error(), "To avoid it: ")) {
				t.Fatalf("the lost slot's error names no way out: %v", err)
			}
			ready, comps := board.Ready()
			if ready != tc.ready || len(comps) != 1 || comps[0].Name != ComponentSlot || !strings.Contains(comps[0].Reason, tc.reason) {
				t.Fatalf("readiness %v %+v, want %v with %q", ready, comps, tc.ready, tc.reason)
			}
			if w.last().WALStatus != tc.st.WALStatus {
				t.Fatalf("last state %+v", w.last())
			}
		})
	}
}

// The slot watch's warning ends the reads inside the exported snapshot while they run, once, with
// the slot's state as the cause; at any other time it does nothing.
func TestSlotEndangeredEndsExportedReads(t *testing.T) {
	size := func(n int64) *int64 { return &n }
	guard := &exportGuard{}
	under := inspect.SlotState{WALStatus: "extended", SafeWALSize: size(10 << 20), MaxSlotWALKeepBytes: 128 << 20}
	guard.slotEndangered(under, 64<<20) // no exported snapshot is read: nothing to end

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	disarm := guard.arm(cancel)
	if ctx.Err() != nil {
		t.Fatal("arming ended the reads")
	}
	guard.slotEndangered(under, 64<<20)
	var danger *slotDanger
	if !errors.As(context.Cause(ctx), &danger) || danger.margin != 64<<20 || *danger.st.SafeWALSize != 10<<20 {
		t.Fatalf("cause %v, want the slot's danger", context.Cause(ctx))
	}
	if msg := danger.Error(); !strings.Contains(msg, "safe_wal_size 10485760 bytes is under the margin of 67108864 bytes") {
		t.Fatalf("cause says %q", msg)
	}
	if guard.trip(errors.New("again")) {
		t.Fatal("the guard tripped twice")
	}
	disarm()

	ctx2, cancel2 := context.WithCancelCause(context.Background())
	defer cancel2(nil)
	guard.arm(cancel2)()
	guard.slotEndangered(inspect.SlotState{WALStatus: "unreserved", SafeWALSize: size(-1 << 20)}, 64<<20)
	if ctx2.Err() != nil {
		t.Fatal("a disarmed guard ended the reads")
	}
	if msg := (&slotDanger{st: inspect.SlotState{WALStatus: "unreserved"}, margin: 1}).Error(); !strings.Contains(msg, "wal_status is unreserved") {
		t.Fatalf("an unreserved slot's cause says %q", msg)
	}
}

func boolp(b bool) *bool { return &b }

func TestIdleTimeoutRisks(t *testing.T) {
	for _, tc := range []struct {
		name         string
		timeout      time.Duration
		snapshotting bool
		want         []string // one string each warning must hold, in order
	}{
		{name: "off", timeout: 0, snapshotting: true},
		{name: "well above reconnect_max, streaming", timeout: time.Hour},
		{name: "as long as reconnect_max", timeout: 30 * time.Second,
			want: []string{"is not longer than pipeline.reconnect_max (30s): while pgstream waits to reconnect the slot is idle"}},
		{name: "shorter than reconnect_max", timeout: 10 * time.Second,
			want: []string{"raise idle_replication_slot_timeout well above pipeline.reconnect_max"}},
		{name: "during the initial snapshot", timeout: time.Hour, snapshotting: true,
			want: []string{"a snapshot that takes longer than the timeout loses the slot; set idle_replication_slot_timeout to 0"}},
		{name: "both", timeout: time.Second, snapshotting: true, want: []string{"pipeline.reconnect_max", "initial snapshot"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := idleTimeoutRisks(tc.timeout, 30*time.Second, tc.snapshotting)
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q lacks %q", got[i], w)
				}
			}
		})
	}
}

// warnSettings logs the idle timeout's risks at start, with what to change.
func TestSlotWatchWarnsOfIdleTimeout(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	w := &slotWatch{src: replication.Config{Slot: "s"}, log: zap.New(core), reconnectMax: time.Minute, initialSnapshot: func() bool { return false }}
	w.warnSettings(inspect.SlotState{WALStatus: "reserved", MaxSlotWALKeepSize: "1GB", MaxSlotWALKeepBytes: 1 << 30, IdleReplicationSlotTimeout: "30s", IdleTimeoutSeconds: 30})
	if got := logs.FilterMessageSnippet("idle_replication_slot_timeout (30s) is not longer than pipeline.reconnect_max (1m0s)").Len(); got != 1 {
		t.Fatalf("%d warnings of the idle timeout; logs: %+v", got, logs.All())
	}
}
