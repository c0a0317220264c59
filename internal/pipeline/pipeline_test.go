package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
)

func TestFilter(t *testing.T) {
	for _, tc := range []struct {
		include, exclude []string
		schema, table    string
		want             bool
	}{
		{nil, nil, "public", "t", true},
		{[]string{"t"}, nil, "public", "t", true},
		{[]string{"t"}, nil, "other", "t", false},
		{[]string{"public.*"}, []string{"public.audit_*"}, "public", "audit_log", false},
		{[]string{"public.*"}, []string{"public.audit_*"}, "public", "orders", true},
		{nil, []string{"*.secret"}, "hr", "secret", false},
		{nil, []string{"*.secret"}, "hr", "salary", true},
		{[]string{"public.t"}, nil, "", "", true}, // messages always pass
	} {
		f, err := NewFilter(tc.include, tc.exclude)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Passes(tc.schema, tc.table); got != tc.want {
			t.Errorf("include %v exclude %v: %s.%s = %v, want %v", tc.include, tc.exclude, tc.schema, tc.table, got, tc.want)
		}
	}
	for _, bad := range []string{"", "public.[", "  "} {
		if _, err := NewFilter([]string{bad}, nil); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

func TestBatchCopiesEventsOnce(t *testing.T) {
	b := newBatch()
	scratchKey, scratchVal := []byte(`{"id":1}`), []byte(`{"op":"c"}`)
	b.add(sinks.Event{Op: sinks.OpCreate, Key: scratchKey, Value: scratchVal})
	b.add(sinks.Event{Op: sinks.OpMessage, Value: []byte(`{"op":"m"}`)})
	big := bytes.Repeat([]byte("x"), arenaChunk+10)
	b.add(sinks.Event{Op: sinks.OpCreate, Value: big})
	// The encoder reuses its buffers: the batch must not see later writes to them.
	copy(scratchKey, "XXXXXXXX")
	copy(scratchVal, "YYYYYYYYYY")
	if string(b.events[0].Key) != `{"id":1}` || string(b.events[0].Value) != `{"op":"c"}` {
		t.Fatalf("event aliases the encoder's buffer: %s %s", b.events[0].Key, b.events[0].Value)
	}
	if b.events[1].Key != nil {
		t.Fatalf("nil key became %q", b.events[1].Key)
	}
	if !bytes.Equal(b.events[2].Value, big) {
		t.Fatal("large event corrupted")
	}
	// Appending to a returned slice must not overwrite the next event.
	_ = append(b.events[0].Key, "zzzz"...)
	if string(b.events[0].Value) != `{"op":"c"}` {
		t.Fatal("events share capacity")
	}
	if b.bytes != len(`{"id":1}`)+len(`{"op":"c"}`)+len(`{"op":"m"}`)+len(big) {
		t.Fatalf("bytes = %d", b.bytes)
	}
	b.refs.Store(1)
	b.release()
}

type recordingSink struct {
	writes [][]string
	fail   error
}

func (s *recordingSink) Write(_ context.Context, b *sinks.Batch) error {
	if s.fail != nil {
		return s.fail
	}
	var ids []string
	for i := range b.Events {
		ids = append(ids, b.Events[i].ID()+"@"+b.Events[i].Table)
	}
	s.writes = append(s.writes, ids)
	return nil
}
func (s *recordingSink) Close() error { return nil }

func TestWorkerMergesFiltersAndAcksInOrder(t *testing.T) {
	tr := checkpoint.NewTracker(1, checkpoint.Position{})
	f, _ := NewFilter(nil, []string{"skip"})
	rs := &recordingSink{}
	w := newWorker(0, SinkSpec{Name: "r", Sink: rs, Filter: f}, tr, 3, observers{}, nil)
	mk := func(commit lsn.LSN, tables ...string) *batch {
		b := newBatch()
		for i, tb := range tables {
			b.add(sinks.Event{Schema: "public", Table: tb, CommitLSN: commit, Seq: uint32(i), Value: []byte("{}")})
		}
		b.pos = checkpoint.Position{CommitLSN: commit, EndLSN: commit + 1}
		b.refs.Store(1)
		b.seq = tr.Add(b.pos, b.bytes)
		return b
	}
	w.push(mk(10, "a", "skip"))
	w.push(mk(20, "b"))
	w.push(mk(30, "c", "d"))
	w.finish()
	if err := w.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(rs.writes)
	want := "[[0/A/0@a 0/14/0@b] [0/1E/0@c 0/1E/1@d]]"
	if got != want {
		t.Fatalf("writes = %s, want %s", got, want)
	}
	if p := tr.Acked(); p.CommitLSN != 30 || p.EndLSN != 31 {
		t.Fatalf("acked = %+v", p)
	}
}

func TestWorkerFailureIsNotAcked(t *testing.T) {
	tr := checkpoint.NewTracker(1, checkpoint.Position{})
	boom := errors.New("broker down")
	w := newWorker(0, SinkSpec{Name: "r", Sink: &recordingSink{fail: boom}}, tr, 100, observers{}, nil)
	b := newBatch()
	b.add(sinks.Event{Table: "t", Value: []byte("{}")})
	b.pos = checkpoint.Position{CommitLSN: 5, EndLSN: 6}
	b.refs.Store(1)
	b.seq = tr.Add(b.pos, b.bytes)
	w.push(b)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := w.run(ctx); !errors.Is(err, boom) {
		t.Fatalf("run = %v", err)
	}
	if p := tr.Acked(); p.CommitLSN != 0 {
		t.Fatalf("a failed write moved the position to %+v", p)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.MaxBatchEvents != 4096 || c.MaxInFlightBytes == 0 || c.CheckpointInterval != time.Second {
		t.Fatalf("defaults not applied: %+v", c)
	}
	bad := Config{MaxInFlightBytes: 10, MaxBatchBytes: 100}
	if err := bad.Validate(); err == nil {
		t.Fatal("in-flight below batch size accepted")
	}
}

func TestBatchReusesItsStorage(t *testing.T) {
	b := &batch{}
	val := bytes.Repeat([]byte("v"), 1000)
	for i := 0; i < 200; i++ { // about three chunks
		b.add(sinks.Event{Value: val})
	}
	chunks := len(b.chunks)
	b.reset()
	allocs := testing.AllocsPerRun(20, func() {
		for i := 0; i < 200; i++ {
			b.add(sinks.Event{Value: val})
		}
		b.reset()
	})
	if allocs > 0 {
		t.Fatalf("refilling a recycled batch allocated %.0f times (it held %d chunks)", allocs, chunks)
	}
	// Events of one fill never overlap.
	for i := 0; i < 200; i++ {
		b.add(sinks.Event{Value: []byte(fmt.Sprintf("%0999d", i))})
	}
	for i, ev := range b.events {
		if string(ev.Value) != fmt.Sprintf("%0999d", i) {
			t.Fatalf("event %d overwritten", i)
		}
	}
}
