package file

import (
	"encoding/json"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/lsn"
)

func sampleCheckpoint() checkpoint.Checkpoint {
	return checkpoint.Checkpoint{
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
	s := New(path, OSFS())
	if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("New did I/O: %v", err)
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
	if !reflect.DeepEqual(got, cp) {
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
	if env.Version != 2 || env.CRC32C == nil {
		t.Fatalf("file lacks version or checksum: %s", raw)
	}
	if env.Payload["commit_lsn"] != "1/16B3748" || env.Payload["flush_lsn"] != "1/16B3778" {
		t.Fatalf("LSNs not in X/Y form: %s", raw)
	}
	if _, ok := env.Payload["snapshot"]; ok {
		t.Fatalf("snapshot list written without snapshots: %s", raw)
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
	s := New(filepath.Join(t.TempDir(), "cp.json"), nil)
	cp := sampleCheckpoint()
	cp.FlushLSN = cp.CommitLSN - 1
	if err := s.Save(cp); !errors.Is(err, checkpoint.ErrInvalid) {
		t.Fatalf("Save flush < commit = %v; want ErrInvalid", err)
	}
	cp = sampleCheckpoint()
	cp.Slot = ""
	if err := s.Save(cp); !errors.Is(err, checkpoint.ErrInvalid) {
		t.Fatalf("Save without slot = %v; want ErrInvalid", err)
	}
	if _, found, err := s.Load(); found || err != nil {
		t.Fatalf("rejected Save wrote a file: found %v, %v", found, err)
	}
}

func TestLoadCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.json")
	s := New(path, OSFS())
	// With snapshots, so that every part of the format is damaged in turn.
	if err := s.Save(snapshotCheckpoint()); err != nil {
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
			if err := load(t, data); !errors.Is(err, checkpoint.ErrCorrupt) {
				t.Fatalf("byte %d (%q) flipped: Load = %v; want ErrCorrupt\n%s", i, good[i], err, data)
			}
		}
	})
	t.Run("truncate", func(t *testing.T) {
		// Dropping only the trailing newline leaves a complete, valid object.
		for n := 0; n < len(good)-1; n++ {
			if err := load(t, good[:n]); !errors.Is(err, checkpoint.ErrCorrupt) {
				t.Fatalf("truncated to %d bytes: Load = %v; want ErrCorrupt", n, err)
			}
		}
	})
	t.Run("trailing data", func(t *testing.T) {
		if err := load(t, append(slices.Clone(good), "{}"...)); !errors.Is(err, checkpoint.ErrCorrupt) {
			t.Fatalf("Load = %v; want ErrCorrupt", err)
		}
	})
	t.Run("way out", func(t *testing.T) {
		data := slices.Clone(good)
		data[len(data)/2] ^= 0x01
		err := load(t, data)
		for _, want := range []string{path, "restore " + path + " from a backup",
			"remove it and let the next run snapshot the published tables again (snapshot.mode: initial)",
			"remove it and set snapshot.mode: never", "changes since then arrive again"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Load = %v; want it to say %q", err, want)
			}
		}
	})
	t.Run("future version", func(t *testing.T) {
		data := []byte(strings.Replace(string(good), `"version":2`, `"version":3`, 1))
		if err := load(t, data); !errors.Is(err, checkpoint.ErrCorrupt) || !strings.Contains(err.Error(), "version 3") ||
			!strings.Contains(err.Error(), "newer pgstream") {
			t.Fatalf("Load = %v; want ErrCorrupt naming version 3 and a newer pgstream", err)
		}
	})
	t.Run("valid checksum, invalid content", func(t *testing.T) {
		cp := sampleCheckpoint()
		cp.FlushLSN = cp.CommitLSN - 1
		data, err := encode(&cp)
		if err != nil {
			t.Fatal(err)
		}
		if err := load(t, data); !errors.Is(err, checkpoint.ErrCorrupt) || !errors.Is(err, checkpoint.ErrInvalid) {
			t.Fatalf("Load = %v; want ErrCorrupt and ErrInvalid", err)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		// A directory in place of the file cannot be read; that is an error, not "missing".
		dpath := filepath.Join(dir, "dir.json")
		if err := os.Mkdir(dpath, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, found, err := New(dpath, nil).Load(); err == nil || found {
			t.Fatalf("Load of a directory = found %v, %v; want an error", found, err)
		}
	})
}

func snapshotCheckpoint() checkpoint.Checkpoint {
	cp := sampleCheckpoint()
	cp.Snapshot = []checkpoint.TableSnapshot{
		{
			Gen: 0x1_016B0000, OID: 16384, Schema: "public", Table: "orders", Pages: 1000, ChunkPages: 64,
			Done: []checkpoint.ChunkRange{{From: 0, To: 3}, {From: 5, To: 6}, {From: 15, To: 16}},
		},
		{Gen: 0x1_016B0000, OID: 16390, Schema: "sales", Table: "line \"items\"", Pages: 0, ChunkPages: 64},
	}
	return cp
}

func TestSaveLoadSnapshot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.json")
	s := New(path, nil)
	cp := snapshotCheckpoint()
	before := cp
	before.Snapshot = []checkpoint.TableSnapshot{cp.Snapshot[0].Clone(), cp.Snapshot[1].Clone()}
	if err := s.Save(cp); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if !reflect.DeepEqual(cp, before) {
		t.Fatalf("Save modified its argument: %+v", cp)
	}
	got, found, err := s.Load()
	if err != nil || !found {
		t.Fatalf("Load = found %v, %v", found, err)
	}
	if !reflect.DeepEqual(got, cp) {
		t.Fatalf("Load = %+v, want %+v", got, cp)
	}

	// The loaded checkpoint shares nothing with the saved one.
	got.Snapshot[0].MarkDone(3)
	got.Snapshot[0].Done[0].From = 1
	if !reflect.DeepEqual(cp, before) {
		t.Fatalf("changing the loaded checkpoint changed the saved one: %+v", cp)
	}

	// The entries are in the documented form.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Version int
		Payload struct {
			Snapshot []json.RawMessage
		}
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("file is not JSON: %v\n%s", err, raw)
	}
	want := []string{
		`{"gen":"1/16B0000","oid":16384,"schema":"public","table":"orders","pages":1000,"chunk_pages":64,"done":[[0,3],[5,6],[15,16]]}`,
		`{"gen":"1/16B0000","oid":16390,"schema":"sales","table":"line \"items\"","pages":0,"chunk_pages":64,"done":[]}`,
	}
	if env.Version != 2 || len(env.Payload.Snapshot) != len(want) {
		t.Fatalf("file = %s; want version 2 with %d snapshot entries", raw, len(want))
	}
	for i, w := range want {
		if got := string(env.Payload.Snapshot[i]); got != w {
			t.Fatalf("snapshot entry %d = %s\nwant %s", i, got, w)
		}
	}

	// Finishing every snapshot drops the list.
	cp.Snapshot = nil
	if err := s.Save(cp); err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.Load(); err != nil || got.Snapshot != nil {
		t.Fatalf("Load = %+v, %v; want no snapshot", got, err)
	}
}

