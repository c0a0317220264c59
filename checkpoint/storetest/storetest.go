// Package storetest states the contract of a checkpoint store (checkpoint.Store) once, as a suite
// that every store runs against a place of its own, as sinks/sinktest does for sinks. A store's
// test supplies a Harness: how to get a fresh place, how to open a store on it, and optionally
// how to make its Saves fail.
//
// What the suite checks:
//   - a store on a new place loads as not found, without an error;
//   - Save then Load round-trips every field of checkpoint.Checkpoint: identity, timeline,
//     positions, the time it was taken, the unfinished table snapshots with their chunks, and the
//     published tables (nil, empty and listed kept apart);
//   - a later Save replaces the earlier one, and a Save of an invalid checkpoint changes nothing;
//   - a store keeps no reference to what it was given or returned;
//   - a store opened again on the same place (a restart) loads what was saved;
//   - Reconcile and Handed apply checkpoint.Reconcile and checkpoint.Handed, naming the store;
//   - concurrent Saves leave one of the saved checkpoints whole;
//   - a failing Save leaves the previous checkpoint loadable, and, unless it was fatal
//     (checkpoint.ErrFatal), the store saves again once the fault is gone.
//
// It is for tests only: it imports package testing.
package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/lsn"
)

// Harness connects the suite to one store type.
type Harness struct {
	// Place returns a new, empty place for a store (a file's path, a table's name) and the text
	// by which the store names it in Reconcile's and Handed's errors. Required.
	Place func(t *testing.T) (place, name string)
	// Open opens a store on place. A store opened on a place where an earlier one saved (a
	// restart) loads what that one saved. Required.
	Open func(t *testing.T, place string) checkpoint.Store
	// OpenFaulty opens a store on place whose Saves fail while fail returns true. Nil: the store
	// cannot be made to fail, and that check is skipped with a reason.
	OpenFaulty func(t *testing.T, place string, fail func() bool) checkpoint.Store
}

// Run runs the suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, h) })
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, h) })
	t.Run("Replace", func(t *testing.T) { testReplace(t, h) })
	t.Run("Invalid", func(t *testing.T) { testInvalid(t, h) })
	t.Run("NoAliasing", func(t *testing.T) { testNoAliasing(t, h) })
	t.Run("Restart", func(t *testing.T) { testRestart(t, h) })
	t.Run("NamesItself", func(t *testing.T) { testNames(t, h) })
	t.Run("ConcurrentSaves", func(t *testing.T) { testConcurrent(t, h) })
	t.Run("FailedSave", func(t *testing.T) { testFailedSave(t, h) })
}

// Sample returns a checkpoint with every field set: two unfinished table snapshots (one with
// chunks done, one without) and a publication of three tables.
func Sample() checkpoint.Checkpoint {
	return checkpoint.Checkpoint{
		SystemID:  "7301234567890123456",
		Timeline:  3,
		Database:  "app",
		Slot:      "pgstream",
		CommitLSN: 0x1_016B3748,
		FlushLSN:  0x1_016B3778,
		UpdatedAt: time.Date(2026, 11, 23, 21, 0, 0, 123456789, time.UTC),
		Snapshot: []checkpoint.TableSnapshot{
			{Gen: 0x1_016B0000, OID: 16384, Schema: "public", Table: "orders", Pages: 1000, ChunkPages: 64,
				Done: []checkpoint.ChunkRange{{From: 0, To: 3}, {From: 5, To: 6}, {From: 15, To: 16}}},
			{Gen: 0x1_016B0000, OID: 16390, Schema: "sales", Table: "line \"items\" ✓", Pages: 0, ChunkPages: 64},
		},
		Published: []uint32{16384, 16390, 16402},
	}
}

// equal reports whether got is want as Load must return it: UpdatedAt the same instant, an empty
// snapshot list or chunk list equal to none, Published exactly (nil is not empty).
func equal(got, want checkpoint.Checkpoint) bool {
	if !got.UpdatedAt.Equal(want.UpdatedAt) || (got.Published == nil) != (want.Published == nil) {
		return false
	}
	norm := func(c checkpoint.Checkpoint) checkpoint.Checkpoint {
		c.UpdatedAt = time.Time{}
		if len(c.Snapshot) == 0 {
			c.Snapshot = nil
		}
		c.Snapshot = append([]checkpoint.TableSnapshot(nil), c.Snapshot...)
		for i := range c.Snapshot {
			if len(c.Snapshot[i].Done) == 0 {
				c.Snapshot[i].Done = nil
			}
		}
		if c.Published != nil && len(c.Published) == 0 {
			c.Published = []uint32{}
		}
		return c
	}
	return reflect.DeepEqual(norm(got), norm(want))
}

