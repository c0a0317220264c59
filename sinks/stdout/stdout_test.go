package stdout

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/pgstream/pgstream/sinks"
)

func batch(values ...string) *sinks.Batch {
	b := &sinks.Batch{}
	for i, v := range values {
		b.Events = append(b.Events, sinks.Event{Op: sinks.OpCreate, CommitLSN: 0x100, Seq: uint32(i), Value: []byte(v)})
	}
	return b
}

// countingWriter records each Write call.
type countingWriter struct {
	bytes.Buffer
	calls int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.calls++
	return w.Buffer.Write(p)
}

func TestWrite(t *testing.T) {
	if err := (&Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
	var w countingWriter
	s, _ := New(Config{}, sinks.Env{Stdout: &w})
	ctx := context.Background()
	if err := s.Write(ctx, batch(`{"n":1}`, `{"n":2}`, `{"n":3}`)); err != nil {
		t.Fatal(err)
	}
	// The bytes reached the writer, in one call, before Write returned.
	if got, want := w.String(), "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"; got != want || w.calls != 1 {
		t.Fatalf("writer got %q in %d calls; want %q in 1", got, w.calls, want)
	}
	if err := s.Write(ctx, batch()); err != nil || w.calls != 1 {
		t.Fatalf("empty batch: %v, %d calls", err, w.calls)
	}
	if err := s.Write(ctx, batch(`{"n":4}`)); err != nil {
		t.Fatal(err)
	}
	if got, want := w.String(), "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n"; got != want {
		t.Fatalf("writer got %q; want %q", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, batch(`{"n":5}`)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v; want ErrClosed", err)
	}
}

func TestWriteRejectsInvalidEvent(t *testing.T) {
	var w bytes.Buffer
	s, _ := New(Config{}, sinks.Env{Stdout: &w})
	ctx := context.Background()
	for _, b := range []*sinks.Batch{batch(`{"a":1}`, "{\"b\":\n2}"), batch(`{"a":1}`, "")} {
		if err := s.Write(ctx, b); !errors.Is(err, ErrInvalidEvent) {
			t.Fatalf("Write = %v; want ErrInvalidEvent", err)
		}
	}
	if w.Len() != 0 {
		t.Fatalf("rejected batch wrote %q", w.String())
	}
	if err := s.Write(ctx, batch(`{"a":1}`)); err != nil {
		t.Fatalf("Write after a rejected batch = %v", err)
	}
}

func TestWriteCanceled(t *testing.T) {
	var w bytes.Buffer
	s, _ := New(Config{}, sinks.Env{Stdout: &w})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Write(ctx, batch(`{}`)); !errors.Is(err, context.Canceled) || w.Len() != 0 {
		t.Fatalf("Write = %v with %q written; want context.Canceled and nothing", err, w.String())
	}
}

// failingWriter accepts limit bytes, then fails.
type failingWriter struct {
	buf   bytes.Buffer
	limit int
	short bool // report a short write without an error
}

var errBrokenPipe = errors.New("injected broken pipe")

func (w *failingWriter) Write(p []byte) (int, error) {
	room := w.limit - w.buf.Len()
	if room >= len(p) {
		return w.buf.Write(p)
	}
	n, _ := w.buf.Write(p[:max(room, 0)])
	if w.short {
		return n, nil
	}
	return n, errBrokenPipe
}

func TestWriteFailureIsSticky(t *testing.T) {
	for _, tc := range []struct {
		name  string
		short bool
		want  error
	}{
		{"error", false, errBrokenPipe},
		{"short write", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &failingWriter{limit: 12, short: tc.short}
			s, _ := New(Config{}, sinks.Env{Stdout: w})
			ctx := context.Background()
			if err := s.Write(ctx, batch(`{"n":1}`)); err != nil {
				t.Fatal(err)
			}
			err := s.Write(ctx, batch(`{"n":2}`))
			if !errors.Is(err, ErrFailed) || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Write = %v; want ErrFailed wrapping %v", err, tc.want)
			}
			w.limit = 1 << 20
			if err := s.Write(ctx, batch(`{"n":3}`)); !errors.Is(err, ErrFailed) {
				t.Fatalf("Write after failure = %v; want ErrFailed", err)
			}
			if got := w.buf.String(); got != "{\"n\":1}\n{\"n\"" {
				t.Fatalf("writer got %q", got)
			}
		})
	}
}
