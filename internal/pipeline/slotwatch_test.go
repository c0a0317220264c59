package pipeline

import (
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
	}{
		{name: "reserved, unlimited", st: SlotState{WALStatus: "reserved", MaxSlotWALKeepBytes: -1}, ready: true},
		{name: "plenty of room", st: SlotState{WALStatus: "reserved", SafeWALSize: size(900 << 20), MaxSlotWALKeepBytes: 1 << 30}, ready: true},
		{name: "under a fifth of the limit", st: SlotState{WALStatus: "extended", SafeWALSize: size(100 << 20), MaxSlotWALKeepBytes: 1 << 30},
			reason: "under the margin of 214748364 bytes"},
		{name: "under the configured margin", minSafe: 500 << 20, st: SlotState{WALStatus: "reserved", SafeWALSize: size(400 << 20), MaxSlotWALKeepBytes: 1 << 30},
			reason: "under the margin of 524288000 bytes"},
		{name: "unreserved", st: SlotState{WALStatus: "unreserved", SafeWALSize: size(0), MaxSlotWALKeepBytes: 1 << 30}, reason: "wal_status unreserved"},
		{name: "lost", st: SlotState{WALStatus: "lost"}, reason: "wal_status lost", lost: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			board := health.NewBoard(nil)
			p := &Pipeline{log: zap.NewNop(), src: replication.Config{Slot: "s"}, health: board, metrics: metrics.New("test")}
			w := &slotWatch{p: p, minSafe: tc.minSafe}
			err := w.report(tc.st)
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
