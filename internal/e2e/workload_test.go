package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/internal/pgtest"
)

// A workload writes transactions on one connection while pgstream runs, one after another, until
// it is stopped. It stops only between transactions and never cancels a statement: the server may
// still commit a statement whose client was cancelled, after the test has read what it expects.
// Every test that writes while pgstream runs uses one.
type workload struct {
	stop      atomic.Bool
	committed atomic.Int64
	done      chan error
	ended     bool
	result    error
}

// workloadTx sends transaction i on conn and returns once the server has answered it. It is never
// given a context that is cancelled.
type workloadTx func(ctx context.Context, conn *pgconn.PgConn, i int) error

// startWorkload connects to db on pg and runs tx for i = 0, 1, 2, … with a pause of up to maxPause
// (chosen at random) between transactions, until Stop or until tx fails. The workload is stopped
// when the test ends.
func startWorkload(t testing.TB, pg *pgtest.Cluster, db string, maxPause time.Duration, tx workloadTx) *workload {
	t.Helper()
	w := &workload{done: make(chan error, 1)}
	go func() {
		ctx := context.Background()
		conn, err := pg.Connect(ctx, db)
		if err != nil {
			w.done <- fmt.Errorf("workload: connect: %w", err)
			return
		}
		defer conn.Close(ctx)
		for i := 0; !w.stop.Load(); i++ {
			if err := tx(ctx, conn, i); err != nil {
				w.done <- fmt.Errorf("workload: transaction %d: %w", i, err)
				return
			}
			w.committed.Add(1)
			if maxPause > 0 {
				time.Sleep(rand.N(maxPause + 1))
			}
		}
		w.done <- nil
	}()
	t.Cleanup(func() { _ = w.Stop() })
	return w
}

// sqlWorkload runs the transactions that next writes as SQL text (BEGIN; …; COMMIT;), calling
// committed (when not nil) after each has committed.
func sqlWorkload(t testing.TB, pg *pgtest.Cluster, db string, maxPause time.Duration, next func(i int) (sql string, committed func())) *workload {
	return startWorkload(t, pg, db, maxPause, func(ctx context.Context, conn *pgconn.PgConn, i int) error {
		sql, committed := next(i)
		if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
			return err
		}
		if committed != nil {
			committed()
		}
		return nil
	})
}

// Stop asks the workload to stop after the transaction in flight and waits for it; it returns the
// error that ended it early, if any. It may be called more than once.
func (w *workload) Stop() error {
	w.stop.Store(true)
	if !w.ended {
		w.result, w.ended = <-w.done, true
	}
	return w.result
}

// MustStop is Stop, failing the test if the workload had failed.
func (w *workload) MustStop(t testing.TB) {
	t.Helper()
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
}

// Failed reports, with a message, whether the workload has ended by itself with an error: a
// waitUntil's ended function.
func (w *workload) Failed() (string, bool) {
	if w.ended {
		return fmt.Sprintf("the workload ended: %v", w.result), w.result != nil
	}
	select {
	case err := <-w.done:
		w.result, w.ended = err, true
		return fmt.Sprintf("the workload ended: %v", err), err != nil
	default:
		return "", false
	}
}

// Committed is the number of transactions committed so far.
func (w *workload) Committed() int64 { return w.committed.Load() }
