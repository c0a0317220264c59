package sinks

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

type countingWriter struct {
	bytes.Buffer
	sizes []int
	fail  error
	short bool
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	if w.fail != nil {
		return 0, w.fail
	}
	if w.short {
		w.Buffer.Write(p[:len(p)/2])
		return len(p) / 2, nil
	}
	return w.Buffer.Write(p)
}

func events(values ...string) []Event {
	out := make([]Event, len(values))
	for i, v := range values {
		out[i] = Event{Op: OpCreate, Seq: uint32(i), Value: []byte(v)}
	}
	return out
}

func TestWriteLines(t *testing.T) {
	var w countingWriter
	buf, err := WriteLines(&w, nil, events(`{"a":1}`, `{"b":2}`))
	if err != nil || w.String() != "{\"a\":1}\n{\"b\":2}\n" || len(w.sizes) != 1 {
		t.Fatalf("err %v, wrote %q in %v", err, w.String(), w.sizes)
	}
	if len(buf) != 0 || cap(buf) == 0 {
		t.Fatalf("buffer not handed back for reuse: len %d cap %d", len(buf), cap(buf))
	}
}

func TestWriteLinesInChunks(t *testing.T) {
	var w countingWriter
	vals := make([]string, 3000)
	for i := range vals {
		vals[i] = strings.Repeat("x", 1000)
	}
	big := strings.Repeat("y", 3*LineChunk) // one event larger than a chunk
	vals = append(vals, big)
	if _, err := WriteLines(&w, nil, events(vals...)); err != nil {
		t.Fatal(err)
	}
	if w.String() != strings.Join(vals, "\n")+"\n" {
		t.Fatal("output differs from the events")
	}
	for _, n := range w.sizes[:len(w.sizes)-1] {
		if n > LineChunk {
			t.Fatalf("a write of %d bytes, more than %d, before the large event", n, LineChunk)
		}
	}
	if len(w.sizes) < 4 {
		t.Fatalf("writes %v", w.sizes)
	}
}

func TestWriteLinesRejectsBeforeWriting(t *testing.T) {
	for _, bad := range []string{"", "two\nlines"} {
		var w countingWriter
		_, err := WriteLines(&w, nil, events(`{"ok":1}`, bad))
		if !errors.Is(err, ErrInvalidEvent) || len(w.sizes) != 0 {
			t.Fatalf("value %q: err %v, writes %v", bad, err, w.sizes)
		}
	}
}

func TestWriteLinesWriteErrors(t *testing.T) {
	boom := errors.New("disk gone")
	if _, err := WriteLines(&countingWriter{fail: boom}, nil, events("{}")); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if _, err := WriteLines(&countingWriter{short: true}, nil, events("{}")); !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("short write: err = %v", err)
	}
}
