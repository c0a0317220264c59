// Package sinktest states the contract of a sink (package sinks) once, as a suite that every sink
// runs against a destination of its own, as testing/fstest.TestFS does for file systems. A sink's
// test supplies a Harness: how to open a sink on a fresh destination and how to read back what the
// destination holds.
//
// What the suite checks:
//   - every operation and value round-trips: each event is read back with its id, its value byte
//     for byte, and its key where the destination keeps one;
//   - the events of one key are read back in the order they were written;
//   - a batch is readable once Write returned nil for it;
//   - a destination that refuses writes makes Write return an error, never nil;
//   - Close keeps what was acknowledged, and a Write after Close fails;
//   - a batch written again by a new sink (redelivery after a crash) leaves each event once
//     (ExactlyOnce), or at least once with the first copies in order (AtLeastOnce).
//
// It is for tests only: it imports package testing.
package sinktest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
)

// Delivery is what a sink promises when a batch is written again after a crash.
type Delivery int

const (
	// AtLeastOnce: every event is read back at least once; duplicates carry the same id.
	AtLeastOnce Delivery = iota
	// ExactlyOnce: every event is read back exactly once, however often it was written.
	ExactlyOnce
)

// Record is one event as the destination holds it.
type Record struct {
	ID    string // the event id the destination carries (a header, or the envelope's "id")
	Key   []byte // the key the destination carries; nil where it keeps none
	Value []byte // the event's value as written
}

// Harness connects the suite to one sink type.
type Harness struct {
	// Delivery is what a redelivered batch leaves.
	Delivery Delivery
	// KeepsKeys reports that Read returns each event's key.
	KeepsKeys bool
	// New returns a fresh destination for one subtest, and a function that opens a sink on it: each
	// call opens a new sink writing to the same destination.
	New func(t *testing.T) (open func() sinks.Sink, read func() []Record)
	// Refuse makes the destination open refuses writes until the returned function is called. Nil:
	// the sink cannot be made to fail, and that check is skipped with a reason.
	Refuse func(t *testing.T) (restore func())
}

// Run runs the suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Run("RoundTrip", func(t *testing.T) { roundTrip(t, h) })
	t.Run("PerKeyOrder", func(t *testing.T) { perKeyOrder(t, h) })
	t.Run("AcknowledgedIsReadable", func(t *testing.T) { acknowledgedIsReadable(t, h) })
	t.Run("RefusalIsAnError", func(t *testing.T) { refusalIsAnError(t, h) })
	t.Run("CloseKeepsWhatWasAcknowledged", func(t *testing.T) { closeKeeps(t, h) })
	t.Run("Redelivery", func(t *testing.T) { redelivery(t, h) })
}

const writeTimeout = 60 * time.Second

