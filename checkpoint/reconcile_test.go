package checkpoint

import (
	"errors"
	"strings"
	"testing"

	"github.com/pgstream/pgstream/lsn"
)

func TestReconcileNamesFile(t *testing.T) {
	cp := sampleCheckpoint()
	srv := Server{SystemID: cp.SystemID, Database: cp.Database, Slot: cp.Slot, SlotExists: true, SlotConfirmedFlush: cp.FlushLSN + 1,
		WALEnd: cp.FlushLSN + 1, Timeline: cp.Timeline}
	s := at("/var/lib/pgstream/cp.json")
	_, err := s.Reconcile(cp, true, srv)
	if !errors.Is(err, ErrSlotAhead) || !strings.Contains(err.Error(), "remove /var/lib/pgstream/cp.json (") {
		t.Fatalf("Reconcile = %v; want ErrSlotAhead naming the file", err)
	}
	srv.Database = "other"
	if _, err := s.Reconcile(cp, true, srv); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "remove /var/lib/pgstream/cp.json to start over") {
		t.Fatalf("Reconcile = %v; want ErrMismatch naming the file", err)
	}
	if got, err := s.Reconcile(cp, true, Server{SystemID: cp.SystemID, Database: cp.Database, Slot: cp.Slot, SlotExists: true,
		WALEnd: cp.FlushLSN, Timeline: cp.Timeline}); err != nil || got.From != cp.FlushLSN {
		t.Fatalf("Reconcile = %+v, %v", got, err)
	}
}