func TestSaveRejectsInvalidSnapshot(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "cp.json"), nil)
	cp := snapshotCheckpoint()
	cp.Snapshot[0].Done = append(cp.Snapshot[0].Done, checkpoint.ChunkRange{From: 15, To: 17})
	if err := s.Save(cp); !errors.Is(err, checkpoint.ErrInvalid) {
		t.Fatalf("Save with overlapping chunks = %v; want ErrInvalid", err)
	}
	if _, found, err := s.Load(); found || err != nil {
		t.Fatalf("rejected Save wrote a file: found %v, %v", found, err)
	}
}

// v1Payload is sampleCheckpoint's payload in format version 1, and v1CRC its CRC-32C.
const (
	v1Payload = `{"system_id":"7301234567890123456","timeline":1,"database":"app","slot":"pgstream",` +
		`"commit_lsn":"1/16B3748","flush_lsn":"1/16B3778","updated_at":"2026-11-23T21:00:00.123456789Z"}`
	v1CRC = 928905839
)

func TestLoadVersion1(t *testing.T) {
	if sum := crc32.Checksum([]byte(v1Payload), crc32.MakeTable(crc32.Castagnoli)); sum != v1CRC {
		t.Fatalf("fixture checksum %d, computed %d", v1CRC, sum)
	}
	path := filepath.Join(t.TempDir(), "cp.json")
	file := `{"version":1,"crc32c":928905839,"payload":` + v1Payload + "}\n"
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	s := New(path, nil)
	got, found, err := s.Load()
	if err != nil || !found {
		t.Fatalf("Load = found %v, %v", found, err)
	}
	if want := sampleCheckpoint(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Load = %+v, want %+v", got, want)
	}

	// The next Save writes version 2.
	if err := s.Save(got); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(raw), `{"version":2,`) {
		t.Fatalf("Save after loading version 1 wrote %s", raw)
	}
}

