package file

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/lsn"
)

// File is an open file as the store uses it: written once, synced, closed. A directory opened by
// FS.OpenDir is only synced and closed.
type File interface {
	Write(p []byte) (int, error)
	Sync() error
	Close() error
	// Name returns the path the file was opened or created with.
	Name() string
}

// FS is the few file operations Store needs. OSFS returns the real one; tests pass their own to
// inject faults.
type FS interface {
	// MkdirAll creates dir and its missing parents.
	MkdirAll(dir string, perm fs.FileMode) error
	// CreateTemp creates a new file in dir, named by pattern as os.CreateTemp does.
	CreateTemp(dir, pattern string) (File, error)
	// Rename atomically replaces newpath with oldpath.
	Rename(oldpath, newpath string) error
	// Remove removes a file.
	Remove(name string) error
	// OpenDir opens a directory so that it can be synced.
	OpenDir(dir string) (File, error)
	// ReadFile returns the content of a file; a missing file is an error satisfying
	// errors.Is(err, fs.ErrNotExist).
	ReadFile(name string) ([]byte, error)
	// ReadDirNames returns the names of the entries of dir.
	ReadDirNames(dir string) ([]string, error)
}

// OSFS returns the FS of the operating system.
func OSFS() FS { return osFS{} }

type osFS struct{}

func (osFS) MkdirAll(dir string, perm fs.FileMode) error { return os.MkdirAll(dir, perm) }
func (osFS) CreateTemp(dir, pattern string) (File, error) {
	return os.CreateTemp(dir, pattern)
}
func (osFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error             { return os.Remove(name) }
func (osFS) OpenDir(dir string) (File, error)     { return os.Open(dir) }
func (osFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }
func (osFS) ReadDirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

// formatVersion is the version of the checkpoint file format written by Save. Load also reads
// version 1, whose payload has no snapshot list.
const formatVersion = 2

// castagnoli is the CRC-32C table used for the payload checksum.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// envelope is the checkpoint file: {"version":2,"crc32c":N,"payload":{...}}. The checksum covers the
// payload's bytes exactly as they appear in the file.
type envelope struct {
	Version int             `json:"version"`
	CRC32C  uint32          `json:"crc32c"`
	Payload json.RawMessage `json:"payload"`
}

// payloadV1 is the payload of format version 1, and the start of every later one.
type payloadV1 struct {
	SystemID  string    `json:"system_id"`
	Timeline  int32     `json:"timeline"`
	Database  string    `json:"database"`
	Slot      string    `json:"slot"`
	CommitLSN lsn.LSN   `json:"commit_lsn"`
	FlushLSN  lsn.LSN   `json:"flush_lsn"`
	UpdatedAt time.Time `json:"updated_at"`
}

// payload is the payload of format version 2: version 1's fields and the unfinished table snapshots.
type payload struct {
	payloadV1
	Snapshot []tableSnapshotJSON `json:"snapshot,omitempty"`
	// Published is absent when unknown, and [] for a known empty publication.
	Published *[]uint32 `json:"published,omitempty"`
}

// tableSnapshotJSON is a checkpoint.TableSnapshot in the file. Done aliases its ranges.
type tableSnapshotJSON struct {
	Gen        lsn.LSN         `json:"gen"`
	OID        uint32          `json:"oid"`
	Schema     string          `json:"schema"`
	Table      string          `json:"table"`
	Pages      uint32          `json:"pages"`
	ChunkPages uint32          `json:"chunk_pages"`
	Done       chunkRangesJSON `json:"done"`
}

// chunkRangesJSON is a list of chunk ranges in the file: [[from,to],...], each range exactly two
// unsigned 32-bit integers.
type chunkRangesJSON []checkpoint.ChunkRange

// MarshalJSON implements json.Marshaler.
func (rs chunkRangesJSON) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+len(rs)*24)
	b = append(b, '[')
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendUint(b, uint64(r.From), 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, uint64(r.To), 10)
		b = append(b, ']')
	}
	return append(b, ']'), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (rs *chunkRangesJSON) UnmarshalJSON(data []byte) error {
	var pairs [][]uint32
	if err := json.Unmarshal(data, &pairs); err != nil {
		return err
	}
	if len(pairs) == 0 {
		*rs = nil
		return nil
	}
	out := make(chunkRangesJSON, len(pairs))
	for i, p := range pairs {
		if len(p) != 2 {
			return fmt.Errorf("chunk range %d has %d numbers, want 2", i, len(p))
		}
		out[i] = checkpoint.ChunkRange{From: p[0], To: p[1]}
	}
	*rs = out
	return nil
}

// Store keeps one checkpoint.Checkpoint in one file. It is safe for concurrent use; Saves are serialized.
type Store struct {
	path string
	fs   FS

	mu    sync.Mutex
	fatal error // first fatal failure; every later Save returns it
}