func write(t *testing.T, s sinks.Sink, evs []sinks.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := s.Write(ctx, &sinks.Batch{Events: evs}); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func closeSink(t *testing.T, s sinks.Sink) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// event makes a row event of table t, key id, version v, committed at commit as the seq-th event.
func event(op sinks.Op, table string, id, v int, commit lsn.LSN, seq uint32, pad string) sinks.Event {
	ev := sinks.Event{Op: op, Schema: "public", Table: table, LSN: commit - 0x100 + lsn.LSN(seq), CommitLSN: commit, Seq: seq, Xid: 700}
	if id >= 0 {
		ev.Key = fmt.Appendf(nil, `{"id":%d}`, id)
	}
	return withValue(ev, fmt.Sprintf(`"key":%d,"v":%d,"pad":%q`, id, v, pad))
}

// withValue sets ev's value to a JSON envelope holding its id and op, and the given fields.
func withValue(ev sinks.Event, fields string) sinks.Event {
	ev.Value = fmt.Appendf(nil, `{"id":%q,"op":%q,"source":{"schema":%q,"table":%q},%s}`, ev.ID(), ev.Op.String(), ev.Schema, ev.Table, fields)
	return ev
}

// everyOp is one transaction holding each kind of event, with values that are hard to carry:
// escapes, non-ASCII text, an empty key object, a large value.
func everyOp(commit lsn.LSN) []sinks.Event {
	big := strings.Repeat("0123456789abcdef", 4096) // 64 KiB
	begin := withValue(sinks.Event{Op: sinks.OpBegin, LSN: commit - 0x200, CommitLSN: commit, Xid: 700}, `"event_count":6`)
	msg := withValue(sinks.Event{Op: sinks.OpMessage, LSN: commit - 0x50, CommitLSN: commit, Seq: 5, Xid: 700}, `"prefix":"app","content":"aGVsbG8="`)
	trunc := withValue(sinks.Event{Op: sinks.OpTruncate, Schema: "public", Table: "t", LSN: commit - 0x40, CommitLSN: commit, Seq: 4, Xid: 700}, `"tables":["public.t"]`)
	read := event(sinks.OpRead, "t", 9, 0, 0x10, 0, "snapshot")
	read.Rel, read.Row = 16384, 3<<16|7
	read = withValue(read, `"key":9,"v":0`)
	end := withValue(sinks.Event{Op: sinks.OpEnd, LSN: commit, CommitLSN: commit, Seq: 6, Xid: 700}, `"event_count":6`)
	return []sinks.Event{
		begin,
		event(sinks.OpCreate, "t", 1, 0, commit, 0, "quote \" backslash \\ tab \t newline \n nul-free ünïcödé ✓ 𝄞"),
		event(sinks.OpUpdate, "t", 1, 1, commit, 1, big),
		event(sinks.OpDelete, "t", 1, 2, commit, 2, ""),
		event(sinks.OpCreate, "other_table", 2, 0, commit, 3, "{}[],:"),
		trunc, msg, read, end,
	}
}

// check compares what the destination holds with the events written, in order.
func check(t *testing.T, h Harness, got []Record, want []sinks.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("the destination holds %d events, want %d: %s", len(got), len(want), ids(got))
	}
	byID := map[string]Record{}
	for _, r := range got {
		byID[r.ID] = r
	}
	for i := range want {
		w := &want[i]
		r, ok := byID[w.ID()]
		if !ok {
			t.Fatalf("event %s (op %s) is not in the destination: %s", w.ID(), w.Op, ids(got))
		}
		if !bytes.Equal(r.Value, w.Value) {
			t.Fatalf("event %s: value read back differs\n got %.300q\nwant %.300q", w.ID(), r.Value, w.Value)
		}
		if h.KeepsKeys && w.Key != nil && !bytes.Equal(r.Key, w.Key) {
			t.Fatalf("event %s: key %q, want %q", w.ID(), r.Key, w.Key)
		}
	}
}

func ids(rs []Record) string {
	var sb strings.Builder
	for i, r := range rs {
		if i == 20 {
			fmt.Fprintf(&sb, " … (%d more)", len(rs)-i)
			break
		}
		sb.WriteString(" " + r.ID)
	}
	return sb.String()
}

func roundTrip(t *testing.T, h Harness) {
	open, read := h.New(t)
	s := open()
	defer s.Close()
	evs := everyOp(0x3000000)
	write(t, s, evs)
	check(t, h, read(), evs)
}

// versions writes rounds batches; each holds one new version of every key in keys.
func versions(rounds, keys int, base lsn.LSN) [][]sinks.Event {
	var out [][]sinks.Event
	for r := 0; r < rounds; r++ {
		commit := base + lsn.LSN(r)*0x1000
		var b []sinks.Event
		for k := 0; k < keys; k++ {
			op := sinks.OpUpdate
			if r == 0 {
				op = sinks.OpCreate
			}
			b = append(b, event(op, "t", k, r, commit, uint32(k), ""))
		}
		out = append(out, b)
	}
	return out
}

// keyVersions returns, per key, the versions read back in order: the first copy of each id only.
func keyVersions(t *testing.T, got []Record) map[string][]int {
	t.Helper()
	seen := map[string]bool{}
	out := map[string][]int{}
	for _, r := range got {
		if seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		var v struct {
			Key *int `json:"key"`
			V   int  `json:"v"`
		}
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatalf("event %s: value is not the JSON written: %v", r.ID, err)
		}
		if v.Key != nil {
			k := fmt.Sprint(*v.Key)
			out[k] = append(out[k], v.V)
		}
	}
	return out
}

