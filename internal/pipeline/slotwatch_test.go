package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.uber.org/zap"

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
		{name: "lost", st: SlotState{WALStatus: "lost"}, reason: "wal_status lost", lost: true},
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
			if tc.lost && !strings.Contains(err.Error(), "snapshot.mode initial") {
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
	sn := &snapshotter{}
	under := SlotState{WALStatus: "extended", SafeWALSize: size(10 << 20), MaxSlotWALKeepBytes: 128 << 20}
	sn.slotEndangered(under, 64<<20) // no exported snapshot is read: nothing to end

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	disarm := sn.guard.arm(cancel)
	if ctx.Err() != nil {
		t.Fatal("arming ended the reads")
	}
	sn.slotEndangered(under, 64<<20)
	var danger *slotDanger
	if !errors.As(context.Cause(ctx), &danger) || danger.margin != 64<<20 || *danger.st.SafeWALSize != 10<<20 {
		t.Fatalf("cause %v, want the slot's danger", context.Cause(ctx))
	}
	if msg := danger.Error(); !strings.Contains(msg, "safe_wal_size 10485760 bytes is under the margin of 67108864 bytes") {
		t.Fatalf("cause says %q", msg)
	}
	if sn.guard.trip(errors.New("again")) {
		t.Fatal("the guard tripped twice")
	}
	disarm()

	ctx2, cancel2 := context.WithCancelCause(context.Background())
	defer cancel2(nil)
	sn.guard.arm(cancel2)()
	sn.slotEndangered(SlotState{WALStatus: "unreserved", SafeWALSize: size(-1 << 20)}, 64<<20)
	if ctx2.Err() != nil {
		t.Fatal("a disarmed guard ended the reads")
	}
	if msg := (&slotDanger{st: SlotState{WALStatus: "unreserved"}, margin: 1}).Error(); !strings.Contains(msg, "wal_status is unreserved") {
		t.Fatalf("an unreserved slot's cause says %q", msg)
	}
}
