package pipeline

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/sinks"
)

// marksNow returns a copy of the marks waiting for acknowledgement.
func (s *snapState) marksNow() []snapMark {
	s.marksMu.Lock()
	defer s.marksMu.Unlock()
	return append([]snapMark(nil), s.marks...)
}

func TestSnapStateApply(t *testing.T) {
	tbl := checkpoint.TableSnapshot{Gen: 100, OID: 7, Schema: "public", Table: "t", Pages: 30, ChunkPages: 10}
	other := checkpoint.TableSnapshot{Gen: 200, OID: 7, Schema: "public", Table: "t", Pages: 10, ChunkPages: 10}
	var s snapState
	s.setPublished(nil)
	s.mark(snapMark{seq: 1, add: &tbl})
	s.mark(snapMark{seq: 2, gen: 100, oid: 7, chunk: 2})
	s.mark(snapMark{seq: 3, add: &other})
	s.mark(snapMark{seq: 4, gen: 100, oid: 7, chunk: 0})
	s.mark(snapMark{seq: 5, gen: 200, oid: 7, chunk: 0})
	s.mark(snapMark{seq: 6, gen: 100, oid: 7, chunk: 1})

	if done, changed := s.apply(0); changed || done != nil || len(s.tables) != 0 {
		t.Fatalf("apply(0) = %v, %v, tables %v", done, changed, s.tables)
	}
	if _, changed := s.apply(2); !changed || len(s.tables) != 1 || !s.tables[0].IsDone(2) || s.tables[0].IsDone(0) {
		t.Fatalf("apply(2): changed %v, tables %+v", changed, s.tables)
	}
	if !s.published[7] {
		t.Fatal("an added table is not in the published list")
	}
	// The re-snapshot (generation 200) of the same table is tracked on its own.
	done, _ := s.apply(5)
	if !reflect.DeepEqual(done, []string{"public.t"}) || len(s.tables) != 1 || s.tables[0].Gen != 100 {
		t.Fatalf("apply(5) completed %v, tables %+v", done, s.tables)
	}
	done, _ = s.apply(100)
	if !reflect.DeepEqual(done, []string{"public.t"}) || len(s.tables) != 0 || len(s.marks) != 0 {
		t.Fatalf("apply(100) completed %v, tables %+v, marks %v", done, s.tables, s.marks)
	}
	if _, changed := s.apply(100); changed {
		t.Fatal("nothing left to apply, yet changed")
	}
	s.pubChanged = true
	if _, changed := s.apply(100); !changed {
		t.Fatal("a change of the published list does not ask for a save")
	}
}

func TestWindowKeepsUnchangedRows(t *testing.T) {
	rows := func() *batch {
		b := newBatch()
		for i := 1; i <= 5; i++ {
			b.add(sinks.Event{Op: sinks.OpRead, Key: fmt.Appendf(nil, `{"id":%d}`, i), Value: fmt.Appendf(nil, "row %d", i)})
		}
		b.add(sinks.Event{Op: sinks.OpRead, Value: []byte("keyless")})
		return b
	}
	ids := func(b *batch) []string {
		var out []string
		for _, ev := range b.events {
			out = append(out, string(ev.Value))
		}
		return out
	}
	w := &window{keys: map[string]struct{}{`{"id":2}`: {}, `{"id":5}`: {}, `{"id":9}`: {}}}
	b := rows()
	w.keepUnchanged(b)
	if got, want := ids(b), []string{"row 1", "row 3", "row 4", "keyless"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	w.truncated = true
	b = rows()
	w.keepUnchanged(b)
	if len(b.events) != 0 {
		t.Fatalf("after a truncate in the window, kept %v", ids(b))
	}
}

func TestParseTextArray(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`{}`, nil},
		{`{public.orders}`, []string{"public.orders"}},
		{`{public.orders,customers}`, []string{"public.orders", "customers"}},
		{` { a , b } `, []string{"a", "b"}},
		{`{"public.odd, name",b}`, []string{"public.odd, name", "b"}},
		{`{"say \"hi\"","back\\slash","{braces}"}`, []string{`say "hi"`, `back\slash`, "{braces}"}},
		{`{a,NULL,"NULL"}`, []string{"a", "NULL"}},
	} {
		got, err := parseTextArray(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseTextArray(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`a,b`, `{"open}`, `{"a"b}`, `{`} {
		if got, err := parseTextArray(bad); err == nil {
			t.Errorf("parseTextArray(%q) = %q, want an error", bad, got)
		}
	}
}
