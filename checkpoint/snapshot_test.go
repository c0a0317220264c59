package checkpoint

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// snap returns a valid TableSnapshot of the given size with done ranges.
func snap(pages, chunkPages uint32, done ...ChunkRange) TableSnapshot {
	return TableSnapshot{Gen: 0x1_0000_0028, OID: 16384, Schema: "public", Table: "orders", Pages: pages, ChunkPages: chunkPages, Done: done}
}

func TestChunks(t *testing.T) {
	for _, tc := range []struct {
		pages, chunkPages, want uint32
	}{
		{pages: 0, chunkPages: 8, want: 1}, // empty table
		{pages: 1, chunkPages: 8, want: 1},
		{pages: 7, chunkPages: 8, want: 1},
		{pages: 8, chunkPages: 8, want: 1}, // exact multiples
		{pages: 16, chunkPages: 8, want: 2},
		{pages: 1000, chunkPages: 1, want: 1000},
		{pages: 9, chunkPages: 8, want: 2}, // remainders
		{pages: 17, chunkPages: 8, want: 3},
		{pages: 1000, chunkPages: 64, want: 16},
		{pages: math.MaxUint32, chunkPages: 1, want: math.MaxUint32}, // no overflow
		{pages: math.MaxUint32, chunkPages: 1 << 31, want: 2},
		{pages: math.MaxUint32 - 1, chunkPages: math.MaxUint32, want: 1},
		{pages: 100, chunkPages: 0, want: 1}, // invalid, but never a division by zero
	} {
		s := snap(tc.pages, tc.chunkPages)
		if got := s.Chunks(); got != tc.want {
			t.Errorf("Chunks(pages %d, chunk %d) = %d, want %d", tc.pages, tc.chunkPages, got, tc.want)
		}
	}
}

func TestPageRange(t *testing.T) {
	const all = math.MaxUint32
	for _, tc := range []struct {
		pages, chunkPages, i uint32
		start, end           uint32
		last                 bool
	}{
		{pages: 0, chunkPages: 8, i: 0, start: 0, end: all, last: true}, // empty table: one chunk reads all
		{pages: 20, chunkPages: 8, i: 0, start: 0, end: 8},
		{pages: 20, chunkPages: 8, i: 1, start: 8, end: 16},
		{pages: 20, chunkPages: 8, i: 2, start: 16, end: all, last: true},
		{pages: 16, chunkPages: 8, i: 1, start: 8, end: all, last: true}, // exact multiple
		{pages: 16, chunkPages: 8, i: 2, start: all, end: all},           // out of range: empty
		{pages: 16, chunkPages: 8, i: math.MaxUint32, start: all, end: all},
		{pages: math.MaxUint32, chunkPages: 1 << 31, i: 0, start: 0, end: 1 << 31},
		{pages: math.MaxUint32, chunkPages: 1 << 31, i: 1, start: 1 << 31, end: all, last: true}, // no overflow
	} {
		s := snap(tc.pages, tc.chunkPages)
		start, end, last := s.PageRange(tc.i)
		if start != tc.start || end != tc.end || last != tc.last {
			t.Errorf("PageRange(pages %d, chunk %d, i %d) = %d, %d, %v; want %d, %d, %v",
				tc.pages, tc.chunkPages, tc.i, start, end, last, tc.start, tc.end, tc.last)
		}
	}
}

// TestPageRangeCovers checks that the chunks of a table cover every page exactly once.
func TestPageRangeCovers(t *testing.T) {
	for _, pages := range []uint32{0, 1, 7, 8, 9, 63, 64, 65, 200} {
		s := snap(pages, 8)
		next := uint32(0)
		for i := range s.Chunks() {
			start, end, last := s.PageRange(i)
			if start != next {
				t.Fatalf("pages %d: chunk %d starts at %d, want %d", pages, i, start, next)
			}
			if last != (i == s.Chunks()-1) {
				t.Fatalf("pages %d: chunk %d of %d: last %v", pages, i, s.Chunks(), last)
			}
			next = end
		}
		if next != math.MaxUint32 {
			t.Fatalf("pages %d: chunks end at %d, not past every page", pages, next)
		}
	}
}

