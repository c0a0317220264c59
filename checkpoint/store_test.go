package checkpoint

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/lsn"
)

func sampleCheckpoint() Checkpoint {
	return Checkpoint{
		SystemID:  "7301234567890123456",
		Timeline:  1,
		Database:  "app",
		Slot:      "pgstream",
		CommitLSN: 0x1_016B3748,
		FlushLSN:  0x1_016B3778,
		UpdatedAt: time.Date(2026, 11, 23, 21, 0, 0, 123456789, time.UTC),
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nested", "deeper", "checkpoint.json")
	s := NewFileStore(path, OSFS())
	if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("NewFileStore did I/O: %v", err)
	}

	if _, found, err := s.Load(); err != nil || found {
		t.Fatalf("Load before Save = found %v, %v; want not found", found, err)
	}

	cp := sampleCheckpoint()
	if err := s.Save(cp); err != nil {
		t.Fatalf("Save: %v", err)
	}
	got, found, err := s.Load()
	if err != nil || !found {
		t.Fatalf("Load = found %v, %v", found, err)
	}
	if !got.UpdatedAt.Equal(cp.UpdatedAt) {
		t.Fatalf("UpdatedAt = %v, want %v", got.UpdatedAt, cp.UpdatedAt)
	}
	got.UpdatedAt = cp.UpdatedAt
	if got != cp {
		t.Fatalf("Load = %+v, want %+v", got, cp)
	}

	// The file is JSON with a version, a checksum and LSNs in their X/Y form.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Version int
		CRC32C  *uint32 `json:"crc32c"`
		Payload map[string]any
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("file is not JSON: %v\n%s", err, raw)
	}
	if env.Version != 1 || env.CRC32C == nil {
		t.Fatalf("file lacks version or checksum: %s", raw)
	}
	if env.Payload["commit_lsn"] != "1/16B3748" || env.Payload["flush_lsn"] != "1/16B3778" {
		t.Fatalf("LSNs not in X/Y form: %s", raw)
	}

	// A second Save replaces the first.
	cp.CommitLSN, cp.FlushLSN = 0x2_0000_0000, 0x2_0000_0010
	if err := s.Save(cp); err != nil {
		t.Fatalf("second Save: %v", err)
	}
	got, _, err = s.Load()
	if err != nil || got.CommitLSN != cp.CommitLSN || got.FlushLSN != cp.FlushLSN {
		t.Fatalf("Load after second Save = %+v, %v", got, err)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the checkpoint", len(entries))
	}
}

func TestSaveRejectsInvalid(t *testing.T) {
	s := NewFileStore(filepath.Join(t.TempDir(), "cp.json"), nil)
	cp := sampleCheckpoint()
	cp.FlushLSN = cp.CommitLSN - 1
	if err := s.Save(cp); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Save flush < commit = %v; want ErrInvalid", err)
	}
	cp = sampleCheckpoint()
	cp.Slot = ""
	if err := s.Save(cp); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Save without slot = %v; want ErrInvalid", err)
	}
	if _, found, err := s.Load(); found || err != nil {
		t.Fatalf("rejected Save wrote a file: found %v, %v", found, err)
	}
}

func TestLoadCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.json")
	s := NewFileStore(path, OSFS())
	if err := s.Save(sampleCheckpoint()); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	load := func(t *testing.T, data []byte) error {
		t.Helper()
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, found, err := s.Load()
		if found {
			t.Fatalf("Load reported found for a corrupt file")
		}
		return err
	}

	t.Run("flip", func(t *testing.T) {
		for i := range good {
			data := slices.Clone(good)
			data[i] ^= 0x01
			if err := load(t, data); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d (%q) flipped: Load = %v; want ErrCorrupt\n%s", i, good[i], err, data)
			}
		}
	})
	t.Run("truncate", func(t *testing.T) {
		// Dropping only the trailing newline leaves a complete, valid object.
		for n := 0; n < len(good)-1; n++ {
			if err := load(t, good[:n]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("truncated to %d bytes: Load = %v; want ErrCorrupt", n, err)
			}
		}
	})
	t.Run("trailing data", func(t *testing.T) {
		if err := load(t, append(slices.Clone(good), "{}"...)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Load = %v; want ErrCorrupt", err)
		}
	})
	t.Run("future version", func(t *testing.T) {
		data := []byte(strings.Replace(string(good), `"version":1`, `"version":2`, 1))
		if err := load(t, data); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "version 2") {
			t.Fatalf("Load = %v; want ErrCorrupt naming version 2", err)
		}
	})
	t.Run("valid checksum, invalid content", func(t *testing.T) {
		cp := sampleCheckpoint()
		cp.FlushLSN = cp.CommitLSN - 1
		data, err := encode(&cp)
		if err != nil {
			t.Fatal(err)
		}
		if err := load(t, data); !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrInvalid) {
			t.Fatalf("Load = %v; want ErrCorrupt and ErrInvalid", err)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		// A directory in place of the file cannot be read; that is an error, not "missing".
		dpath := filepath.Join(dir, "dir.json")
		if err := os.Mkdir(dpath, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, found, err := NewFileStore(dpath, nil).Load(); err == nil || found {
			t.Fatalf("Load of a directory = found %v, %v; want an error", found, err)
		}
	})
}

// faultFS wraps the real file system, records the operations in order and fails those it is told to.
type faultFS struct {
	FS
	mu          sync.Mutex
	ops         []string
	failWrite   error
	failSync    error
	failDirSync error
	failRename  error
	failOpenDir error
}

func newFaultFS() *faultFS { return &faultFS{FS: OSFS()} }

func (f *faultFS) record(op string) {
	f.mu.Lock()
	f.ops = append(f.ops, op)
	f.mu.Unlock()
}

func (f *faultFS) CreateTemp(dir, pattern string) (File, error) {
	f.record("create")
	file, err := f.FS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f, kind: "file"}, nil
}

func (f *faultFS) Rename(oldpath, newpath string) error {
	f.record("rename")
	if f.failRename != nil {
		return f.failRename
	}
	return f.FS.Rename(oldpath, newpath)
}

func (f *faultFS) OpenDir(dir string) (File, error) {
	f.record("opendir")
	if f.failOpenDir != nil {
		return nil, f.failOpenDir
	}
	d, err := f.FS.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: d, fs: f, kind: "dir"}, nil
}

type faultFile struct {
	File
	fs   *faultFS
	kind string
}

func (f *faultFile) Write(p []byte) (int, error) {
	f.fs.record("write")
	if f.fs.failWrite != nil {
		// Write part of the data, as a full disk would.
		n, _ := f.File.Write(p[:len(p)/2])
		return n, f.fs.failWrite
	}
	return f.File.Write(p)
}

func (f *faultFile) Sync() error {
	f.fs.record("sync " + f.kind)
	if f.kind == "file" && f.fs.failSync != nil {
		return f.fs.failSync
	}
	if f.kind == "dir" && f.fs.failDirSync != nil {
		return f.fs.failDirSync
	}
	return f.File.Sync()
}

func (f *faultFile) Close() error {
	f.fs.record("close " + f.kind)
	return f.File.Close()
}

func TestSaveOrder(t *testing.T) {
	ffs := newFaultFS()
	s := NewFileStore(filepath.Join(t.TempDir(), "cp.json"), ffs)
	if err := s.Save(sampleCheckpoint()); err != nil {
		t.Fatal(err)
	}
	want := []string{"create", "write", "sync file", "close file", "rename", "opendir", "sync dir", "close dir"}
	if !slices.Equal(ffs.ops, want) {
		t.Fatalf("operations = %v; want %v", ffs.ops, want)
	}
}

