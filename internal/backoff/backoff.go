// Package backoff computes the waits between retries: exponential from a minimum to a maximum, less
// a random part of up to a quarter, so that many clients that failed together do not retry
// together.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff with jitter between Min and Max. Min must be positive and Max at
// least Min.
type Policy struct {
	Min, Max time.Duration
}

// Delay returns the wait before retry number attempt (1 for the first): Min·2^(attempt-1), at most
// Max, less a random duration of up to a quarter of that.
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Max
	if shift := attempt - 1; shift < 62 && p.Min <= p.Max>>max(shift, 0) {
		d = p.Min << max(shift, 0)
	}
	return d - time.Duration(rand.Int64N(int64(d)/4+1))
}

// Wait waits d, or until ctx ends; it reports whether the whole wait passed.
func Wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