func TestMarkDone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		marks []uint32
		want  []ChunkRange
	}{
		{name: "none", want: nil},
		{name: "one", marks: []uint32{4}, want: []ChunkRange{{4, 5}}},
		{name: "in order", marks: []uint32{0, 1, 2, 3}, want: []ChunkRange{{0, 4}}},
		{name: "reverse order", marks: []uint32{3, 2, 1, 0}, want: []ChunkRange{{0, 4}}},
		{name: "gaps", marks: []uint32{9, 0, 5}, want: []ChunkRange{{0, 1}, {5, 6}, {9, 10}}},
		{name: "adjacent on the left", marks: []uint32{5, 6}, want: []ChunkRange{{5, 7}}},
		{name: "adjacent on the right", marks: []uint32{6, 5}, want: []ChunkRange{{5, 7}}},
		{name: "joins two ranges", marks: []uint32{1, 2, 4, 5, 3}, want: []ChunkRange{{1, 6}}},
		{name: "fills the first gap only", marks: []uint32{0, 2, 4, 1}, want: []ChunkRange{{0, 3}, {4, 5}}},
		{name: "duplicates", marks: []uint32{3, 3, 4, 3, 4, 2, 2}, want: []ChunkRange{{2, 5}}},
		{name: "inside a range", marks: []uint32{0, 1, 2, 1}, want: []ChunkRange{{0, 3}}},
		{name: "last chunk", marks: []uint32{15, 14, 0}, want: []ChunkRange{{0, 1}, {14, 16}}},
		{name: "out of order to complete", marks: []uint32{7, 3, 11, 0, 15, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14}, want: []ChunkRange{{0, 16}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := snap(1000, 64) // 16 chunks
			for _, i := range tc.marks {
				s.MarkDone(i)
				if !s.IsDone(i) {
					t.Fatalf("chunk %d not done after MarkDone", i)
				}
				if err := s.Validate(); err != nil {
					t.Fatalf("after MarkDone(%d): %v", i, err)
				}
			}
			if !slices.Equal(s.Done, tc.want) {
				t.Fatalf("Done = %v, want %v", s.Done, tc.want)
			}
		})
	}
}

// TestMarkDoneRandom marks the chunks of a table in random orders, with repeats, and compares every
// step with a plain set.
func TestMarkDoneRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		s := snap(uint32(1+rng.IntN(300)), uint32(1+rng.IntN(8)))
		n := s.Chunks()
		done := make([]bool, n)
		for !s.Complete() {
			i := uint32(rng.IntN(int(n)))
			s.MarkDone(i)
			done[i] = true
			if err := s.Validate(); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			var want []uint32
			for k := range n {
				if s.IsDone(k) != done[k] {
					t.Fatalf("round %d: IsDone(%d) = %v, want %v; Done %v", round, k, s.IsDone(k), done[k], s.Done)
				}
				if !done[k] {
					want = append(want, k)
				}
			}
			if got := s.Pending(); !slices.Equal(got, want) {
				t.Fatalf("round %d: Pending = %v, want %v; Done %v", round, got, want, s.Done)
			}
			if s.Complete() != (len(want) == 0) {
				t.Fatalf("round %d: Complete = %v with %d pending", round, s.Complete(), len(want))
			}
		}
	}
}

func TestMarkDoneOutOfRange(t *testing.T) {
	for _, i := range []uint32{16, 17, math.MaxUint32} {
		s := snap(1000, 64) // 16 chunks
		s.MarkDone(i)
		if err := s.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("MarkDone(%d) of 16 chunks: Validate = %v; want ErrInvalid", i, err)
		}
	}
}

func TestPendingComplete(t *testing.T) {
	for _, tc := range []struct {
		name     string
		s        TableSnapshot
		pending  []uint32
		complete bool
	}{
		{name: "nothing done", s: snap(1000, 64), pending: []uint32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}},
		{name: "empty table", s: snap(0, 64), pending: []uint32{0}},
		{name: "empty table done", s: snap(0, 64, ChunkRange{0, 1}), complete: true},
		{name: "gaps", s: snap(1000, 64, ChunkRange{0, 3}, ChunkRange{5, 6}, ChunkRange{10, 15}), pending: []uint32{3, 4, 6, 7, 8, 9, 15}},
		{name: "all but the first", s: snap(1000, 64, ChunkRange{1, 16}), pending: []uint32{0}},
		{name: "all but the last", s: snap(1000, 64, ChunkRange{0, 15}), pending: []uint32{15}},
		{name: "all", s: snap(1000, 64, ChunkRange{0, 16}), complete: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Pending(); !slices.Equal(got, tc.pending) {
				t.Errorf("Pending = %v, want %v", got, tc.pending)
			}
			if got := tc.s.Complete(); got != tc.complete {
				t.Errorf("Complete = %v, want %v", got, tc.complete)
			}
		})
	}
}

