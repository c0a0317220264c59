package checkpoint

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/pgstream/pgstream/lsn"
)

// TableSnapshot is the durable progress of one table's snapshot: which of its chunks every sink
// holds. A table is split into chunks of ChunkPages heap pages by ctid; chunk i covers pages
// [i*ChunkPages, (i+1)*ChunkPages), and the last chunk also every page after it, so rows in pages
// added after planning are read too.
//
// A TableSnapshot is not safe for concurrent use. Its methods other than MarkDone only read it; to
// hand one to another goroutine while still marking chunks, pass a Clone.
type TableSnapshot struct {
	// Gen is the snapshot's generation: the slot's consistent point for the initial snapshot, or the
	// commit LSN of the request for an online re-snapshot. It is part of every row's event id, and
	// never zero.
	Gen lsn.LSN
	// OID, Schema and Table name the table; the OID guards against a table dropped and recreated
	// under the same name while the snapshot is unfinished.
	OID    uint32
	Schema string
	Table  string
	// Pages is the table's size in pages when the snapshot was planned; ChunkPages (> 0) the size of
	// a chunk.
	Pages      uint32
	ChunkPages uint32
	// Done lists the chunks every sink holds, as sorted, disjoint, non-adjacent half-open ranges of
	// chunk indexes.
	Done []ChunkRange
}

// ChunkRange is the half-open range [From, To) of chunk indexes.
type ChunkRange struct {
	From, To uint32
}

// Chunks returns the number of chunks of t: at least one, even for an empty table (or a ChunkPages
// of zero, which Validate rejects).
func (t *TableSnapshot) Chunks() uint32 {
	if t.ChunkPages == 0 || t.Pages == 0 {
		return 1
	}
	n := t.Pages / t.ChunkPages
	if t.Pages%t.ChunkPages != 0 {
		n++
	}
	return n
}

// PageRange returns the pages of chunk i, [start, end). last reports that the chunk is the last one:
// it reads every page from start on, so end is then math.MaxUint32, past every block number. For an
// index i at or beyond Chunks() the range is empty, with start and end both math.MaxUint32.
func (t *TableSnapshot) PageRange(i uint32) (start, end uint32, last bool) {
	n := t.Chunks()
	if i >= n {
		return math.MaxUint32, math.MaxUint32, false
	}
	// i < n, so i*ChunkPages < Pages (or is 0 for a single chunk): no overflow.
	start = i * t.ChunkPages
	if i == n-1 {
		return start, math.MaxUint32, true
	}
	return start, start + t.ChunkPages, false
}

// IsDone reports whether chunk i is done.
func (t *TableSnapshot) IsDone(i uint32) bool {
	k := t.search(i)
	return k < len(t.Done) && t.Done[k].From <= i && i < t.Done[k].To
}

// search returns the index of the first range of Done that ends at or after i: the only range that can
// hold i or end right before it.
func (t *TableSnapshot) search(i uint32) int {
	return sort.Search(len(t.Done), func(k int) bool { return t.Done[k].To >= i })
}

// MarkDone records chunk i as done, keeping Done sorted and merged. Marking a chunk twice changes
// nothing. i must be below Chunks(): an index out of range is recorded all the same, and Validate
// reports it.
func (t *TableSnapshot) MarkDone(i uint32) {
	k := t.search(i)
	if k == len(t.Done) {
		t.Done = append(t.Done, ChunkRange{From: i, To: i + 1})
		return
	}
	r := &t.Done[k]
	switch {
	case r.From <= i && i < r.To:
		// Already done.
	case r.To == i:
		// Extends range k; the next range starts after i, maybe right after it.
		r.To = i + 1
		if k+1 < len(t.Done) && t.Done[k+1].From == r.To {
			r.To = t.Done[k+1].To
			t.Done = slices.Delete(t.Done, k+1, k+2)
		}
	case r.From == i+1:
		// Range k starts right after i; range k-1 ends before i-1.
		r.From = i
	default:
		t.Done = slices.Insert(t.Done, k, ChunkRange{From: i, To: i + 1})
	}
}

// Pending returns the indexes of the chunks not done yet, in order.
func (t *TableSnapshot) Pending() []uint32 {
	n := t.Chunks()
	var out []uint32
	next := uint32(0)
	for _, r := range t.Done {
		for ; next < min(r.From, n); next++ {
			out = append(out, next)
		}
		next = max(next, r.To)
	}
	for ; next < n; next++ {
		out = append(out, next)
	}
	return out
}

// Complete reports whether every chunk is done.
func (t *TableSnapshot) Complete() bool {
	return len(t.Done) == 1 && t.Done[0].From == 0 && t.Done[0].To >= t.Chunks()
}

// Name returns schema.table.
func (t *TableSnapshot) Name() string { return t.Schema + "." + t.Table }

// Validate reports a TableSnapshot that cannot describe real progress.
func (t *TableSnapshot) Validate() error {
	if t.Gen == 0 || t.OID == 0 || t.Schema == "" || t.Table == "" || t.ChunkPages == 0 {
		return fmt.Errorf("%w: snapshot of %q (OID %d): generation, table OID, schema, name and chunk size are required",
			ErrInvalid, t.Name(), t.OID)
	}
	n := t.Chunks()
	for i, r := range t.Done {
		if r.From >= r.To || r.To > n || (i > 0 && r.From <= t.Done[i-1].To) {
			return fmt.Errorf("%w: snapshot of %q: done chunks %v are not sorted, disjoint, non-adjacent ranges within %d chunks",
				ErrInvalid, t.Name(), t.Done, n)
		}
	}
	return nil
}

// Clone returns a deep copy of t.
func (t TableSnapshot) Clone() TableSnapshot {
	t.Done = slices.Clone(t.Done)
	return t
}