func TestSaveFaults(t *testing.T) {
	errDisk := errors.New("injected disk failure")
	for _, tc := range []struct {
		name   string
		inject func(*faultFS)
		fatal  bool
		// newVisible: the new checkpoint is what Load sees after the failed Save.
		newVisible bool
	}{
		{name: "write", inject: func(f *faultFS) { f.failWrite = errDisk }},
		{name: "file fsync", inject: func(f *faultFS) { f.failSync = errDisk }, fatal: true},
		{name: "rename", inject: func(f *faultFS) { f.failRename = errDisk }},
		{name: "open dir", inject: func(f *faultFS) { f.failOpenDir = errDisk }, newVisible: true},
		{name: "dir fsync", inject: func(f *faultFS) { f.failDirSync = errDisk }, fatal: true, newVisible: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "cp.json")
			ffs := newFaultFS()
			s := NewFileStore(path, ffs)
			old := sampleCheckpoint()
			if err := s.Save(old); err != nil {
				t.Fatal(err)
			}

			tc.inject(ffs)
			next := old
			next.CommitLSN, next.FlushLSN = old.CommitLSN+0x100, old.FlushLSN+0x100
			err := s.Save(next)
			if !errors.Is(err, errDisk) {
				t.Fatalf("Save = %v; want the injected error", err)
			}
			if got := errors.Is(err, ErrFatal); got != tc.fatal {
				t.Fatalf("Save = %v; ErrFatal %v, want %v", err, got, tc.fatal)
			}

			// No temporary file is left behind, and the file holds one whole checkpoint.
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name() != "cp.json" {
				t.Fatalf("directory entries after failed Save: %v", entries)
			}
			got, found, err := s.Load()
			if err != nil || !found {
				t.Fatalf("Load after failed Save = %v, %v", found, err)
			}
			want := old
			if tc.newVisible {
				want = next
			}
			if got.FlushLSN != want.FlushLSN {
				t.Fatalf("Load after failed Save: flush %s, want %s", got.FlushLSN, want.FlushLSN)
			}

			// Healthy again: a fatal failure stays; any other failure is retried successfully.
			*ffs = faultFS{FS: OSFS()}
			err = s.Save(next)
			if tc.fatal {
				if !errors.Is(err, ErrFatal) || !errors.Is(err, errDisk) {
					t.Fatalf("Save after fatal failure = %v; want the sticky ErrFatal", err)
				}
				if len(ffs.ops) != 0 {
					t.Fatalf("Save after fatal failure touched the file system: %v", ffs.ops)
				}
				return
			}
			if err != nil {
				t.Fatalf("Save after recovery = %v", err)
			}
			if got, _, _ := s.Load(); got.FlushLSN != next.FlushLSN {
				t.Fatalf("Load after recovery: flush %s, want %s", got.FlushLSN, next.FlushLSN)
			}
		})
	}
}

func TestCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.json")
	s := NewFileStore(path, OSFS())
	leftovers := []string{"cp.json.tmp-123", "cp.json.tmp-456"}
	for _, name := range leftovers {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(`{"version":1,"crc`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	unrelated := filepath.Join(dir, "other.json.tmp-1")
	if err := os.WriteFile(unrelated, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}

	// A crash before the first rename: only leftovers, no checkpoint.
	if _, found, err := s.Load(); found || err != nil {
		t.Fatalf("Load with only leftovers = found %v, %v; want not found", found, err)
	}
	if err := s.Save(sampleCheckpoint()); err != nil {
		t.Fatal(err)
	}
	for _, name := range leftovers {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("leftover %s not removed: %v", name, err)
		}
	}
	if _, err := os.Stat(unrelated); err != nil {
		t.Fatalf("Save removed a file it does not own: %v", err)
	}

	// A crash after a checkpoint exists: the leftover is ignored.
	if err := os.WriteFile(filepath.Join(dir, leftovers[0]), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, found, err := s.Load()
	if err != nil || !found || got.FlushLSN != sampleCheckpoint().FlushLSN {
		t.Fatalf("Load beside a leftover = %+v, %v, %v", got, found, err)
	}
}

func TestConcurrentSaves(t *testing.T) {
	s := NewFileStore(filepath.Join(t.TempDir(), "cp.json"), nil)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 5 {
				cp := sampleCheckpoint()
				cp.FlushLSN += lsn.LSN(i*10 + j)
				if err := s.Save(cp); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if _, found, err := s.Load(); err != nil || !found {
		t.Fatalf("Load = %v, %v", found, err)
	}
}
