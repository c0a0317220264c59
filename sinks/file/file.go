package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/sinks"
)

// Errors callers branch on with errors.Is.
var (
	// ErrFatal marks a failed write or fsync, or a file changed underneath the sink: the file at the
	// path is no longer the one the sink writes (deleted, replaced, moved away), or its size is not
	// what the sink wrote (truncated, appended to by another writer). The batch being written is not
	// acknowledged and the sink refuses every later Write; reopening the file repairs a torn tail.
	ErrFatal = errors.New("file sink failed")
	// ErrClosed is returned by Write after Close.
	ErrClosed = errors.New("file sink closed")
	// ErrInvalidEvent (sinks.ErrInvalidEvent) is returned for an event whose Value cannot be one line.
	// Nothing of the batch is written.
	ErrInvalidEvent = sinks.ErrInvalidEvent
	// ErrConfig is returned by Validate.
	ErrConfig = errors.New("invalid file sink configuration")
)

// Config configures the file sink.
type Config struct {
	// Path of the output file. Required. Its parent directory is created if missing.
	Path string `mapstructure:"path"`
	// Mode is the permission bits, in octal with a leading 0 ("0640"), of the file when Open creates
	// it; the process umask does not narrow them. An existing file keeps its mode. Empty: "0600",
	// since the file holds row data.
	Mode string `mapstructure:"mode"`
}

// DefaultMode is the mode of a file Open creates when Config.Mode is empty.
const DefaultMode os.FileMode = 0o600

// WithDefaults returns a copy of c with Mode set to "0600" when it is empty.
func (c Config) WithDefaults() Config {
	if c.Mode == "" {
		c.Mode = "0" + strconv.FormatUint(uint64(DefaultMode), 8)
	}
	return c
}

// Validate reports a configuration Open cannot use. An empty Mode stands for its default. Validate
// does not change c.
func (c Config) Validate() error {
	if c.Path == "" {
		return fmt.Errorf("%w: path is required", ErrConfig)
	}
	if _, err := c.WithDefaults().perm(); err != nil {
		return err
	}
	return nil
}

// perm parses Mode, which WithDefaults has filled in.
func (c Config) perm() (os.FileMode, error) {
	// A leading 0 is required: YAML reads an unquoted 0640 as the number 416, which arrives here as
	// "416" and must not become mode 0416.
	m, err := strconv.ParseUint(c.Mode, 8, 32)
	if err != nil || len(c.Mode) < 2 || c.Mode[0] != '0' {
		return 0, fmt.Errorf("%w: mode %q is not an octal mode with a leading 0 (YAML reads an unquoted 0640 as the number 416): write it quoted, as in mode: \"0640\"", ErrConfig, c.Mode)
	}
	if m&^0o777 != 0 {
		return 0, fmt.Errorf("%w: mode %q has bits beyond the permission bits (0777): only permissions can be set", ErrConfig, c.Mode)
	}
	if m&0o600 != 0o600 {
		return 0, fmt.Errorf("%w: mode %q does not let its owner read and write the file: pgstream appends to it and reads its tail when it opens it again (the owner digit must be 6 or 7, as in \"0600\")", ErrConfig, c.Mode)
	}
	return os.FileMode(m), nil
}

// file is what the sink needs of an open file; *os.File implements it, tests substitute their own.
type file interface {
	io.Writer
	io.ReaderAt
	Stat() (os.FileInfo, error)
	Truncate(size int64) error
	Sync() error
	Close() error
}

// Sink appends events to a file. Write and Close may be called from different goroutines; they are
// serialized.
type Sink struct {
	mu   sync.Mutex
	f    file
	path string
	// size is what the file must hold: its size after Open repaired its tail plus every byte written
	// since. A file whose size differs was changed by something other than the sink.
	size    int64
	buf     []byte // reused for every batch; its bytes are dead once Write returns
	err     error  // sticky: set by a failed write, fsync or check, or by Close
	dropped int64
}