// checkpointFile returns a checkpoint file of the given version around payload, with a correct checksum.
func checkpointFile(version int, payload string) []byte {
	env := envelope{Version: version, CRC32C: crc32.Checksum([]byte(payload), castagnoli), Payload: json.RawMessage(payload)}
	data, err := json.Marshal(env)
	if err != nil {
		panic(err)
	}
	return data
}

func TestLoadSnapshotCorrupt(t *testing.T) {
	// withSnapshot returns version 1's payload with a snapshot list.
	withSnapshot := func(list string) string {
		return strings.TrimSuffix(v1Payload, "}") + `,"snapshot":` + list + `}`
	}
	const entry = `{"gen":"1/16B0000","oid":16384,"schema":"public","table":"orders","pages":1000,"chunk_pages":64,"done":[[0,3],[5,6]]}`
	path := filepath.Join(t.TempDir(), "cp.json")
	s := New(path, nil)
	for _, tc := range []struct {
		name    string
		version int
		payload string
		invalid bool // the error also wraps ErrInvalid
	}{
		{name: "snapshot in version 1", version: 1, payload: withSnapshot(`[` + entry + `]`)},
		{name: "empty snapshot in version 1", version: 1, payload: withSnapshot(`[]`)},
		{name: "unknown field", version: 2, payload: withSnapshot(`[` + strings.Replace(entry, `"oid"`, `"relkind":"r","oid"`, 1) + `]`)},
		{name: "misspelt field", version: 2, payload: withSnapshot(`[` + strings.Replace(entry, `"chunk_pages"`, `"chunkPages"`, 1) + `]`)},
		{name: "not a list", version: 2, payload: withSnapshot(entry)},
		{name: "gen as a number", version: 2, payload: withSnapshot(`[` + strings.Replace(entry, `"1/16B0000"`, `23789568`, 1) + `]`)},
		{name: "gen not an LSN", version: 2, payload: withSnapshot(`[` + strings.Replace(entry, `"1/16B0000"`, `"16B0000"`, 1) + `]`)},
		{name: "negative OID", version: 2, payload: withSnapshot(`[` + strings.Replace(entry, `16384`, `-1`, 1) + `]`)},
		{name: "OID over 32 bits", version: 2, payload: withSnapshot(`[` + strings.Replace(entry, `16384`, `4294967296`, 1) + `]`)},
		{name: "range of one number", version: 2, payload: withSnapshot(`[` + strings.Replace(entry, `[5,6]`, `[5]`, 1) + `]`)},
		{name: "range of three numbers", version: 2, payload: withSnapshot(`[` + strings.Replace(entry, `[5,6]`, `[5,6,7]`, 1) + `]`)},
		{name: "range as an object", version: 2, payload: withSnapshot(`[` + strings.Replace(entry, `[5,6]`, `{"from":5,"to":6}`, 1) + `]`)},
		{name: "null range", version: 2, payload: withSnapshot(`[` + strings.Replace(entry, `[5,6]`, `null`, 1) + `]`)},
		{name: "fractional chunk", version: 2, payload: withSnapshot(`[` + strings.Replace(entry, `[5,6]`, `[5,6.5]`, 1) + `]`)},
		{name: "overlapping ranges", version: 2, invalid: true, payload: withSnapshot(`[` + strings.Replace(entry, `[5,6]`, `[2,6]`, 1) + `]`)},
		{name: "unsorted ranges", version: 2, invalid: true, payload: withSnapshot(`[` + strings.Replace(entry, `[[0,3],[5,6]]`, `[[5,6],[0,3]]`, 1) + `]`)},
		{name: "range beyond the last chunk", version: 2, invalid: true, payload: withSnapshot(`[` + strings.Replace(entry, `[5,6]`, `[5,17]`, 1) + `]`)},
		{name: "zero chunk size", version: 2, invalid: true, payload: withSnapshot(`[` + strings.Replace(entry, `"chunk_pages":64`, `"chunk_pages":0`, 1) + `]`)},
		{name: "missing OID", version: 2, invalid: true, payload: withSnapshot(`[` + strings.Replace(entry, `"oid":16384,`, ``, 1) + `]`)},
		{name: "second entry invalid", version: 2, invalid: true, payload: withSnapshot(`[` + entry + `,` + strings.Replace(entry, `"orders"`, `""`, 1) + `]`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, checkpointFile(tc.version, tc.payload), 0o644); err != nil {
				t.Fatal(err)
			}
			_, found, err := s.Load()
			if found || !errors.Is(err, checkpoint.ErrCorrupt) || errors.Is(err, checkpoint.ErrInvalid) != tc.invalid {
				t.Fatalf("Load = found %v, %v; want ErrCorrupt (ErrInvalid %v)", found, err, tc.invalid)
			}
		})
	}

	// The fixture itself is valid, in version 2 only.
	if err := os.WriteFile(path, checkpointFile(2, withSnapshot(`[`+entry+`]`)), 0o644); err != nil {
		t.Fatal(err)
	}
	got, found, err := s.Load()
	if err != nil || !found || len(got.Snapshot) != 1 || !slices.Equal(got.Snapshot[0].Done, []checkpoint.ChunkRange{{From: 0, To: 3}, {From: 5, To: 6}}) {
		t.Fatalf("Load = %+v, %v, %v", got, found, err)
	}
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
	s := New(filepath.Join(t.TempDir(), "cp.json"), ffs)
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
			s := New(path, ffs)
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
			if got := errors.Is(err, checkpoint.ErrFatal); got != tc.fatal {
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
				if !errors.Is(err, checkpoint.ErrFatal) || !errors.Is(err, errDisk) {
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
	s := New(path, OSFS())
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
	s := New(filepath.Join(t.TempDir(), "cp.json"), nil)
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

// TestSaveLoadPublished keeps the difference between an unknown list of published tables (nil) and a
// known empty publication.
func TestSaveLoadPublished(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "cp.json"), nil)
	base := checkpoint.Checkpoint{SystemID: "1", Database: "db", Slot: "s", CommitLSN: 5, FlushLSN: 9}
	for _, tc := range []struct {
		name string
		in   []uint32
	}{
		{"unknown", nil},
		{"known empty", []uint32{}},
		{"tables", []uint32{16384, 16390}},
	} {
		cp := base
		cp.Published = tc.in
		if err := s.Save(cp); err != nil {
			t.Fatalf("%s: Save: %v", tc.name, err)
		}
		got, _, err := s.Load()
		if err != nil {
			t.Fatalf("%s: Load: %v", tc.name, err)
		}
		if (got.Published == nil) != (tc.in == nil) || !reflect.DeepEqual(append([]uint32{}, got.Published...), append([]uint32{}, tc.in...)) {
			t.Fatalf("%s: Published = %#v, want %#v", tc.name, got.Published, tc.in)
		}
	}
}