func TestReconcile(t *testing.T) {
	cp := sampleCheckpoint() // commit 1/16B3748, flush 1/16B3778
	srv := Server{
		SystemID:           cp.SystemID,
		Database:           cp.Database,
		Slot:               cp.Slot,
		SlotExists:         true,
		SlotConfirmedFlush: cp.FlushLSN,
		WALEnd:             0x3_00000000,
		Timeline:           cp.Timeline,
	}
	with := func(f func(*Server)) Server {
		s := srv
		f(&s)
		return s
	}
	withCP := func(f func(*Checkpoint)) Checkpoint {
		c := cp
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name     string
		cp       Checkpoint
		found    bool
		srv      Server
		want     Start
		err      error
		mentions []string // substrings the error must contain
	}{
		{
			name: "no checkpoint starts at the slot",
			srv:  with(func(s *Server) { s.SlotConfirmedFlush = 0x5000 }),
			want: Start{From: 0x5000, Fresh: true},
		},
		{
			name: "no checkpoint, slot just created",
			srv: with(func(s *Server) {
				s.SlotCreated = true
				s.SlotConfirmedFlush = 0x6000
			}),
			want: Start{From: 0x6000, Fresh: true},
		},
		{
			name:     "no checkpoint and no slot",
			srv:      with(func(s *Server) { s.SlotExists = false }),
			err:      ErrSlotMissing,
			mentions: []string{`"pgstream"`},
		},
		{
			name:  "resume where the slot is",
			cp:    cp,
			found: true,
			srv:   srv,
			want:  Start{From: cp.FlushLSN, SkipThrough: cp.CommitLSN},
		},
		{
			name:  "slot behind the checkpoint",
			cp:    cp,
			found: true,
			srv:   with(func(s *Server) { s.SlotConfirmedFlush = cp.CommitLSN - 0x1000 }),
			want:  Start{From: cp.FlushLSN, SkipThrough: cp.CommitLSN},
		},
		{
			name:     "another system",
			cp:       cp,
			found:    true,
			srv:      with(func(s *Server) { s.SystemID = "999" }),
			err:      ErrMismatch,
			mentions: []string{"system id", cp.SystemID, `"999"`, "checkpoint.path", "remove"},
		},
		{
			name:     "another database",
			cp:       cp,
			found:    true,
			srv:      with(func(s *Server) { s.Database = "other" }),
			err:      ErrMismatch,
			mentions: []string{"database", `"app"`, `"other"`},
		},
		{
			name:     "another slot",
			cp:       cp,
			found:    true,
			srv:      with(func(s *Server) { s.Slot = "s2" }),
			err:      ErrMismatch,
			mentions: []string{"slot", `"pgstream"`, `"s2"`},
		},
		{
			name:     "slot dropped",
			cp:       cp,
			found:    true,
			srv:      with(func(s *Server) { s.SlotExists = false; s.SlotConfirmedFlush = 0 }),
			err:      ErrSlotMissing,
			mentions: []string{`"pgstream"`, "1/16B3778", "remove the checkpoint file", "snapshot"},
		},
		{
			name:  "slot recreated now",
			cp:    cp,
			found: true,
			srv: with(func(s *Server) {
				s.SlotCreated = true
				s.SlotConfirmedFlush = 0x9_00000000
			}),
			err:      ErrSlotMissing,
			mentions: []string{"dropped after checkpoint 1/16B3778"},
		},
		{
			name:  "slot recreated now at a lower position",
			cp:    cp,
			found: true,
			srv: with(func(s *Server) {
				s.SlotCreated = true
				s.SlotConfirmedFlush = 0x10
			}),
			err: ErrSlotMissing,
		},
		{
			name:     "slot ahead",
			cp:       cp,
			found:    true,
			srv:      with(func(s *Server) { s.SlotConfirmedFlush = cp.FlushLSN + 1 }),
			err:      ErrSlotAhead,
			mentions: []string{"1/16B3779", "1/16B3778", "remove the checkpoint file"},
		},
		{
			name:  "idle checkpoint: flush beyond the last commit",
			cp:    withCP(func(c *Checkpoint) { c.FlushLSN = 0x2_00000000 }),
			found: true,
			srv:   with(func(s *Server) { s.SlotConfirmedFlush = 0x2_00000000 }),
			want:  Start{From: 0x2_00000000, SkipThrough: cp.CommitLSN},
		},
		{
			name:     "database restored: WAL ends before the checkpoint",
			cp:       cp,
			found:    true,
			srv:      with(func(s *Server) { s.WALEnd = cp.FlushLSN - 1; s.SlotConfirmedFlush = cp.CommitLSN - 0x1000 }),
			err:      ErrRewound,
			mentions: []string{"1/16B3778", "1/16B3777", "restored from a backup", "remove the checkpoint file", "re-reads every published table"},
		},
		{
			name:  "WAL ends exactly at the checkpoint",
			cp:    cp,
			found: true,
			srv:   with(func(s *Server) { s.WALEnd = cp.FlushLSN }),
			want:  Start{From: cp.FlushLSN, SkipThrough: cp.CommitLSN},
		},
		{
			name:  "promoted after the checkpoint's position",
			cp:    cp,
			found: true,
			srv: with(func(s *Server) {
				s.Timeline = 3
				s.History = []TimelineSwitch{{Timeline: 1, End: cp.FlushLSN}, {Timeline: 2, End: 0x2_00000000}}
			}),
			want: Start{From: cp.FlushLSN, SkipThrough: cp.CommitLSN},
		},
		{
			name:  "promoted after the checkpoint, its copy of the slot behind it",
			cp:    cp,
			found: true,
			srv: with(func(s *Server) {
				s.Timeline = 2
				s.History = []TimelineSwitch{{Timeline: 1, End: cp.FlushLSN + 1}}
				s.SlotConfirmedFlush = cp.CommitLSN - 0x2000
			}),
			want: Start{From: cp.FlushLSN, SkipThrough: cp.CommitLSN},
		},
		{
			name:  "promoted exactly at the checkpoint, its copy of the slot behind it",
			cp:    cp,
			found: true,
			srv: with(func(s *Server) {
				s.Timeline = 2
				s.History = []TimelineSwitch{{Timeline: 1, End: cp.FlushLSN}}
				s.SlotConfirmedFlush = 0x100
			}),
			want: Start{From: cp.FlushLSN, SkipThrough: cp.CommitLSN},
		},
		{
			name:  "promoted one byte before the checkpoint",
			cp:    cp,
			found: true,
			srv: with(func(s *Server) {
				s.Timeline = 2
				s.History = []TimelineSwitch{{Timeline: 1, End: cp.FlushLSN - 1}}
				s.SlotConfirmedFlush = cp.CommitLSN
			}),
			err:      ErrRewound,
			mentions: []string{"forked from timeline 1 at 1/16B3777, before the checkpoint's position 1/16B3778"},
		},
		{
			name:  "promoted standby was behind the checkpoint",
			cp:    cp,
			found: true,
			srv: with(func(s *Server) {
				s.Timeline = 2
				s.History = []TimelineSwitch{{Timeline: 1, End: cp.FlushLSN - 0x100}}
			}),
			err:      ErrRewound,
			mentions: []string{"timeline 2 forked from timeline 1 at 1/16B3678", "1/16B3778", "failed over to a standby"},
		},
		{
			name:  "checkpoint's timeline not in the server's history",
			cp:    withCP(func(c *Checkpoint) { c.Timeline = 4 }),
			found: true,
			srv: with(func(s *Server) {
				s.Timeline = 5
				s.History = []TimelineSwitch{{Timeline: 1, End: 0x100}, {Timeline: 3, End: 0x2_00000000}}
			}),
			err:      ErrRewound,
			mentions: []string{"timeline 4, which is not in the history"},
		},
		{
			name:     "server on an older timeline",
			cp:       withCP(func(c *Checkpoint) { c.Timeline = 3 }),
			found:    true,
			srv:      srv,
			err:      ErrRewound,
			mentions: []string{"older timeline 1"},
		},
		{
			name:  "invalid checkpoint",
			cp:    withCP(func(c *Checkpoint) { c.FlushLSN = c.CommitLSN - 1 }),
			found: true,
			srv:   srv,
			err:   ErrInvalid,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Reconcile(tc.cp, tc.found, tc.srv)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Reconcile = %+v, %v; want %v", got, err, tc.err)
				}
				if got != (Start{}) {
					t.Fatalf("Reconcile returned %+v with an error", got)
				}
				for _, m := range tc.mentions {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("error %q does not mention %q", err, m)
					}
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Reconcile = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestHanded(t *testing.T) {
	cp := sampleCheckpoint() // timeline 1, flush 1/16B3778
	same := Server{SystemID: cp.SystemID, Database: cp.Database, Slot: cp.Slot, SlotExists: true, SlotConfirmedFlush: cp.FlushLSN,
		WALEnd: 0x1_02000000, Timeline: 1}
	promoted := same
	promoted.Timeline = 2
	promoted.History = []TimelineSwitch{{Timeline: 1, End: 0x1_01800000}}
	for _, tc := range []struct {
		name     string
		srv      Server
		reach    lsn.LSN
		err      error
		mentions []string
	}{
		{name: "nothing handed over", srv: same},
		{name: "same timeline, at the WAL end", srv: same, reach: 0x1_02000000},
		{name: "same timeline, past the WAL end", srv: same, reach: 0x1_02000001, err: ErrRewound,
			mentions: []string{"handed changes from WAL up to 1/2000001", "WAL ends at 1/2000000", "remove the checkpoint file"}},
		{name: "promoted after what was handed over", srv: promoted, reach: 0x1_017FFFFF},
		{name: "promoted exactly where what was handed over ends", srv: promoted, reach: 0x1_01800000},
		{name: "promoted one byte before its end", srv: promoted, reach: 0x1_01800001, err: ErrRewound,
			mentions: []string{"timeline 2 forked from timeline 1 at 1/1800000, before the end 1/1800001", "failed over to a standby"}},
		{name: "timeline not in the history", srv: func() Server { s := promoted; s.History = nil; return s }(), reach: 0x1_01000000,
			err: ErrRewound, mentions: []string{"timeline 1, which is not in the history"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Handed(cp, tc.srv, tc.reach)
			if tc.err == nil {
				if err != nil {
					t.Fatalf("Handed = %v", err)
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("Handed = %v; want %v", err, tc.err)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
	s := at("/var/lib/pgstream/cp.json")
	if err := s.Handed(cp, promoted, 0x1_01900000); !errors.Is(err, ErrRewound) || !strings.Contains(err.Error(), "remove /var/lib/pgstream/cp.json (") {
		t.Fatalf("Handed = %v; want ErrRewound naming the file", err)
	}
}