var _ sinks.Sink = (*Sink)(nil)

// New opens (creating it with cfg.Mode if needed) the file cfg.Path for appending, cuts a torn tail
// back to the last complete line (a warning to env's log says so) and syncs the file and its
// directory.
func New(cfg Config, env sinks.Env) (*Sink, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	perm, _ := cfg.perm()
	dir := filepath.Dir(cfg.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create directory of %s: %w", cfg.Path, err)
	}
	f, err := openAppend(cfg.Path, perm)
	if err != nil {
		return nil, err
	}
	// Make the file's directory entry durable in case Open just created it.
	if err := syncDir(dir); err != nil {
		_ = f.Close()
		return nil, err
	}
	s, err := newSink(f, cfg.Path, env.Log)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open %s: %w", cfg.Path, err)
	}
	return s, nil
}

// openAppend opens path for reading and appending. A file it creates gets exactly perm, whatever the
// umask; an existing file keeps its mode.
func openAppend(path string, perm os.FileMode) (*os.File, error) {
	var err error
	// A file removed between the two opens is created by the next attempt.
	for range 3 {
		var f *os.File
		f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, perm)
		if err == nil {
			if err := f.Chmod(perm); err != nil {
				_ = f.Close()
				return nil, fmt.Errorf("set mode of %s: %w", path, err)
			}
			return f, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			break
		}
		f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	return nil, fmt.Errorf("open %s: %w", path, err)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: sync directory %s: %w", ErrFatal, dir, err)
	}
	return nil
}

// newSink repairs f's tail and returns a sink appending to it. f must be open for appending; path
// is where it was opened, checked after every write to still name it.
func newSink(f file, path string, log *zap.Logger) (*Sink, error) {
	size, dropped, err := repairTail(f)
	if err != nil {
		return nil, err
	}
	if dropped > 0 && log != nil {
		log.Warn("file sink: dropped a torn last line left by an interrupted write", zap.String("path", path), zap.Int64("bytes", dropped))
	}
	return &Sink{f: f, path: path, size: size, dropped: dropped}, nil
}

// repairTail truncates f after its last '\n' (or to empty) when it does not end with one, syncs it,
// and returns the size it kept and the number of bytes dropped.
func repairTail(f file) (size, dropped int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("stat: %w", err)
	}
	size = fi.Size()
	if size == 0 {
		return 0, 0, nil
	}
	const chunk = 64 << 10
	buf := make([]byte, min(chunk, size))
	end := size // search [0, end) backwards
	keep := int64(0)
	for end > 0 {
		n := min(int64(len(buf)), end)
		off := end - n
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return 0, 0, fmt.Errorf("read tail: %w", err)
		}
		if end == size && buf[n-1] == '\n' {
			return size, 0, nil // intact
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			keep = off + int64(i) + 1
			break
		}
		end = off
	}
	if err := f.Truncate(keep); err != nil {
		return 0, 0, fmt.Errorf("truncate torn tail: %w", err)
	}
	if err := f.Sync(); err != nil {
		return 0, 0, fmt.Errorf("%w: sync after truncating torn tail: %w", ErrFatal, err)
	}
	return keep, size - keep, nil
}

// Dropped returns the number of bytes of a torn last line Open removed (0 when the file was intact).
func (s *Sink) Dropped() int64 { return s.dropped }

