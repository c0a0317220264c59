package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/sinks"
)

// Errors callers branch on with errors.Is.
var (
	// ErrFatal marks a failed write or fsync. The file's content past the last acknowledged batch is
	// then unknown, so the sink refuses every later Write; reopening it repairs the tail.
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
	// Logger receives a warning when Open repairs a torn tail. Nil: no logging.
	Logger *zap.Logger `mapstructure:"-"`
}

// Validate reports a configuration Open cannot use.
func (c *Config) Validate() error {
	if c.Path == "" {
		return fmt.Errorf("%w: path is required", ErrConfig)
	}
	return nil
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
	mu      sync.Mutex
	f       file
	buf     []byte // reused for every batch; its bytes are dead once Write returns
	err     error  // sticky: set by a failed write or fsync, or by Close
	dropped int64
}

var _ sinks.Sink = (*Sink)(nil)

// Open opens (creating if needed) the file cfg.Path for appending, cuts a torn tail back to the last
// complete line and syncs the file and its directory.
func Open(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir := filepath.Dir(cfg.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create directory of %s: %w", cfg.Path, err)
	}
	f, err := os.OpenFile(cfg.Path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cfg.Path, err)
	}
	// Make the file's directory entry durable in case Open just created it.
	if err := syncDir(dir); err != nil {
		_ = f.Close()
		return nil, err
	}
	s, err := newSink(f, cfg.Logger)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open %s: %w", cfg.Path, err)
	}
	return s, nil
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

// newSink repairs f's tail and returns a sink appending to it. f must be open for appending.
func newSink(f file, log *zap.Logger) (*Sink, error) {
	dropped, err := repairTail(f)
	if err != nil {
		return nil, err
	}
	if dropped > 0 && log != nil {
		log.Warn("file sink: dropped a torn last line left by an interrupted write", zap.Int64("bytes", dropped))
	}
	return &Sink{f: f, dropped: dropped}, nil
}

// repairTail truncates f after its last '\n' (or to empty) when it does not end with one, syncs it,
// and returns the number of bytes dropped.
func repairTail(f file) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	size := fi.Size()
	if size == 0 {
		return 0, nil
	}
	const chunk = 64 << 10
	buf := make([]byte, min(chunk, size))
	end := size // search [0, end) backwards
	keep := int64(0)
	for end > 0 {
		n := min(int64(len(buf)), end)
		off := end - n
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return 0, fmt.Errorf("read tail: %w", err)
		}
		if end == size && buf[n-1] == '\n' {
			return 0, nil // intact
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			keep = off + int64(i) + 1
			break
		}
		end = off
	}
	if err := f.Truncate(keep); err != nil {
		return 0, fmt.Errorf("truncate torn tail: %w", err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("%w: sync after truncating torn tail: %w", ErrFatal, err)
	}
	return size - keep, nil
}

// Dropped returns the number of bytes of a torn last line Open removed (0 when the file was intact).
func (s *Sink) Dropped() int64 { return s.dropped }

// Write appends each event's Value and a '\n' (sinks.WriteLines: one write call per 1 MiB), then
// fsyncs. It returns nil only after the fsync succeeded. A failed write or fsync returns an error
// wrapping ErrFatal and leaves the sink unusable. b and its events are not retained.
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
	buf, err := sinks.WriteLines(s.f, s.buf, b.Events)
	s.buf = buf
	if errors.Is(err, sinks.ErrInvalidEvent) {
		return err // nothing was written
	}
	if err != nil {
		s.err = fmt.Errorf("%w: write: %w", ErrFatal, err)
		return s.err
	}
	if err := s.f.Sync(); err != nil {
		s.err = fmt.Errorf("%w: sync: %w", ErrFatal, err)
		return s.err
	}
	return nil
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