func open(t *testing.T, h Harness) (checkpoint.Store, string, string) {
	t.Helper()
	place, name := h.Place(t)
	return h.Open(t, place), place, name
}

func mustSave(t *testing.T, s checkpoint.Store, cp checkpoint.Checkpoint) {
	t.Helper()
	if err := s.Save(cp); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

// mustLoad loads a checkpoint that must be there and equal want.
func mustLoad(t *testing.T, what string, s checkpoint.Store, want checkpoint.Checkpoint) {
	t.Helper()
	got, found, err := s.Load()
	if err != nil || !found {
		t.Fatalf("%s: Load = found %v, %v", what, found, err)
	}
	if !equal(got, want) {
		t.Fatalf("%s: Load =\n %+v\nwant\n %+v", what, got, want)
	}
}

func testNotFound(t *testing.T, h Harness) {
	s, _, _ := open(t, h)
	if cp, found, err := s.Load(); err != nil || found {
		t.Fatalf("Load on a new place = %+v, found %v, %v; want not found and no error", cp, found, err)
	}
}

func testRoundTrip(t *testing.T, h Harness) {
	s, _, _ := open(t, h)
	full := Sample()
	mustSave(t, s, full)
	mustLoad(t, "every field", s, full)

	// The smallest checkpoint: no snapshot, publication not known.
	bare := checkpoint.Checkpoint{Slot: "s", UpdatedAt: time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)}
	mustSave(t, s, bare)
	mustLoad(t, "no snapshot, publication unknown", s, bare)

	// A known empty publication is not an unknown one.
	empty := Sample()
	empty.Snapshot, empty.Published = nil, []uint32{}
	mustSave(t, s, empty)
	mustLoad(t, "an empty publication", s, empty)

	// Extreme values.
	big := Sample()
	big.Timeline, big.CommitLSN, big.FlushLSN = 1<<31-1, lsn.LSN(1<<64-2), lsn.LSN(1<<64-1)
	big.Snapshot[0].Pages, big.Snapshot[0].ChunkPages = 1<<32-1, 1
	big.Snapshot[0].Done = []checkpoint.ChunkRange{{From: 0, To: 1<<32 - 1}}
	big.UpdatedAt = time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600))
	mustSave(t, s, big)
	mustLoad(t, "extreme values", s, big)
}

func testReplace(t *testing.T, h Harness) {
	s, _, _ := open(t, h)
	first := Sample()
	mustSave(t, s, first)
	second := Sample()
	second.CommitLSN, second.FlushLSN, second.Timeline = 0x2_0000_0000, 0x2_0000_0010, 4
	second.Snapshot = second.Snapshot[1:]
	second.Snapshot[0].Done = []checkpoint.ChunkRange{{From: 0, To: 1}}
	second.Published = append(second.Published, 17000)
	second.UpdatedAt = first.UpdatedAt.Add(time.Second)
	mustSave(t, s, second)
	mustLoad(t, "after a second Save", s, second)
}

func testInvalid(t *testing.T, h Harness) {
	s, _, _ := open(t, h)
	good := Sample()
	mustSave(t, s, good)
	for name, bad := range map[string]func(*checkpoint.Checkpoint){
		"no slot":        func(c *checkpoint.Checkpoint) { c.Slot = "" },
		"flush < commit": func(c *checkpoint.Checkpoint) { c.FlushLSN = c.CommitLSN - 1 },
		"chunks overlap": func(c *checkpoint.Checkpoint) {
			c.Snapshot[0].Done = append(c.Snapshot[0].Done, checkpoint.ChunkRange{From: 15, To: 17})
		},
		"chunk past last": func(c *checkpoint.Checkpoint) { c.Snapshot[1].Done = []checkpoint.ChunkRange{{From: 1, To: 2}} },
	} {
		cp := Sample()
		bad(&cp)
		if err := s.Save(cp); !errors.Is(err, checkpoint.ErrInvalid) {
			t.Errorf("Save with %s = %v; want ErrInvalid", name, err)
		}
	}
	mustLoad(t, "after refused Saves", s, good)
}

func testNoAliasing(t *testing.T, h Harness) {
	s, _, _ := open(t, h)
	cp := Sample()
	mustSave(t, s, cp)
	cp.Snapshot[0].Done[0].To = 4
	cp.Snapshot[0].Table = "changed"
	cp.Published[0] = 1
	mustLoad(t, "after the saved value changed", s, Sample())
	got, _, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	got.Snapshot[0].Done[0].To = 4
	got.Published[0] = 1
	mustLoad(t, "after the loaded value changed", s, Sample())
}

