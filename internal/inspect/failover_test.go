package inspect

import (
	"errors"
	"strings"
	"testing"
)

func TestFailoverFindings(t *testing.T) {
	ready := FailoverSlot{Exists: true, Failover: true, Synced: true}
	primary := func() *PrimaryFailover {
		return &PrimaryFailover{Addr: "p:5432", VersionNum: 170002, SynchronizedStandbySlots: []string{"sb1"},
			PhysicalSlots: map[string]bool{"sb1": true}, Slot: FailoverSlot{Exists: true, Failover: true}}
	}
	standby := func() StandbyFailover {
		return StandbyFailover{Addr: "s:5432", VersionNum: 170002, SyncReplicationSlots: true, HotStandbyFeedback: true,
			PrimarySlotName: "sb1", WALLevel: "logical", Slot: ready}
	}
	report := func(f func(*FailoverReport)) FailoverReport {
		r := FailoverReport{Slot: "pgs", Hosts: []string{"p:5432", "s:5432"}, Primary: primary(), Standbys: []StandbyFailover{standby()}}
		f(&r)
		return r
	}
	for _, tc := range []struct {
		name  string
		r     FailoverReport
		warns []string // substrings of the warnings, one each, all of them
	}{
		{name: "ready", r: report(func(*FailoverReport) {})},
		{name: "PostgreSQL 16", r: report(func(r *FailoverReport) { r.Primary.VersionNum = 160004 }),
			warns: []string{"PostgreSQL 16 has no failover slots (server_version_num 160004, at least 170000 needed)"}},
		{name: "slot without failover", r: report(func(r *FailoverReport) { r.Primary.Slot.Failover = false }),
			warns: []string{"slot pgs is not a failover slot"}},
		{name: "no synchronized_standby_slots", r: report(func(r *FailoverReport) { r.Primary.SynchronizedStandbySlots = nil }),
			warns: []string{"synchronized_standby_slots is empty", "its physical slot sb1 is not in the primary's synchronized_standby_slots"}},
		{name: "synchronized_standby_slots names a missing slot", r: report(func(r *FailoverReport) {
			r.Primary.SynchronizedStandbySlots = []string{"sb1", "gone"}
		}), warns: []string{"names gone, which is not a physical slot on the primary"}},
		{name: "standby settings", r: report(func(r *FailoverReport) {
			s := &r.Standbys[0]
			s.SyncReplicationSlots, s.HotStandbyFeedback, s.WALLevel, s.PrimarySlotName = false, false, "replica", ""
		}), warns: []string{"sync_replication_slots is off", "hot_standby_feedback is off", "wal_level is replica", "primary_slot_name is empty"}},
		{name: "no copy", r: report(func(r *FailoverReport) { r.Standbys[0].Slot = FailoverSlot{} }),
			warns: []string{"NOT READY FOR FAILOVER: the standby has no copy of slot pgs"}},
		{name: "temporary copy", r: report(func(r *FailoverReport) { r.Standbys[0].Slot.Temporary = true }),
			warns: []string{"NOT READY FOR FAILOVER: the standby's copy of slot pgs is still temporary"}},
		{name: "own slot", r: report(func(r *FailoverReport) { r.Standbys[0].Slot.Synced = false }),
			warns: []string{"not synchronized from the primary (synced false)"}},
		{name: "invalidated copy", r: report(func(r *FailoverReport) { r.Standbys[0].Slot.Invalidation = "wal_removed" }),
			warns: []string{"is invalidated (wal_removed)"}},
		{name: "no standby", r: report(func(r *FailoverReport) { r.Standbys, r.Hosts = nil, []string{"p:5432"} }),
			warns: []string{"no standby can be inspected: source.url names no other server"}},
		{name: "standby unreachable", r: report(func(r *FailoverReport) {
			r.Standbys = nil
			r.Unreached = []HostError{{Addr: "s:5432", Err: errors.New("connection refused")}}
		}), warns: []string{"s:5432", "no standby can be inspected: no other server of source.url (p:5432, s:5432) answered as a standby"}},
		{name: "no primary", r: report(func(r *FailoverReport) { r.Primary = nil }),
			warns: []string{"none of the servers of source.url (p:5432, s:5432) could be inspected as the primary"}},
		{name: "two primaries", r: report(func(r *FailoverReport) { r.Others = []string{"q:5432"} }),
			warns: []string{"is not in recovery either: a second primary beside p:5432"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var warns []string
			for _, f := range tc.r.Findings() {
				if !f.OK {
					if f.Fix == "" {
						t.Errorf("warning without a fix: %+v", f)
					}
					warns = append(warns, f.Subject+": "+f.Message)
				}
			}
			if len(warns) != len(tc.warns) {
				t.Fatalf("warnings:\n%s\nwant %d: %q", strings.Join(warns, "\n"), len(tc.warns), tc.warns)
			}
			for i, w := range tc.warns {
				if !strings.Contains(warns[i], w) {
					t.Errorf("warning %d = %q, want it to say %q", i, warns[i], w)
				}
			}
		})
	}
	// A ready pair says so, naming the copy's position.
	var oks []string
	for _, f := range report(func(*FailoverReport) {}).Findings() {
		oks = append(oks, f.Subject+": "+f.Message)
	}
	if got := strings.Join(oks, "\n"); !strings.Contains(got, "standby s:5432: its copy of slot pgs is synced and persistent") ||
		!strings.Contains(got, "synchronized_standby_slots = sb1") || !strings.Contains(got, "slot pgs is a failover slot") {
		t.Fatalf("findings of a ready pair:\n%s", got)
	}
}
