package retry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgstream/pgstream/internal/backoff"
)

var fast = backoff.Policy{Min: time.Millisecond, Max: 2 * time.Millisecond}

// recorder is a Recorder that keeps what it was told.
type recorder struct {
	sets   []string
	clears int
}

func (r *recorder) Set(err error) { r.sets = append(r.sets, err.Error()) }
func (r *recorder) Clear()        { r.clears++ }

// failTimes returns an fn that fails n times with err, then succeeds, and the count of calls.
func failTimes(n int, err error) (func() error, *int) {
	calls := 0
	return func() error {
		calls++
		if calls <= n {
			return err
		}
		return nil
	}, &calls
}

func TestDoRetriesUntilSuccess(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	rec := &recorder{}
	fn, calls := failTimes(3, errors.New("broker away"))
	l := Loop{Backoff: fast, Log: zap.New(core), Message: "test write failed, retrying", Failing: rec}
	if err := l.Do(context.Background(), "write", fn); err != nil {
		t.Fatalf("Do = %v", err)
	}
	if *calls != 4 || len(rec.sets) != 3 || rec.sets[0] != "write: broker away" || rec.clears != 1 {
		t.Fatalf("calls %d, recorded %q, cleared %d", *calls, rec.sets, rec.clears)
	}
	warns := logs.FilterMessage("test write failed, retrying").All()
	if len(warns) != 3 {
		t.Fatalf("%d warnings, want 3", len(warns))
	}
	f := warns[1].ContextMap()
	if f["what"] != "write" || f["attempt"] != int64(2) || f["error"] != "broker away" {
		t.Errorf("second warning's fields = %v", f)
	}
	if _, ok := f["backoff"]; !ok {
		t.Errorf("no backoff field: %v", f)
	}
}

func TestDoStopsAtPermanentError(t *testing.T) {
	perm := errors.New("refused for good")
	fn, calls := failTimes(5, perm)
	l := Loop{Backoff: fast, Permanent: func(err error) bool { return errors.Is(err, perm) }}
	if err := l.Do(context.Background(), "write", fn); err != perm {
		t.Fatalf("Do = %v, want the permanent error itself", err)
	}
	if *calls != 1 {
		t.Fatalf("%d calls, want 1", *calls)
	}
}

func TestDoMaxRetries(t *testing.T) {
	fn, calls := failTimes(100, errors.New("still away"))
	err := Loop{Backoff: fast, MaxRetries: 2}.Do(context.Background(), "write", fn)
	if !errors.Is(err, ErrExhausted) || err.Error() != "retries exhausted: write after 3 attempts: still away" || *calls != 3 {
		t.Fatalf("Do = %v after %d calls", err, *calls)
	}
	mine := errors.New("my retries exhausted")
	fn, _ = failTimes(100, errors.New("still away"))
	if err := (Loop{Backoff: fast, MaxRetries: 1, Exhausted: mine}).Do(context.Background(), "w", fn); !errors.Is(err, mine) {
		t.Fatalf("Do = %v, want it to wrap the Loop's own error", err)
	}
}

func TestDoEndsWithTheContext(t *testing.T) {
	cause := errors.New("shutting down")
	ctx, cancel := context.WithCancelCause(context.Background())
	// Cancelled while waiting: the wait is long, the call returns at once.
	calls := 0
	done := make(chan error, 1)
	go func() {
		done <- Loop{Backoff: backoff.Policy{Min: time.Hour, Max: time.Hour}}.Do(ctx, "write", func() error {
			calls++
			if calls == 1 {
				cancel(cause)
			}
			return errors.New("away")
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, cause) || !strings.HasPrefix(err.Error(), "write: ") {
			t.Fatalf("Do = %v, want the context's cause", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Do did not return when its context ended")
	}

	// Cancelled during a wait.
	ctx, cancel = context.WithCancelCause(context.Background())
	go func() {
		done <- Loop{Backoff: backoff.Policy{Min: time.Hour, Max: time.Hour}}.Do(ctx, "write", func() error { return errors.New("away") })
	}()
	cancel(cause)
	select {
	case err := <-done:
		if !errors.Is(err, cause) {
			t.Fatalf("Do = %v, want the context's cause", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Do did not return when its context ended")
	}
}