// Write appends each event's Value and a '\n' (sinks.WriteLines: one write call per 1 MiB), then
// fsyncs. It returns nil only after the fsync succeeded and the file at the configured path is still
// the file written to, holding exactly the bytes the sink wrote.
//
// Before writing, the open file's size is checked (one fstat): a file truncated or appended to by
// someone else, or deleted, gets nothing more. After the fsync, the size is checked again and the
// path must still name the open file (one fstat and one stat). Any of these failing, or a failed
// write or fsync, returns an error wrapping ErrFatal and leaves the sink unusable: the batch is not
// acknowledged. b and its events are not retained.
func (s *Sink) Write(ctx context.Context, b *sinks.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(b.Events) == 0 {
		return nil
	}
	if err := s.check(false, 0); err != nil {
		s.err = err
		return err
	}
	buf, err := sinks.WriteLines(s.f, s.buf, b.Events)
	s.buf = buf
	if errors.Is(err, sinks.ErrInvalidEvent) {
		return err // nothing was written
	}
	if err != nil {
		s.err = fmt.Errorf("%w: write %s: %w", ErrFatal, s.path, err)
		return s.err
	}
	if err := s.f.Sync(); err != nil {
		s.err = fmt.Errorf("%w: sync %s: %w", ErrFatal, s.path, err)
		return s.err
	}
	var n int64
	for i := range b.Events {
		n += int64(len(b.Events[i].Value)) + 1
	}
	s.size += n
	if err := s.check(true, n); err != nil {
		s.err = err
		return err
	}
	return nil
}

// check returns an error wrapping ErrFatal when the open file has no name left, or (atPath) the
// configured path no longer names it, or its size is not s.size. pending is how many bytes of s.size
// belong to the batch being written, not acknowledged yet.
func (s *Sink) check(atPath bool, pending int64) error {
	fi, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("%w: stat %s: %w", ErrFatal, s.path, err)
	}
	n, ok := links(fi)
	if deleted := ok && n == 0; deleted || atPath {
		if err := s.samePath(fi, deleted); err != nil {
			return err
		}
	}
	switch size := fi.Size(); {
	case size < s.size:
		// Before a write every byte of s.size was acknowledged; after it, the truncation may have
		// come before the batch's bytes were appended, or cut into them.
		lost := fmt.Sprintf("%d bytes", s.size-size)
		if pending > 0 {
			lost = fmt.Sprintf("up to %d bytes", min(s.size-size, s.size-pending))
		}
		return fmt.Errorf("%w: %s was truncated by something other than pgstream: it holds %d bytes where pgstream wrote %d; "+
			"%s of acknowledged changes are gone from the file and are not sent again; the batch was not acknowledged; "+
			"stop whatever truncates it (rotate the file by renaming it, not by copying and truncating it), "+
			"then restart: pgstream cuts a partial last line and re-sends from its checkpoint",
			ErrFatal, s.path, size, s.size, lost)
	case size > s.size:
		return fmt.Errorf("%w: %s grew by %d bytes that pgstream did not write (it holds %d bytes where pgstream wrote %d): "+
			"another process appends to it, so its lines and pgstream's may be interleaved; the batch was not acknowledged; "+
			"make pgstream the file's only writer, then restart: pgstream cuts a partial last line and re-sends from its checkpoint",
			ErrFatal, s.path, size-s.size, size, s.size)
	}
	return nil
}

// samePath returns an error wrapping ErrFatal unless the configured path names the open file fi.
// deleted: fi has no name left, so the path names another file or none.
func (s *Sink) samePath(fi os.FileInfo, deleted bool) error {
	at, err := os.Stat(s.path)
	var what string
	switch {
	case errors.Is(err, fs.ErrNotExist) && deleted:
		what = "was deleted"
	case errors.Is(err, fs.ErrNotExist):
		what = "was moved away (no file is at the path any more)"
	case err != nil:
		return fmt.Errorf("%w: cannot check that %s is still the file pgstream writes to: %w; the batch was not acknowledged; "+
			"make the path reachable again, then restart: pgstream re-sends from its checkpoint", ErrFatal, s.path, err)
	case deleted || !os.SameFile(fi, at):
		what = "was replaced by another file"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s %s while pgstream was writing to it; the batch was not acknowledged; "+
		"restore the file or point path elsewhere, then restart: pgstream re-sends from its checkpoint",
		ErrFatal, s.path, what)
}

// Close closes the file. Later Writes return ErrClosed; a second Close returns nil.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	s.err = ErrClosed
	s.buf = nil
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}
