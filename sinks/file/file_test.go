package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgstream/pgstream/sinks"
)

func batch(values ...string) *sinks.Batch {
	b := &sinks.Batch{}
	for i, v := range values {
		b.Events = append(b.Events, sinks.Event{Op: sinks.OpCreate, CommitLSN: 0x100, Seq: uint32(i), Value: []byte(v)})
	}
	return b
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestConfigValidate(t *testing.T) {
	if err := (&Config{}).Validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("Validate of empty config = %v; want ErrConfig", err)
	}
	if err := (&Config{Path: "out.jsonl"}).Validate(); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	if _, err := New(Config{}, sinks.Env{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("Open of empty config = %v; want ErrConfig", err)
	}
}

func TestWriteLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "out.jsonl")
	s, err := New(Config{Path: path}, sinks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Write(ctx, batch(`{"n":1}`, `{"n":2}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, batch()); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	if err := s.Write(ctx, batch(`{"n":3}`)); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, path), "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"; got != want {
		t.Fatalf("file = %q, want %q", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := s.Write(ctx, batch(`{"n":4}`)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v; want ErrClosed", err)
	}

	// Reopening appends.
	s, err = New(Config{Path: path}, sinks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Dropped() != 0 {
		t.Fatalf("Dropped = %d for an intact file", s.Dropped())
	}
	if err := s.Write(ctx, batch(`{"n":4}`)); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, path), "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n"; got != want {
		t.Fatalf("file = %q, want %q", got, want)
	}
}

func TestWriteRejectsInvalidEvent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	s, err := New(Config{Path: path}, sinks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for _, b := range []*sinks.Batch{batch(`{"a":1}`, "{\"b\":\n2}"), batch(`{"a":1}`, "")} {
		if err := s.Write(ctx, b); !errors.Is(err, ErrInvalidEvent) {
			t.Fatalf("Write = %v; want ErrInvalidEvent", err)
		}
	}
	if got := readFile(t, path); got != "" {
		t.Fatalf("rejected batch wrote %q", got)
	}
	// A rejected batch leaves the sink usable.
	if err := s.Write(ctx, batch(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
}

func TestWriteCanceled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	s, err := New(Config{Path: path}, sinks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Write(ctx, batch(`{}`)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Write = %v; want context.Canceled", err)
	}
	if got := readFile(t, path); got != "" {
		t.Fatalf("canceled Write wrote %q", got)
	}
}

// spyFile wraps a real file, records the calls the sink makes and fails those it is told to.
type spyFile struct {
	*os.File
	calls     []string
	failWrite error
	failSync  error
}

func (f *spyFile) Write(p []byte) (int, error) {
	f.calls = append(f.calls, fmt.Sprintf("write %d", len(p)))
	if f.failWrite != nil {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, f.failWrite
	}
	return f.File.Write(p)
}

func (f *spyFile) Sync() error {
	f.calls = append(f.calls, "sync")
	if f.failSync != nil {
		return f.failSync
	}
	return f.File.Sync()
}

func (f *spyFile) Truncate(size int64) error {
	f.calls = append(f.calls, fmt.Sprintf("truncate %d", size))
	return f.File.Truncate(size)
}

func openSpy(t *testing.T, path string) *spyFile {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &spyFile{File: f}
}

func TestWriteSyncsBeforeReturning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	spy := openSpy(t, path)
	s, err := newSink(spy, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(spy.calls) != 0 {
		t.Fatalf("opening an empty file made calls %v", spy.calls)
	}
	values := make([]string, 100)
	for i := range values {
		values[i] = fmt.Sprintf(`{"n":%d}`, i)
	}
	if err := s.Write(context.Background(), batch(values...)); err != nil {
		t.Fatal(err)
	}
	size := len(strings.Join(values, "\n")) + 1
	// One write for the whole batch, then the fsync, both before Write returned.
	if want := []string{fmt.Sprintf("write %d", size), "sync"}; !slices.Equal(spy.calls, want) {
		t.Fatalf("calls = %v; want %v", spy.calls, want)
	}
}

func TestWriteFailureIsSticky(t *testing.T) {
	errDisk := errors.New("injected disk failure")
	for _, tc := range []struct {
		name   string
		inject func(*spyFile)
	}{
		{"write", func(f *spyFile) { f.failWrite = errDisk }},
		{"fsync", func(f *spyFile) { f.failSync = errDisk }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.jsonl")
			spy := openSpy(t, path)
			s, err := newSink(spy, path, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := s.Write(ctx, batch(`{"n":1}`)); err != nil {
				t.Fatal(err)
			}
			tc.inject(spy)
			if err := s.Write(ctx, batch(`{"n":2}`, `{"n":3}`)); !errors.Is(err, ErrFatal) || !errors.Is(err, errDisk) {
				t.Fatalf("Write = %v; want ErrFatal wrapping the injected error", err)
			}
			*spy = spyFile{File: spy.File}
			if err := s.Write(ctx, batch(`{"n":4}`)); !errors.Is(err, ErrFatal) {
				t.Fatalf("Write after failure = %v; want ErrFatal", err)
			}
			if len(spy.calls) != 0 {
				t.Fatalf("Write after failure touched the file: %v", spy.calls)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			// Reopening cuts a partial line away; the acknowledged line stays.
			s, err = New(Config{Path: path}, sinks.Env{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got := readFile(t, path)
			if !strings.HasPrefix(got, "{\"n\":1}\n") || !strings.HasSuffix(got, "\n") {
				t.Fatalf("file after reopen = %q", got)
			}
		})
	}
}

func TestTornTailRepair(t *testing.T) {
	long := strings.Repeat("x", 200<<10) // longer than the repair's read chunk
	for _, tc := range []struct {
		name, content, want string
	}{
		{"empty", "", ""},
		{"intact", "{\"a\":1}\n{\"b\":2}\n", "{\"a\":1}\n{\"b\":2}\n"},
		{"partial last line", "{\"a\":1}\n{\"b\":2}\n{\"c\":", "{\"a\":1}\n{\"b\":2}\n"},
		{"only a partial line", "{\"c\":", ""},
		{"long partial line", "{\"a\":1}\n" + long, "{\"a\":1}\n"},
		{"long partial line alone", long, ""},
		{"long last line then partial", "\"" + long + "\"\n{", "\"" + long + "\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.jsonl")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zapcore.WarnLevel)
			s, err := New(Config{Path: path}, sinks.Env{Log: zap.New(core)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			dropped := int64(len(tc.content) - len(tc.want))
			if s.Dropped() != dropped {
				t.Fatalf("Dropped = %d, want %d", s.Dropped(), dropped)
			}
			if got := readFile(t, path); got != tc.want {
				t.Fatalf("file after repair has %d bytes, want %d", len(got), len(tc.want))
			}
			if wantLogs := min(dropped, 1); int64(logs.Len()) != wantLogs {
				t.Fatalf("%d log entries, want %d", logs.Len(), wantLogs)
			}
			if dropped > 0 {
				if got := logs.All()[0].ContextMap()["bytes"]; got != dropped {
					t.Fatalf("logged bytes = %v, want %d", got, dropped)
				}
			}
			if err := s.Write(context.Background(), batch(`{"z":0}`)); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, path); got != tc.want+"{\"z\":0}\n" {
				t.Fatalf("append after repair: file ends %q", got[max(0, len(got)-20):])
			}
		})
	}
}

func TestTornTailRepairSyncFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	if err := os.WriteFile(path, []byte("{\"a\":1}\n{\"b\""), 0o644); err != nil {
		t.Fatal(err)
	}
	spy := openSpy(t, path)
	spy.failSync = errors.New("injected disk failure")
	if _, err := newSink(spy, path, nil); !errors.Is(err, ErrFatal) {
		t.Fatalf("newSink = %v; want ErrFatal", err)
	}
	if want := []string{"truncate 8", "sync"}; !slices.Equal(spy.calls, want) {
		t.Fatalf("calls = %v; want %v", spy.calls, want)
	}
}

func BenchmarkWrite(b *testing.B) {
	s, err := New(Config{Path: filepath.Join(b.TempDir(), "out.jsonl")}, sinks.Env{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	value := []byte(`{"op":"c","source":{"lsn":"1/16B3748","schema":"public","table":"orders"},"after":{"id":1,` +
		`"customer":"c-000123","status":"shipped","total":"129.90","created_at":"2026-11-23T21:00:00Z","note":` +
		`"` + strings.Repeat("n", 100) + `"}}`)
	bt := &sinks.Batch{Events: make([]sinks.Event, 1000)}
	size := 0
	for i := range bt.Events {
		bt.Events[i] = sinks.Event{Op: sinks.OpCreate, CommitLSN: 0x100, Seq: uint32(i), Value: value}
		size += len(value) + 1
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if err := s.Write(ctx, bt); err != nil {
			b.Fatal(err)
		}
	}
}

func TestLargeBatchIsWrittenInChunksThenSyncedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	spy := openSpy(t, path)
	s, err := newSink(spy, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	values := make([]string, 3000) // about 3 MiB
	for i := range values {
		values[i] = fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 1000))
	}
	if err := s.Write(context.Background(), batch(values...)); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != strings.Join(values, "\n")+"\n" {
		t.Fatalf("file holds %d bytes, not the batch", len(got))
	}
	writes := 0
	for i, c := range spy.calls {
		if strings.HasPrefix(c, "write ") {
			writes++
			var n int
			fmt.Sscanf(c, "write %d", &n)
			if n > sinks.LineChunk {
				t.Fatalf("a write of %d bytes, more than %d", n, sinks.LineChunk)
			}
		} else if c != "sync" || i != len(spy.calls)-1 {
			t.Fatalf("calls = %v; want writes then one sync", spy.calls)
		}
	}
	if writes < 3 {
		t.Fatalf("%d writes for a 3 MiB batch", writes)
	}
}

// BenchmarkChecks measures what Write adds to every batch to notice a file changed underneath it:
// an fstat before the write, an fstat and a stat of the path after the fsync.
func BenchmarkChecks(b *testing.B) {
	s, err := New(Config{Path: filepath.Join(b.TempDir(), "out.jsonl")}, sinks.Env{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.check(false, 0); err != nil {
			b.Fatal(err)
		}
		if err := s.check(true, 0); err != nil {
			b.Fatal(err)
		}
	}
}
