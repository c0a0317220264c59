// Package retry runs an operation again after transient failures, waiting an exponential backoff
// (internal/backoff) between attempts, until it succeeds, fails permanently, runs out of retries
// or its context ends. It is the retry loop of the sinks that talk to a broker: each describes
// its own permanent errors, log message and retry bound in a Loop.
package retry

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/internal/backoff"
)

// ErrExhausted is what Do wraps when Loop.MaxRetries transient failures happened, unless the
// Loop names its own error.
var ErrExhausted = errors.New("retries exhausted")

// Recorder keeps the failure being retried, so that a Health method can report it while Do has
// not returned yet; sinks.Failing is one.
type Recorder interface {
	// Set records err as the failure being retried.
	Set(err error)
	// Clear records a success.
	Clear()
}

// Loop says how to retry one kind of operation. The zero value of each field but Backoff is
// usable and documented; a Loop is a plain value, safe to copy and to use concurrently when its
// Log, Permanent and Failing are.
type Loop struct {
	// Backoff is the wait before each retry. Required: Min > 0 and Max >= Min.
	Backoff backoff.Policy
	// Log receives a warning before each wait, with the fields what, attempt, backoff and error.
	// Nil: nothing is logged.
	Log *zap.Logger
	// Message is that warning's message, e.g. "kafka write failed, retrying". "": "retrying".
	Message string
	// Permanent reports an error no retry can change; Do returns it as it is. Nil: every error
	// is transient.
	Permanent func(error) bool
	// MaxRetries bounds the retries: after MaxRetries+1 failed attempts Do returns an error
	// wrapping Exhausted and the last failure. 0: retry until the context ends.
	MaxRetries int
	// Exhausted is the error Do wraps when MaxRetries is reached. Nil: ErrExhausted.
	Exhausted error
	// Failing records each failure ("what: error") and clears it on success. Nil: none.
	Failing Recorder
}

// Do runs fn until it returns nil, and returns nil then. It returns earlier:
//
//   - when ctx ends, "what: " and the context's cause (context.Cause), even when fn's own error
//     says something else: a failure while the context ends is taken as caused by it;
//   - when fn's error is permanent (Loop.Permanent), that error unchanged;
//   - after Loop.MaxRetries retries, "Exhausted: what after N attempts: " and fn's last error.
//
// Between attempts it waits Loop.Backoff.Delay(attempt), logging why.
func (l Loop) Do(ctx context.Context, what string, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			if l.Failing != nil {
				l.Failing.Clear()
			}
			return nil
		}
		if l.Failing != nil {
			l.Failing.Set(fmt.Errorf("%s: %w", what, err))
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, context.Cause(ctx))
		}
		if l.Permanent != nil && l.Permanent(err) {
			return err
		}
		if l.MaxRetries > 0 && attempt > l.MaxRetries {
			exhausted := l.Exhausted
			if exhausted == nil {
				exhausted = ErrExhausted
			}
			return fmt.Errorf("%w: %s after %d attempts: %w", exhausted, what, attempt, err)
		}
		d := l.Backoff.Delay(attempt)
		if l.Log != nil {
			msg := l.Message
			if msg == "" {
				msg = "retrying"
			}
			l.Log.Warn(msg, zap.String("what", what), zap.Int("attempt", attempt), zap.Duration("backoff", d), zap.Error(err))
		}
		if !backoff.Wait(ctx, d) {
			return fmt.Errorf("%s: %w", what, context.Cause(ctx))
		}
	}
}