// New returns a store for the checkpoint file at path, accessed through fsys (OSFS() when
// nil). It does no I/O.
func New(path string, fsys FS) *Store {
	if fsys == nil {
		fsys = OSFS()
	}
	return &Store{path: path, fs: fsys}
}

// Path returns the checkpoint file's path.
func (s *Store) Path() string { return s.path }

// tempPrefix is how the names of the store's temporary files begin.
func (s *Store) tempPrefix() string { return filepath.Base(s.path) + ".tmp-" }

// Load reads the checkpoint. found is false, with a nil error, only when the file does not exist. A
// file that exists but cannot be decoded, fails its checksum or holds an invalid checkpoint is an
// error wrapping checkpoint.ErrCorrupt. Temporary files left by an interrupted Save are ignored.
func (s *Store) Load() (cp checkpoint.Checkpoint, found bool, err error) {
	data, err := s.fs.ReadFile(s.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return checkpoint.Checkpoint{}, false, nil
		}
		return checkpoint.Checkpoint{}, false, fmt.Errorf("read checkpoint: %w", err)
	}
	cp, err = decode(data)
	if err != nil {
		return checkpoint.Checkpoint{}, false, fmt.Errorf("load checkpoint %s: %w; %s", s.path, err, corruptWayOut(s.path))
	}
	return cp, true, nil
}

// corruptWayOut is the advice for a checkpoint file that cannot be used. Without the file,
// replication resumes at the slot's position, which pgstream never confirms past what every sink
// holds: nothing is skipped, but what the file recorded beyond it is delivered again, and so is
// every row if the tables are snapshotted again.
func corruptWayOut(path string) string {
	return "pgstream does not guess where to resume. Either restore " + path + " from a backup; " +
		"or remove it and let the next run snapshot the published tables again (snapshot.mode: initial), " +
		"delivering every row again, then streaming from the slot's position; " +
		"or remove it and set snapshot.mode: never to stream from the slot's position alone: nothing is skipped, " +
		"but changes since then arrive again, and a table snapshot the file held unfinished stays incomplete " +
		"(pgstream snapshot --table re-reads it)"
}

// decode parses and verifies a checkpoint file's content.
func decode(data []byte) (checkpoint.Checkpoint, error) {
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return checkpoint.Checkpoint{}, fmt.Errorf("%w: %v", checkpoint.ErrCorrupt, err)
	}
	for _, c := range data[dec.InputOffset():] {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return checkpoint.Checkpoint{}, fmt.Errorf("%w: data after the checkpoint object", checkpoint.ErrCorrupt)
		}
	}
	if env.Version > formatVersion {
		return checkpoint.Checkpoint{}, fmt.Errorf("%w: unsupported format version %d (written by a newer pgstream? run that version)", checkpoint.ErrCorrupt, env.Version)
	}
	if env.Version != 1 && env.Version != formatVersion {
		return checkpoint.Checkpoint{}, fmt.Errorf("%w: unsupported format version %d", checkpoint.ErrCorrupt, env.Version)
	}
	if len(env.Payload) == 0 {
		return checkpoint.Checkpoint{}, fmt.Errorf("%w: no payload", checkpoint.ErrCorrupt)
	}
	if sum := crc32.Checksum(env.Payload, castagnoli); sum != env.CRC32C {
		return checkpoint.Checkpoint{}, fmt.Errorf("%w: checksum %08x, file says %08x", checkpoint.ErrCorrupt, sum, env.CRC32C)
	}
	var p payload
	var dst any = &p
	if env.Version == 1 {
		// Version 1 has no snapshot list: a "snapshot" field is an unknown field.
		dst = &p.payloadV1
	}
	pdec := json.NewDecoder(bytes.NewReader(env.Payload))
	pdec.DisallowUnknownFields()
	if err := pdec.Decode(dst); err != nil {
		return checkpoint.Checkpoint{}, fmt.Errorf("%w: payload: %v", checkpoint.ErrCorrupt, err)
	}
	cp := checkpoint.Checkpoint{
		SystemID:  p.SystemID,
		Timeline:  p.Timeline,
		Database:  p.Database,
		Slot:      p.Slot,
		CommitLSN: p.CommitLSN,
		FlushLSN:  p.FlushLSN,
		UpdatedAt: p.UpdatedAt,
	}
	if len(p.Snapshot) > 0 {
		cp.Snapshot = make([]checkpoint.TableSnapshot, len(p.Snapshot))
		for i, s := range p.Snapshot {
			cp.Snapshot[i] = checkpoint.TableSnapshot{
				Gen:        s.Gen,
				OID:        s.OID,
				Schema:     s.Schema,
				Table:      s.Table,
				Pages:      s.Pages,
				ChunkPages: s.ChunkPages,
				Done:       s.Done,
			}
		}
	}
	if p.Published != nil {
		cp.Published = append(make([]uint32, 0, len(*p.Published)), *p.Published...)
	}
	if err := cp.Validate(); err != nil {
		return checkpoint.Checkpoint{}, fmt.Errorf("%w: %w", checkpoint.ErrCorrupt, err)
	}
	return cp, nil
}

