package stdout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/pgstream/pgstream/sinks"
)

// Errors callers branch on with errors.Is.
var (
	// ErrFailed marks a failed write to the writer. The output then may end in a partial line, so the
	// sink refuses every later Write.
	ErrFailed = errors.New("stdout sink failed")
	// ErrClosed is returned by Write after Close.
	ErrClosed = errors.New("stdout sink closed")
	// ErrInvalidEvent (sinks.ErrInvalidEvent) is returned for an event whose Value cannot be one line.
	// Nothing of the batch is written.
	ErrInvalidEvent = sinks.ErrInvalidEvent
)

// Config configures the stdout sink. It has no settings yet.
type Config struct{}

// WithDefaults returns c: the stdout sink has no settings, so none has a default.
func (c Config) WithDefaults() Config { return c }

// Validate reports a configuration New cannot use; every Config is valid today.
func (c Config) Validate() error { return nil }

// Sink writes events to an io.Writer. Write and Close may be called from different goroutines; they
// are serialized.
type Sink struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte // reused for every batch; its bytes are dead once Write returns
	err error  // sticky: set by a failed write or by Close
}

var _ sinks.Sink = (*Sink)(nil)

// New returns a sink writing to env's standard output. The sink does not close it.
func New(cfg Config, env sinks.Env) (*Sink, error) {
	return &Sink{w: env.Output()}, nil
}

// Write formats the batch, one Value and '\n' per event, into a buffer and hands it to the writer in
// one call; it returns when the writer has taken every byte. A failed write returns an error wrapping
// ErrFailed and leaves the sink unusable. b and its events are not retained.
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
	buf, err := sinks.WriteLines(s.w, s.buf, b.Events)
	s.buf = buf
	if errors.Is(err, sinks.ErrInvalidEvent) {
		return err // nothing was written
	}
	if err != nil {
		s.err = fmt.Errorf("%w: write: %w", ErrFailed, err)
		return s.err
	}
	return nil
}

// Close marks the sink closed; later Writes return ErrClosed. The writer is left open.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = ErrClosed
	s.buf = nil
	return nil
}