func TestValidateSnapshot(t *testing.T) {
	with := func(f func(*TableSnapshot)) TableSnapshot {
		s := snap(1000, 64) // 16 chunks
		f(&s)
		return s
	}
	for _, tc := range []struct {
		name string
		s    TableSnapshot
		ok   bool
		msg  string // part of the error
	}{
		{name: "nothing done", s: snap(1000, 64), ok: true},
		{name: "empty table", s: snap(0, 64), ok: true},
		{name: "empty table done", s: snap(0, 64, ChunkRange{0, 1}), ok: true},
		{name: "ranges", s: snap(1000, 64, ChunkRange{0, 3}, ChunkRange{5, 6}, ChunkRange{10, 16}), ok: true},
		{name: "complete", s: snap(1000, 64, ChunkRange{0, 16}), ok: true},
		{name: "no generation", s: with(func(s *TableSnapshot) { s.Gen = 0 }), msg: "generation"},
		{name: "no OID", s: with(func(s *TableSnapshot) { s.OID = 0 }), msg: "OID"},
		{name: "no schema", s: with(func(s *TableSnapshot) { s.Schema = "" }), msg: "schema"},
		{name: "no table", s: with(func(s *TableSnapshot) { s.Table = "" }), msg: "name"},
		{name: "no chunk size", s: with(func(s *TableSnapshot) { s.ChunkPages = 0 }), msg: "chunk size"},
		{name: "empty range", s: snap(1000, 64, ChunkRange{3, 3}), msg: "[{3 3}]"},
		{name: "reversed range", s: snap(1000, 64, ChunkRange{4, 3}), msg: "[{4 3}]"},
		{name: "beyond the last chunk", s: snap(1000, 64, ChunkRange{10, 17}), msg: "within 16 chunks"},
		{name: "far beyond", s: snap(1000, 64, ChunkRange{100, 200})},
		{name: "empty table, two chunks", s: snap(0, 64, ChunkRange{0, 2})},
		{name: "overlapping", s: snap(1000, 64, ChunkRange{0, 5}, ChunkRange{4, 8})},
		{name: "contained", s: snap(1000, 64, ChunkRange{0, 8}, ChunkRange{2, 3})},
		{name: "duplicate", s: snap(1000, 64, ChunkRange{2, 3}, ChunkRange{2, 3})},
		{name: "adjacent, not merged", s: snap(1000, 64, ChunkRange{0, 3}, ChunkRange{3, 5})},
		{name: "unsorted", s: snap(1000, 64, ChunkRange{5, 6}, ChunkRange{0, 3})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if tc.ok {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), strconv.Quote(tc.s.Name())) {
				t.Fatalf("Validate = %v; want ErrInvalid naming the table and %q", err, tc.msg)
			}
		})
	}

	// Checkpoint.Validate checks every snapshot.
	cp := sampleCheckpoint()
	cp.Snapshot = []TableSnapshot{snap(1000, 64), snap(1000, 64, ChunkRange{0, 17})}
	if err := cp.Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Checkpoint.Validate = %v; want ErrInvalid", err)
	}
}

func TestSnapshotClone(t *testing.T) {
	s := snap(1000, 64, ChunkRange{0, 3}, ChunkRange{5, 6})
	c := s.Clone()
	c.MarkDone(3)
	c.MarkDone(4)
	if want := []ChunkRange{{0, 3}, {5, 6}}; !slices.Equal(s.Done, want) {
		t.Fatalf("marking the clone changed the original: %v", s.Done)
	}
	if want := []ChunkRange{{0, 6}}; !slices.Equal(c.Done, want) {
		t.Fatalf("clone Done = %v, want %v", c.Done, want)
	}
	if empty := snap(8, 8); empty.Clone().Done != nil {
		t.Fatalf("clone of no ranges is not nil")
	}
	if got := s.Name(); got != "public.orders" {
		t.Fatalf("Name = %q", got)
	}
}
