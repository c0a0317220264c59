package e2e

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/sinks"
)

// stallingSink holds its first Write for a while, as a sink whose broker is down would.
type stallingSink struct {
	inner  sinks.Sink
	stall  time.Duration
	writes atomic.Int32
}

func (s *stallingSink) Write(ctx context.Context, b *sinks.Batch) error {
	if s.writes.Add(1) == 1 {
		select {
		case <-time.After(s.stall):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.inner.Write(ctx, b)
}

func (s *stallingSink) Close() error { return s.inner.Close() }

// A sink stuck for longer than wal_sender_timeout must not cost the replication session: status
// updates keep flowing while reading is paused, and nothing is lost.
func TestStuckSinkOutlivesWalSenderTimeout(t *testing.T) {
	db := newDB(t)
	exec1(t, db, `CREATE TABLE t (id int PRIMARY KEY, pad text)`)
	stall := 3 * walSenderTimeout
	r := startPipeline(t, db, runOpts{
		wrap:   func(s sinks.Sink) sinks.Sink { return &stallingSink{inner: s, stall: stall} },
		status: 10 * time.Second, // shortened by the pipeline to wal_sender_timeout/3
		// A small in-flight bound so that reading really pauses while the sink is stuck.
		pcfg: pipeline.Config{MaxInFlightBytes: 1 << 20, MaxBatchBytes: 256 << 10},
	})
	r.waitStreaming()
	_, pidBefore := slotState(t, r.slot)
	start := time.Now()
	exec1(t, db, `INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g`)
	for i := 0; i < 50; i++ {
		exec1(t, db, fmt.Sprintf(`INSERT INTO t VALUES (%d, 'late')`, 100000+i))
	}
	evs := waitEvents(t, r.path, stall+60*time.Second, atLeast(20050))
	if time.Since(start) < stall {
		t.Fatalf("events arrived before the sink's stall ended: the stall did not happen")
	}
	_, pidAfter := slotState(t, r.slot)
	if pidBefore == "" || pidBefore != pidAfter {
		t.Fatalf("walsender changed from %q to %q: the session was dropped while the sink was stuck", pidBefore, pidAfter)
	}
	seen := map[string]bool{}
	for _, e := range evs {
		seen[num(e.row("after")["id"])] = true
	}
	if len(seen) != 20050 {
		t.Fatalf("distinct rows = %d, want 20050", len(seen))
	}
}

// The server restarting under a running pipeline: it reconnects, resumes from the checkpoint and
// every change arrives.
func TestServerRestartIsSurvived(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts the shared test cluster")
	}
	db := newDB(t)
	exec1(t, db, `CREATE TABLE t (id int PRIMARY KEY)`)
	r := startPipeline(t, db, runOpts{})
	r.waitStreaming()
	exec1(t, db, `INSERT INTO t SELECT generate_series(1, 100)`)
	waitEvents(t, r.path, 60*time.Second, atLeast(100))
	if err := cluster.Restart("fast"); err != nil {
		t.Fatal(err)
	}
	exec1(t, db, `INSERT INTO t SELECT generate_series(101, 200)`)
	evs := waitEvents(t, r.path, 120*time.Second, func(e []event) bool {
		ids := map[string]bool{}
		for _, x := range e {
			ids[num(x.row("after")["id"])] = true
		}
		return len(ids) == 200
	})
	if err := r.stop(); err != nil {
		t.Fatalf("pipeline ended with %v after the restart", err)
	}
	// Exactly once here: the restart happened between transactions, which were all acknowledged.
	if len(evs) != 200 {
		t.Errorf("got %d events for 200 rows after a clean server restart", len(evs))
	}
}