// encode returns the file content for cp. The result shares no memory with cp.
func encode(cp *checkpoint.Checkpoint) ([]byte, error) {
	pl := payload{payloadV1: payloadV1{
		SystemID:  cp.SystemID,
		Timeline:  cp.Timeline,
		Database:  cp.Database,
		Slot:      cp.Slot,
		CommitLSN: cp.CommitLSN,
		FlushLSN:  cp.FlushLSN,
		UpdatedAt: cp.UpdatedAt.UTC(),
	}}
	if len(cp.Snapshot) > 0 {
		// The ranges are not copied: they are only read, until Marshal returns.
		pl.Snapshot = make([]tableSnapshotJSON, len(cp.Snapshot))
		for i := range cp.Snapshot {
			s := &cp.Snapshot[i]
			pl.Snapshot[i] = tableSnapshotJSON{
				Gen:        s.Gen,
				OID:        s.OID,
				Schema:     s.Schema,
				Table:      s.Table,
				Pages:      s.Pages,
				ChunkPages: s.ChunkPages,
				Done:       chunkRangesJSON(s.Done),
			}
		}
	}
	if cp.Published != nil {
		pl.Published = &cp.Published
	}
	p, err := json.Marshal(pl)
	if err != nil {
		return nil, fmt.Errorf("encode checkpoint: %w", err)
	}
	data, err := json.Marshal(envelope{Version: formatVersion, CRC32C: crc32.Checksum(p, castagnoli), Payload: p})
	if err != nil {
		return nil, fmt.Errorf("encode checkpoint: %w", err)
	}
	return append(data, '\n'), nil
}

// Save replaces the checkpoint durably: it writes a temporary file in the same directory, syncs it,
// renames it over the checkpoint file and syncs the directory, creating the directory first if it is
// missing. When Save returns nil the new checkpoint survives a crash; when it returns another error
// the file holds either the old or the new checkpoint, never a mix.
//
// A failed fsync returns an error wrapping checkpoint.ErrFatal, and every later Save fails with it too. Temporary
// files left by an interrupted Save are removed.
//
// Save reads cp.Snapshot without copying it, and keeps no reference to it once it returns; the caller
// must not modify it during the call.
func (s *Store) Save(cp checkpoint.Checkpoint) error {
	if err := cp.Validate(); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	data, err := encode(&cp)
	if err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fatal != nil {
		return s.fatal
	}

	dir := filepath.Dir(s.path)
	if err := s.fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create checkpoint directory: %w", err)
	}
	s.removeLeftovers(dir)

	f, err := s.fs.CreateTemp(dir, s.tempPrefix()+"*")
	if err != nil {
		return fmt.Errorf("create temporary checkpoint: %w", err)
	}
	tmp := f.Name()
	if err := writeAll(f, data); err != nil {
		_ = f.Close()
		_ = s.fs.Remove(tmp)
		return fmt.Errorf("write temporary checkpoint: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		_ = s.fs.Remove(tmp)
		return s.fail(fmt.Errorf("sync temporary checkpoint %s: %w", tmp, err))
	}
	if err := f.Close(); err != nil {
		_ = s.fs.Remove(tmp)
		return fmt.Errorf("close temporary checkpoint: %w", err)
	}
	if err := s.fs.Rename(tmp, s.path); err != nil {
		_ = s.fs.Remove(tmp)
		return fmt.Errorf("rename checkpoint: %w", err)
	}
	d, err := s.fs.OpenDir(dir)
	if err != nil {
		// The rename is not durable yet; the next Save syncs the directory again.
		return fmt.Errorf("open checkpoint directory: %w", err)
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return s.fail(fmt.Errorf("sync checkpoint directory %s: %w", dir, err))
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("close checkpoint directory: %w", err)
	}
	return nil
}

// fail records err as the store's fatal error and returns it wrapped in checkpoint.ErrFatal. The caller holds mu.
func (s *Store) fail(err error) error {
	s.fatal = fmt.Errorf("%w: %w", checkpoint.ErrFatal, err)
	return s.fatal
}

// removeLeftovers removes temporary files an interrupted Save left in dir. Failures are ignored:
// leftovers never affect Load, and the next Save tries again.
func (s *Store) removeLeftovers(dir string) {
	names, err := s.fs.ReadDirNames(dir)
	if err != nil {
		return
	}
	prefix := s.tempPrefix()
	for _, name := range names {
		if strings.HasPrefix(name, prefix) {
			_ = s.fs.Remove(filepath.Join(dir, name))
		}
	}
}

// writeAll writes data to f, treating a short write without an error as an error.
func writeAll(f File, data []byte) error {
	n, err := f.Write(data)
	if err != nil {
		return err
	}
	if n != len(data) {
		return fmt.Errorf("short write: %d of %d bytes", n, len(data))
	}
	return nil
}
