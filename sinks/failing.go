package sinks

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Failing records the failure a sink is retrying inside a Write, so that its Health method can
// tell while the Write itself has not returned yet. The zero value records no failure. Safe for
// concurrent use.
type Failing struct {
	cur atomic.Pointer[failure]
}

type failure struct {
	err   error
	since time.Time
}

// Set records err as the failure being retried; a failure already recorded keeps its start.
func (f *Failing) Set(err error) {
	since := time.Now()
	if old := f.cur.Load(); old != nil {
		since = old.since
	}
	f.cur.Store(&failure{err: err, since: since})
}

// Clear records that the sink succeeded.
func (f *Failing) Clear() {
	if f.cur.Load() != nil {
		f.cur.Store(nil)
	}
}

// Err returns the failure being retried, saying since when, or nil.
func (f *Failing) Err() error {
	c := f.cur.Load()
	if c == nil {
		return nil
	}
	return fmt.Errorf("failing since %s (%s): %w", c.since.UTC().Format(time.RFC3339), time.Since(c.since).Truncate(time.Second), c.err)
}
