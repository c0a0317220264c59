package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/internal/metrics"
	"github.com/pgstream/pgstream/replication"
)

func TestSlotWatchReport(t *testing.T) {
	size := func(n int64) *int64 { return &n }
	for _, tc := range []struct {
		name    string
		minSafe int64
		st      SlotState
		ready   bool
		reason  string // in the slot component's reason
		lost    bool
		danger  bool // endangered is told
	}{
		{name: "reserved, unlimited", st: SlotState{WALStatus: "reserved", MaxSlotWALKeepBytes: -1}, ready: true},
		{name: "plenty of room", st: SlotState{WALStatus: "reserved", SafeWALSize: size(900 << 20), MaxSlotWALKeepBytes: 1 << 30}, ready: true},
		{name: "under a fifth of the limit", st: SlotState{WALStatus: "extended", SafeWALSize: size(100 << 20), MaxSlotWALKeepBytes: 1 << 30},
			reason: "under the margin of 214748364 bytes", danger: true},
		{name: "under the configured margin", minSafe: 500 << 20, st: SlotState{WALStatus: "reserved", SafeWALSize: size(400 << 20), MaxSlotWALKeepBytes: 1 << 30},
			reason: "under the margin of 524288000 bytes", danger: true},
		{name: "unreserved", st: SlotState{WALStatus: "unreserved", SafeWALSize: size(0), MaxSlotWALKeepBytes: 1 << 30}, reason: "wal_status unreserved", danger: true},
		{name: "lost, PostgreSQL 15", st: SlotState{WALStatus: "lost"}, reason: "invalidated: wal_removed", lost: true},
		{name: "lost for removed WAL, PostgreSQL 17", st: SlotState{WALStatus: "lost", InvalidationReason: "wal_removed", Conflicting: boolp(false)},
			reason: "invalidated: wal_removed", lost: true},
		{name: "lost for idle time, PostgreSQL 18", st: SlotState{WALStatus: "lost", InvalidationReason: "idle_timeout", Conflicting: boolp(false)},
			reason: "invalidated: idle_timeout", lost: true},
		{name: "conflicting, PostgreSQL 16", st: SlotState{WALStatus: "lost", Conflicting: boolp(true)},
			reason: "invalidated: rows_removed or wal_level_insufficient", lost: true},
		{name: "invalidated while its walsender still runs", st: SlotState{WALStatus: "unreserved", InvalidationReason: "rows_removed", Conflicting: boolp(true)},
			reason: "invalidated: rows_removed", lost: true},
		{name: "valid, PostgreSQL 18", st: SlotState{WALStatus: "reserved", MaxSlotWALKeepBytes: -1, Conflicting: boolp(false), IdleTimeoutSeconds: 3600},
			ready: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			board := health.NewBoard(nil)
			p := &Pipeline{log: zap.NewNop(), src: replication.Config{Slot: "s"}, health: board, metrics: metrics.New("test")}
			var told []int64
			w := &slotWatch{p: p, minSafe: tc.minSafe, endangered: func(st SlotState, margin int64) {
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
	under := SlotState{WALStatus: "extended", SafeWALSize: size(10 << 20), MaxSlotWALKeepBytes: 128 << 20}
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
	guard.slotEndangered(SlotState{WALStatus: "unreserved", SafeWALSize: size(-1 << 20)}, 64<<20)
	if ctx2.Err() != nil {
		t.Fatal("a disarmed guard ended the reads")
	}
	if msg := (&slotDanger{st: SlotState{WALStatus: "unreserved"}, margin: 1}).Error(); !strings.Contains(msg, "wal_status is unreserved") {
		t.Fatalf("an unreserved slot's cause says %q", msg)
	}
}

func boolp(b bool) *bool { return &b }

// pollRow is a row of pollSlotSQL with the slot's row as the server renders it (slotJSON) and the
// settings of a server without idle_replication_slot_timeout unless idle says otherwise.
func pollRow(slotJSON, idle, idleSetting string) [][]byte {
	return [][]byte{[]byte(slotJSON), []byte("1536"), []byte("17.2"), []byte("1min"), []byte("4096MB"), []byte("false"),
		[]byte("4294967296"), []byte(idle), []byte(idleSetting), []byte("")}
}

// The rows below are pg_replication_slots as each version renders it (to_jsonb), taken from the
// servers scripts/postgres.sh installs.
const (
	slotRow14 = `{"xmin": null, "active": false, "datoid": "13695", "plugin": "pgoutput", "database": "postgres", "slot_name": "s", "slot_type": "logical", "temporary": false, "two_phase": false, "active_pid": null, "wal_status": "reserved", "restart_lsn": "0/16EFEB0", "catalog_xmin": "733", "safe_wal_size": null, "confirmed_flush_lsn": "0/16EFEE8"}`
	slotRow15 = `{"xmin": null, "active": true, "datoid": "5", "plugin": "pgoutput", "database": "postgres", "slot_name": "s", "slot_type": "logical", "temporary": false, "two_phase": false, "active_pid": 4242, "wal_status": "extended", "restart_lsn": "0/1511B38", "catalog_xmin": "724", "safe_wal_size": 1073741824, "confirmed_flush_lsn": "0/1511B70"}`
	slotRow16 = `{"xmin": null, "active": false, "datoid": "5", "plugin": "pgoutput", "database": "postgres", "slot_name": "s", "slot_type": "logical", "temporary": false, "two_phase": false, "active_pid": null, "wal_status": "lost", "conflicting": true, "restart_lsn": "0/14DDEC8", "catalog_xmin": "730", "safe_wal_size": null, "confirmed_flush_lsn": "0/14DDF00"}`
	slotRow17 = `{"xmin": null, "active": false, "datoid": "5", "plugin": "pgoutput", "synced": false, "database": "postgres", "failover": false, "slot_name": "s", "slot_type": "logical", "temporary": false, "two_phase": false, "active_pid": null, "wal_status": "reserved", "conflicting": false, "restart_lsn": "0/14D8AA0", "catalog_xmin": "738", "safe_wal_size": null, "inactive_since": "2026-12-01T17:20:52.190932+00:00", "confirmed_flush_lsn": "0/14D8AD8", "invalidation_reason": null}`
	slotRow18 = `{"xmin": null, "active": false, "datoid": "5", "plugin": "pgoutput", "synced": false, "database": "postgres", "failover": false, "slot_name": "s", "slot_type": "logical", "temporary": false, "two_phase": false, "active_pid": null, "wal_status": "lost", "conflicting": false, "restart_lsn": "0/174B340", "catalog_xmin": "752", "two_phase_at": null, "safe_wal_size": null, "inactive_since": "2026-12-01T17:16:01.155294+00:00", "confirmed_flush_lsn": "0/174B378", "invalidation_reason": "idle_timeout"}`
)

func TestParseSlotPoll(t *testing.T) {
	since := func(s string) *time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return &v
	}
	gib := int64(1 << 30)
	for _, tc := range []struct {
		name string
		row  [][]byte
		want SlotState
		lost string // Invalidated()
	}{
		{name: "PostgreSQL 14", row: pollRow(slotRow14, "", ""), want: SlotState{WALStatus: "reserved"}},
		{name: "PostgreSQL 15, active", row: pollRow(slotRow15, "", ""), want: SlotState{WALStatus: "extended", SafeWALSize: &gib}},
		{name: "PostgreSQL 16, conflicting", row: pollRow(slotRow16, "", ""), want: SlotState{WALStatus: "lost", Conflicting: boolp(true)},
			lost: "rows_removed or wal_level_insufficient"},
		{name: "PostgreSQL 17, inactive", row: pollRow(slotRow17, "", ""),
			want: SlotState{WALStatus: "reserved", Conflicting: boolp(false), InactiveSince: since("2026-12-01T17:20:52.190932Z"), Failover: boolp(false)}},
		{name: "PostgreSQL 18, timeout off", row: pollRow(slotRow17, "0", "0 s"),
			want: SlotState{WALStatus: "reserved", Conflicting: boolp(false), InactiveSince: since("2026-12-01T17:20:52.190932Z"), IdleReplicationSlotTimeout: "0", Failover: boolp(false)}},
		{name: "PostgreSQL 18, invalidated for idle time", row: pollRow(slotRow18, "1s", "1 s"),
			want: SlotState{WALStatus: "lost", Conflicting: boolp(false), InactiveSince: since("2026-12-01T17:16:01.155294Z"), InvalidationReason: "idle_timeout",
				IdleReplicationSlotTimeout: "1s", IdleTimeoutSeconds: 1, Failover: boolp(false)},
			lost: "idle_timeout"},
		{name: "a timeout in minutes", row: pollRow(slotRow17, "1d", "1440 min"),
			want: SlotState{WALStatus: "reserved", Conflicting: boolp(false), InactiveSince: since("2026-12-01T17:20:52.190932Z"),
				IdleReplicationSlotTimeout: "1d", IdleTimeoutSeconds: 86400, Failover: boolp(false)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSlotPoll(tc.row)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			want.RetainedWAL, want.ServerVersion, want.WalSenderTimeout, want.MaxSlotWALKeepSize, want.MaxSlotWALKeepBytes = 1536, "17.2", "1min", "4096MB", 4<<30
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(want)
			if string(gj) != string(wj) {
				t.Fatalf("got  %s\nwant %s", gj, wj)
			}
			if got.Invalidated() != tc.lost {
				t.Fatalf("Invalidated() = %q, want %q", got.Invalidated(), tc.lost)
			}
		})
	}
	for _, bad := range [][][]byte{
		pollRow(`{"slot_name": "s", "restart_lsn": "nonsense"}`, "", ""),
		pollRow(`not json`, "", ""),
		pollRow(slotRow17, "1s", "1 fortnight"),
		pollRow(slotRow17, "1s", "x s"),
		pollRow(slotRow17, "", "")[:8],
	} {
		if st, err := parseSlotPoll(bad); err == nil {
			t.Errorf("parseSlotPoll(%q) = %+v, want an error", bad, st)
		}
	}
}

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
	p := &Pipeline{log: zap.New(core), src: replication.Config{Slot: "s"}}
	w := &slotWatch{p: p, reconnectMax: time.Minute, initialSnapshot: func() bool { return false }}
	w.warnSettings(SlotState{WALStatus: "reserved", MaxSlotWALKeepSize: "1GB", MaxSlotWALKeepBytes: 1 << 30, IdleReplicationSlotTimeout: "30s", IdleTimeoutSeconds: 30})
	if got := logs.FilterMessageSnippet("idle_replication_slot_timeout (30s) is not longer than pipeline.reconnect_max (1m0s)").Len(); got != 1 {
		t.Fatalf("%d warnings of the idle timeout; logs: %+v", got, logs.All())
	}
}