func checkOrder(t *testing.T, got []Record, keys, rounds int) {
	t.Helper()
	per := keyVersions(t, got)
	var bad []string
	for k := 0; k < keys; k++ {
		vs := per[fmt.Sprint(k)]
		ok := len(vs) == rounds
		for i := 0; ok && i < len(vs); i++ {
			ok = vs[i] == i
		}
		if !ok {
			bad = append(bad, fmt.Sprintf("key %d: versions %v, want 0..%d in order", k, vs, rounds-1))
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%d of %d keys out of order or incomplete:\n%s", len(bad), keys, strings.Join(bad[:min(len(bad), 10)], "\n"))
	}
}

func perKeyOrder(t *testing.T, h Harness) {
	open, read := h.New(t)
	s := open()
	defer s.Close()
	const rounds, keys = 20, 25
	for _, b := range versions(rounds, keys, 0x4000000) {
		write(t, s, b)
	}
	got := read()
	if len(got) != rounds*keys {
		t.Fatalf("the destination holds %d events, want %d", len(got), rounds*keys)
	}
	checkOrder(t, got, keys, rounds)
}

func acknowledgedIsReadable(t *testing.T, h Harness) {
	open, read := h.New(t)
	s := open()
	defer s.Close()
	written := 0
	for i, b := range versions(4, 10, 0x5000000) {
		write(t, s, b)
		written += len(b)
		if got := read(); len(got) != written {
			t.Fatalf("after batch %d was acknowledged the destination holds %d events, want %d", i, len(got), written)
		}
	}
}

func refusalIsAnError(t *testing.T, h Harness) {
	if h.Refuse == nil {
		t.Skip("the harness cannot make this destination refuse writes")
	}
	open, read := h.New(t)
	s := open()
	defer s.Close()
	b := versions(2, 5, 0x6000000)
	write(t, s, b[0])
	restore := h.Refuse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	err := s.Write(ctx, &sinks.Batch{Events: b[1]})
	cancel()
	restore()
	if err == nil {
		t.Fatalf("Write returned nil while the destination refused writes")
	}
	// After an error, the pipeline stops and the batch is written again by a new sink.
	_ = s.Close()
	s2 := open()
	defer s2.Close()
	write(t, s2, b[1])
	got := read()
	checkOrder(t, got, 5, 2)
}

func closeKeeps(t *testing.T, h Harness) {
	open, read := h.New(t)
	s := open()
	b := versions(3, 8, 0x7000000)
	for _, x := range b {
		write(t, s, x)
	}
	closeSink(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Write(ctx, &sinks.Batch{Events: b[0]}); err == nil {
		t.Fatal("Write after Close returned nil")
	}
	got := read()
	if len(got) != 3*8 {
		t.Fatalf("after Close the destination holds %d events, want %d", len(got), 3*8)
	}
	checkOrder(t, got, 8, 3)
}

func redelivery(t *testing.T, h Harness) {
	open, read := h.New(t)
	b := versions(4, 6, 0x8000000)
	s := open()
	for _, x := range b[:3] {
		write(t, s, x)
	}
	closeSink(t, s)
	// A crash after batch 3 was written but before the checkpoint passed batch 1: batches 2 and 3
	// come again, then the stream goes on.
	s = open()
	defer s.Close()
	for _, x := range b[1:] {
		write(t, s, x)
	}
	got := read()
	n := map[string]int{}
	for _, r := range got {
		n[r.ID]++
	}
	for _, x := range b {
		for i := range x {
			c := n[x[i].ID()]
			if c == 0 || h.Delivery == ExactlyOnce && c != 1 {
				t.Fatalf("event %s is read back %d times after a redelivery (delivery %v)", x[i].ID(), c, h.Delivery)
			}
		}
	}
	checkOrder(t, got, 6, 4)
}

func (d Delivery) String() string {
	if d == ExactlyOnce {
		return "exactly once"
	}
	return "at least once"
}

// Lines parses what a sink wrote as JSON lines (the stdout and file sinks) into records, taking
// each event's id from its envelope.
func Lines(t *testing.T, data []byte) []Record {
	t.Helper()
	var out []Record
	for _, line := range bytes.Split(data, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		var env struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(line, &env); err != nil {
			t.Fatalf("line %.200q is not JSON: %v", line, err)
		}
		out = append(out, Record{ID: env.ID, Value: append([]byte(nil), line...)})
	}
	return out
}
