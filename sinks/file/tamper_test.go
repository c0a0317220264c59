package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pgstream/pgstream/sinks"
)

// The file at the configured path stops being the file the sink writes, or its size stops being
// what the sink wrote, while the sink is open. Each case changes the file between two Writes: the
// second Write must fail with ErrFatal naming the path and what happened, leave the file as it found
// it, and every later Write must fail too.
func TestFileChangedBetweenWrites(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path string)
		want   []string // in the error's text
		// untouched: the failed Write appended nothing to the file now at the path.
		untouched bool
	}{
		{
			name:   "deleted",
			change: func(t *testing.T, path string) { must(t, os.Remove(path)) },
			want:   []string{"was deleted", "not acknowledged", "re-sends from its checkpoint"},
		},
		{
			name: "replaced by another file",
			change: func(t *testing.T, path string) {
				other := path + ".new"
				must(t, os.WriteFile(other, []byte("{\"other\":1}\n"), 0o600))
				must(t, os.Rename(other, path))
			},
			want:      []string{"was replaced", "another file", "not acknowledged", "re-sends from its checkpoint"},
			untouched: true,
		},
		{
			name:   "moved away",
			change: func(t *testing.T, path string) { must(t, os.Rename(path, path+".1")) },
			want:   []string{"no file", "not acknowledged", "re-sends from its checkpoint"},
		},
		{
			name:      "truncated to zero",
			change:    func(t *testing.T, path string) { must(t, os.Truncate(path, 0)) },
			want:      []string{"truncated by something other than pgstream", "holds 0 bytes", "16 bytes of acknowledged changes are gone"},
			untouched: true,
		},
		{
			name: "truncated to half a line",
			change: func(t *testing.T, path string) {
				must(t, os.Truncate(path, 12)) // {"n":1}\n{"n
			},
			want:      []string{"truncated by something other than pgstream", "holds 12 bytes", "4 bytes of acknowledged changes are gone"},
			untouched: true,
		},
		{
			name: "appended to by another writer",
			change: func(t *testing.T, path string) {
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
				must(t, err)
				_, err = f.WriteString("{\"other\":")
				must(t, errors.Join(err, f.Close()))
			},
			want:      []string{"grew by 9 bytes that pgstream did not write", "only writer"},
			untouched: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.jsonl")
			s, err := New(Config{Path: path}, sinks.Env{})
			must(t, err)
			defer s.Close()
			ctx := context.Background()
			must(t, s.Write(ctx, batch(`{"n":1}`, `{"n":2}`)))
			tc.change(t, path)
			before, _ := os.ReadFile(path)

			err = s.Write(ctx, batch(`{"n":3}`))
			if !errors.Is(err, ErrFatal) {
				t.Fatalf("Write after the file was %s = %v; want ErrFatal", tc.name, err)
			}
			msg := err.Error()
			for _, w := range append([]string{path}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			if tc.untouched {
				if after, _ := os.ReadFile(path); string(after) != string(before) {
					t.Errorf("the failed Write changed the file at the path from %q to %q", before, after)
				}
			}
			if err := s.Write(ctx, batch(`{"n":4}`)); !errors.Is(err, ErrFatal) {
				t.Fatalf("the next Write = %v; want the sticky ErrFatal", err)
			}
		})
	}
}

// After a truncation in the middle of a line, the failed Write leaves the partial line last, where
// the next Open cuts it: the file never holds an invalid line.
func TestTruncatedMidLineIsRepairedOnReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	s, err := New(Config{Path: path}, sinks.Env{})
	must(t, err)
	ctx := context.Background()
	must(t, s.Write(ctx, batch(`{"n":1}`, `{"n":2}`, `{"n":3}`)))
	must(t, os.Truncate(path, 12)) // {"n":1}\n{"n
	if err := s.Write(ctx, batch(`{"n":4}`)); !errors.Is(err, ErrFatal) {
		t.Fatalf("Write after truncation = %v; want ErrFatal", err)
	}
	must(t, s.Close())
	s, err = New(Config{Path: path}, sinks.Env{})
	must(t, err)
	defer s.Close()
	if s.Dropped() != 4 {
		t.Fatalf("reopen dropped %d bytes, want the 4 of the partial line", s.Dropped())
	}
	must(t, s.Write(ctx, batch(`{"n":2}`)))
	if got, want := readFile(t, path), "{\"n\":1}\n{\"n\":2}\n"; got != want {
		t.Fatalf("file = %q, want %q", got, want)
	}
}