func testRestart(t *testing.T, h Harness) {
	s, place, _ := open(t, h)
	cp := Sample()
	mustSave(t, s, cp)
	mustLoad(t, "a store opened again on the same place", h.Open(t, place), cp)
	next := Sample()
	next.FlushLSN++
	mustSave(t, h.Open(t, place), next)
	mustLoad(t, "the first store, after another saved", s, next)
}

func testNames(t *testing.T, h Harness) {
	s, _, name := open(t, h)
	cp := Sample()
	srv := checkpoint.Server{SystemID: cp.SystemID, Database: cp.Database, Slot: cp.Slot, SlotExists: true,
		SlotConfirmedFlush: cp.FlushLSN, WALEnd: cp.FlushLSN + 100, Timeline: cp.Timeline}
	if start, err := s.Reconcile(cp, true, srv); err != nil || start.From != cp.FlushLSN || start.SkipThrough != cp.CommitLSN {
		t.Fatalf("Reconcile of a matching checkpoint = %+v, %v", start, err)
	}
	if start, err := s.Reconcile(checkpoint.Checkpoint{}, false, srv); err != nil || !start.Fresh {
		t.Fatalf("Reconcile without a checkpoint = %+v, %v", start, err)
	}
	ahead := srv
	ahead.SlotConfirmedFlush = cp.FlushLSN + 1
	if _, err := s.Reconcile(cp, true, ahead); !errors.Is(err, checkpoint.ErrSlotAhead) || !strings.Contains(err.Error(), name) {
		t.Errorf("Reconcile with the slot ahead = %v; want ErrSlotAhead naming %q", err, name)
	}
	other := srv
	other.Database = "other"
	if _, err := s.Reconcile(cp, true, other); !errors.Is(err, checkpoint.ErrMismatch) || !strings.Contains(err.Error(), name) {
		t.Errorf("Reconcile for another database = %v; want ErrMismatch naming %q", err, name)
	}
	if err := s.Handed(cp, srv, srv.WALEnd); err != nil {
		t.Errorf("Handed up to the WAL end = %v", err)
	}
	if err := s.Handed(cp, srv, srv.WALEnd+1); !errors.Is(err, checkpoint.ErrRewound) || !strings.Contains(err.Error(), name) {
		t.Errorf("Handed past the WAL end = %v; want ErrRewound naming %q", err, name)
	}
}

func testConcurrent(t *testing.T, h Harness) {
	s, _, _ := open(t, h)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cp := Sample()
			cp.FlushLSN += lsn.LSN(i)
			errs[i] = s.Save(cp)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Saves: %v", err)
	}
	got, found, err := s.Load()
	if err != nil || !found {
		t.Fatalf("Load = found %v, %v", found, err)
	}
	want := Sample()
	if d := got.FlushLSN - want.FlushLSN; got.FlushLSN < want.FlushLSN || d >= n {
		t.Fatalf("Load after concurrent Saves has flush %s, none of the saved ones", got.FlushLSN)
	}
	want.FlushLSN = got.FlushLSN
	if !equal(got, want) {
		t.Fatalf("Load after concurrent Saves = %+v, a mix", got)
	}
}

func testFailedSave(t *testing.T, h Harness) {
	if h.OpenFaulty == nil {
		t.Skip("the store cannot be made to fail (Harness.OpenFaulty is nil)")
	}
	place, _ := h.Place(t)
	var mu sync.Mutex
	failing := false
	setFail := func(v bool) { mu.Lock(); failing = v; mu.Unlock() }
	s := h.OpenFaulty(t, place, func() bool { mu.Lock(); defer mu.Unlock(); return failing })
	before := Sample()
	mustSave(t, s, before)

	after := Sample()
	after.CommitLSN, after.FlushLSN = 0x3_0000_0000, 0x3_0000_0000
	after.Snapshot = nil
	setFail(true)
	err := s.Save(after)
	if err == nil {
		t.Fatal("Save succeeded while the store was failing")
	}
	mustLoad(t, fmt.Sprintf("after a failed Save (%v)", err), s, before)
	mustLoad(t, "a store opened again after a failed Save", h.Open(t, place), before)

	setFail(false)
	if errors.Is(err, checkpoint.ErrFatal) {
		if err := s.Save(after); !errors.Is(err, checkpoint.ErrFatal) {
			t.Fatalf("Save after a fatal failure = %v; want ErrFatal again", err)
		}
		return
	}
	mustSave(t, s, after)
	mustLoad(t, "after the fault went away", s, after)
}
