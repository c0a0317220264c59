package pipeline

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/lsn"
)

// snapMark is a change to the durable snapshot state that takes effect once the batch seq (and every
// batch before it) is acknowledged by every sink: a table added to the snapshot, or a chunk done.
type snapMark struct {
	seq   uint64
	add   *checkpoint.TableSnapshot
	gen   lsn.LSN
	oid   uint32
	chunk uint32
}

// snapState is the snapshot record: the marks waiting for acknowledgement and the durable list the
// checkpoint holds. It is built with the pipeline and shared by the snapshot parts (which mark, read
// the list and compare the publication), the checkpointer (which saves it) and the session (which
// asks whether every snapshot is done). Safe for concurrent use: marks is guarded by marksMu, which
// the producers hold only to append; tables, published and pubChanged are guarded by saveMu, which
// a save holds while it writes the list and the position together. Nothing outside it touches its
// fields or its locks.
type snapState struct {
	marksMu sync.Mutex
	marks   []snapMark

	saveMu sync.Mutex
	tables []checkpoint.TableSnapshot
	// published holds the OIDs of the publication's tables taken into account (see
	// checkpoint.Checkpoint.Published); nil when not known. pubChanged asks for a save.
	published  map[uint32]bool
	pubChanged bool

	done atomic.Bool // the list became empty after having tables
}

// load sets the list and the published tables a run starts with, and returns the published tables
// as the checkpoint stores them. pubChanged asks for a save.
func (s *snapState) load(tables []checkpoint.TableSnapshot, published []uint32, pubChanged bool) []uint32 {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.tables = tables
	s.setPublished(published)
	s.pubChanged = pubChanged
	return s.publishedList()
}

// publishedList returns published as the checkpoint stores it. The caller holds saveMu.
func (s *snapState) publishedList() []uint32 {
	if s.published == nil {
		return nil
	}
	out := make([]uint32, 0, len(s.published))
	for oid := range s.published {
		out = append(out, oid)
	}
	slices.Sort(out)
	return out
}

// setPublished replaces the published tables. The caller holds saveMu.
func (s *snapState) setPublished(oids []uint32) {
	s.published = make(map[uint32]bool, len(oids))
	for _, oid := range oids {
		s.published[oid] = true
	}
}

// mark records m, to take effect once its batch is acknowledged.
func (s *snapState) mark(m snapMark) {
	s.marksMu.Lock()
	s.marks = append(s.marks, m)
	s.marksMu.Unlock()
}

// apply moves the marks of batches up to seq into tables, and reports the tables completed (nil when
// nothing changed, with changed false). The caller holds saveMu.
func (s *snapState) apply(seq uint64) (completed []string, changed bool) {
	s.marksMu.Lock()
	n := 0
	for n < len(s.marks) && s.marks[n].seq <= seq {
		n++
	}
	ready := append([]snapMark(nil), s.marks[:n]...)
	s.marks = append(s.marks[:0], s.marks[n:]...)
	s.marksMu.Unlock()
	changed = s.pubChanged
	s.pubChanged = false
	for _, m := range ready {
		changed = true
		if m.add != nil {
			s.tables = append(s.tables, m.add.Clone())
			if s.published != nil {
				s.published[m.add.OID] = true
			}
			continue
		}
		for i := range s.tables {
			t := &s.tables[i]
			if t.Gen != m.gen || t.OID != m.oid {
				continue
			}
			t.MarkDone(m.chunk)
			if t.Complete() {
				completed = append(completed, t.Name())
				s.tables = append(s.tables[:i], s.tables[i+1:]...)
			}
			break
		}
	}
	return completed, changed
}

// snapView is the record as a save sees it: valid only inside the write function given to save,
// which runs under the save lock.
type snapView struct {
	s *snapState
	// changed reports that the list or the published tables changed since the last save.
	changed bool
}

// tables returns the list of unfinished table snapshots; the caller must not keep it past write.
func (v snapView) tables() []checkpoint.TableSnapshot { return v.s.tables }

// published returns the published tables as the checkpoint stores them.
func (v snapView) published() []uint32 { return v.s.publishedList() }

// save applies the marks of the batches up to seq (acknowledged by every sink) and calls write with
// a consistent view of the record, under the save lock: the list and the position the caller saves
// with it are written together. When write succeeds it returns the tables the marks completed, and
// the record counts as done once its list became empty after having tables.
func (s *snapState) save(seq uint64, write func(v snapView) error) (completed []string, err error) {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	had := len(s.tables) > 0
	completed, changed := s.apply(seq)
	if err := write(snapView{s: s, changed: changed}); err != nil {
		return nil, err
	}
	if had && len(s.tables) == 0 {
		s.done.Store(true)
	}
	return completed, nil
}

// finished reports that the list of unfinished snapshots became empty after having tables.
func (s *snapState) finished() bool { return s.done.Load() }

// pending returns a copy of the durable list of unfinished table snapshots.
func (s *snapState) pending() []checkpoint.TableSnapshot {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	out := make([]checkpoint.TableSnapshot, len(s.tables))
	for i := range s.tables {
		out[i] = s.tables[i].Clone()
	}
	return out
}

// pendingCount returns how many table snapshots the durable list holds.
func (s *snapState) pendingCount() int {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	return len(s.tables)
}

// comparePublished takes the publication's tables as listed now: it forgets the tables that left
// the publication (asking for a save), so that adding one again snapshots it again, and returns
// the tables not taken into account yet.
func (s *snapState) comparePublished(tables []snapshot.Table) (joined []snapshot.Table) {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	current := make(map[uint32]bool, len(tables))
	for _, tb := range tables {
		current[tb.OID] = true
		if !s.published[tb.OID] {
			joined = append(joined, tb)
		}
	}
	for oid := range s.published {
		if !current[oid] {
			delete(s.published, oid)
			s.pubChanged = true
		}
	}
	return joined
}