// tamperFile runs change between the sink's write and its fsync: the check before the write passes,
// the one after the fsync must catch it.
type tamperFile struct {
	*os.File
	change func()
}

func (f *tamperFile) Sync() error {
	if f.change != nil {
		f.change()
		f.change = nil
	}
	return f.File.Sync()
}

func TestFileChangedDuringWrite(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path string)
		want   string
	}{
		{"deleted", func(t *testing.T, path string) { must(t, os.Remove(path)) }, "was deleted"},
		{"replaced", func(t *testing.T, path string) {
			must(t, os.WriteFile(path+".new", nil, 0o600))
			must(t, os.Rename(path+".new", path))
		}, "was replaced"},
		{"truncated", func(t *testing.T, path string) { must(t, os.Truncate(path, 3)) }, "holds 3 bytes where pgstream wrote 24"},
		{"appended to", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			must(t, err)
			_, err = f.WriteString("{}\n")
			must(t, errors.Join(err, f.Close()))
		}, "grew by 3 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.jsonl")
			spy := &tamperFile{File: openSpy(t, path).File}
			s, err := newSink(spy, path, nil)
			must(t, err)
			ctx := context.Background()
			must(t, s.Write(ctx, batch(`{"n":1}`, `{"n":2}`)))
			spy.change = func() { tc.change(t, path) }
			err = s.Write(ctx, batch(`{"n":3}`))
			if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Write = %v; want ErrFatal naming %s and saying %q", err, path, tc.want)
			}
		})
	}
}

func TestCreatedFileMode(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     string
		umask    int         // the process umask while Open runs
		existing os.FileMode // 0: the file does not exist yet
		want     os.FileMode
	}{
		// A umask that narrows nothing: the sink itself must not create a readable file.
		{"default", "", 0, 0, 0o600},
		// A umask that would narrow every configured mode to 0600: the sink must set the mode itself.
		{"configured", "0640", 0o077, 0, 0o640},
		{"world readable", "0644", 0o077, 0, 0o644},
		{"existing file keeps its mode", "0600", 0, 0o644, 0o644},
		{"existing file keeps its mode by default", "", 0, 0o604, 0o604},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.jsonl")
			if tc.existing != 0 {
				must(t, os.WriteFile(path, []byte("{}\n"), 0o600))
				must(t, os.Chmod(path, tc.existing))
			}
			old := syscall.Umask(tc.umask)
			s, err := New(Config{Path: path, Mode: tc.mode}, sinks.Env{})
			syscall.Umask(old)
			must(t, err)
			must(t, s.Write(context.Background(), batch(`{"n":1}`)))
			must(t, s.Close())
			fi, err := os.Stat(path)
			must(t, err)
			if got := fi.Mode().Perm(); got != tc.want {
				t.Fatalf("mode = %#o, want %#o", got, tc.want)
			}
		})
	}
}

func TestConfigValidateMode(t *testing.T) {
	for _, tc := range []struct {
		mode string
		ok   bool
	}{
		{"", true},
		{"0600", true},
		{"0640", true},
		{"0644", true},
		{"0777", true},
		{"00600", true},
		{"600", false},   // no leading 0: how an unquoted YAML 0640 (the number 416) arrives
		{"416", false},   //
		{"0o640", false}, //
		{"0400", false},  // pgstream could not write it
		{"0200", false},  // nor read it to repair a torn tail
		{"04600", false}, // setuid
		{"01600", false}, // sticky
		{"0100600", false},
		{"0689", false},
		{"rw-------", false},
		{"0", false},
		{"-0600", false},
	} {
		t.Run(strconv.Quote(tc.mode), func(t *testing.T) {
			err := (&Config{Path: "out.jsonl", Mode: tc.mode}).Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate = %v", err)
			}
			if !tc.ok {
				if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), strconv.Quote(tc.mode)) {
					t.Fatalf("Validate = %v; want ErrConfig naming %q", err, tc.mode)
				}
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
