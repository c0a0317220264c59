package pipeline

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/health"
)

// checkpointer saves the position every sink acknowledged, together with the snapshot progress of
// the same batches: every interval while changes flow, on demand, and once more when stopped. It
// owns the durable position, the only one ever confirmed to the server.
type checkpointer struct {
	store    Store
	snap     *snapState
	interval time.Duration
	now      func() time.Time
	log      *zap.Logger

	// Set by the pipeline before the first save. The session changes the timeline after a
	// failover (setTimeline); saves read it under snap.saveMu.
	ident   checkpoint.Checkpoint // identity fields of the checkpoint
	tracker *checkpoint.Tracker
	// snapDone is set when the list of unfinished snapshots becomes empty after having tables.
	snapDone *atomic.Bool

	durable atomic.Pointer[checkpoint.Position] // newest position the store holds
	health  *health.Board
}

// Durable returns the newest position the store holds. Safe for concurrent use.
func (c *checkpointer) Durable() checkpoint.Position {
	if d := c.durable.Load(); d != nil {
		return *d
	}
	return checkpoint.Position{}
}

// run saves every interval until stop is closed, then saves once more. When ctx ends first (a sink
// failed) it still records what every sink did acknowledge, once stop is closed.
func (c *checkpointer) run(ctx context.Context, stop <-chan struct{}) error {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	defer c.health.Done(LoopCheckpointer)
	for {
		select {
		case <-t.C:
			c.health.Beat(LoopCheckpointer)
			if err := c.save(); err != nil {
				return err
			}
		case <-ctx.Done():
			<-stop
			return c.save()
		case <-stop:
			return c.save()
		}
	}
}

// setTimeline records that the checkpoint's positions are on timeline tli from now on: the server
// was promoted from the timeline of the positions saved so far, after all of them.
func (c *checkpointer) setTimeline(tli int32) {
	c.snap.saveMu.Lock()
	defer c.snap.saveMu.Unlock()
	c.ident.Timeline = tli
}

// save saves the position every sink acknowledged with the snapshot progress of the same batches,
// when either moved.
func (c *checkpointer) save() error {
	c.snap.saveMu.Lock()
	defer c.snap.saveMu.Unlock()
	pos, seq := c.tracker.AckedSeq()
	had := len(c.snap.tables) > 0
	completed, changed := c.snap.apply(seq)
	if pos == c.Durable() && !changed {
		return nil
	}
	cp := c.ident
	cp.CommitLSN, cp.FlushLSN, cp.UpdatedAt, cp.Snapshot = pos.CommitLSN, pos.EndLSN, c.now(), c.snap.tables
	cp.Published = c.snap.publishedList()
	if err := c.store.Save(cp); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	c.durable.Store(&pos)
	for _, t := range completed {
		c.log.Info("table snapshot complete", zap.String("table", t))
	}
	if had && len(c.snap.tables) == 0 {
		c.snapDone.Store(true)
	}
	return nil
}
