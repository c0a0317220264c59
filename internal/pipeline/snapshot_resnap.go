package pipeline

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/internal/backoff"
	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/replication"
)

// The chunks read while streaming: the queue of chunks waiting for a reader, and the readers.

// jobQueue is the chunks waiting for a reader while streaming. The replication goroutine (a
// request's record) and the pipeline (a resumed snapshot, the chunks the exported snapshot left) add
// to it without blocking; the readers take from it. Safe for concurrent use: jobs is guarded by mu.
type jobQueue struct {
	mu   sync.Mutex
	jobs []chunkJob
	wake chan struct{} // cap 1
}

func newJobQueue() *jobQueue { return &jobQueue{wake: make(chan struct{}, 1)} }

func (q *jobQueue) add(jobs ...chunkJob) {
	q.mu.Lock()
	q.jobs = append(q.jobs, jobs...)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *jobQueue) next(ctx context.Context) (chunkJob, bool) {
	for {
		q.mu.Lock()
		if len(q.jobs) > 0 {
			j := q.jobs[0]
			q.jobs = q.jobs[1:]
			more := len(q.jobs) > 0
			q.mu.Unlock()
			if more {
				select {
				case q.wake <- struct{}{}:
				default:
				}
			}
			return j, true
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-ctx.Done():
			return chunkJob{}, false
		}
	}
}

// resnapReaders are the snapshot.workers readers of queued chunks while streaming (resumed and
// requested snapshots): each takes one chunk at a time from the queue and reads it between
// watermarks (chunkWindows.readWindow) on its own connection. Each reader runs on its own goroutine,
// started by start; the struct is read only once built.
type resnapReaders struct {
	workers int
	src     replication.Config
	db      string
	now     func() time.Time
	log     *zap.Logger
	retry   backoff.Policy // between attempts at a chunk
	jobs    *jobQueue
	windows *chunkWindows
}

// start starts the readers of chunks while streaming (resumed and online snapshots). They stop when
// ctx ends; wait waits for them.
func (rr *resnapReaders) start(ctx context.Context, fail context.CancelCauseFunc) (wait func()) {
	var wg sync.WaitGroup
	for i := range rr.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rr.worker(ctx, i); err != nil {
				fail(err)
			}
		}()
	}
	return wg.Wait
}

// worker reads queued chunks one at a time between watermarks, retrying a failed chunk with
// backoff on a new connection.
func (rr *resnapReaders) worker(ctx context.Context, worker int) error {
	conn := sqlConn{src: rr.src}
	var r *snapshot.Reader
	pt := &pubTables{publication: rr.src.Publication}
	target := newWriteTarget(rr.src)
	defer func() { conn.close(); target.close() }()
	for {
		j, ok := rr.jobs.next(ctx)
		if !ok {
			return nil
		}
		for attempt := 1; ; attempt++ {
			if conn.fresh() {
				c, err := conn.get(ctx)
				if err == nil {
					r, pt.byOID = snapshot.NewReader(c, rr.db, rr.now), nil
				} else if ctx.Err() != nil {
					return nil
				} else {
					rr.log.Warn("snapshot connection failed", zap.Error(err))
				}
			}
			var err error
			if !conn.fresh() {
				if err = rr.windows.readWindow(ctx, conn.conn, target, r, pt, j); err == nil {
					break
				}
			}
			if ctx.Err() != nil {
				return nil
			}
			if attempt >= 5 {
				return fmt.Errorf("snapshot of %s, chunk %d: giving up after %d attempts: %w", j.table.Name(), j.idx, attempt, err)
			}
			wait := rr.retry.Delay(attempt)
			rr.log.Warn("snapshot chunk failed; retrying", zap.String("table", j.table.Name()), zap.Uint32("chunk", j.idx),
				zap.Int("worker", worker), zap.Error(err), zap.Duration("backoff", wait))
			if !conn.fresh() {
				_ = pgsql.Exec(ctx, conn.conn, "ROLLBACK")
			}
			if !backoff.Wait(ctx, wait) {
				return nil
			}
		}
	}
}
