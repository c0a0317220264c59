package pipeline

import (
	"context"
	"fmt"
	"sync"
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

	// Set by the pipeline before the first save. The timeline changes after a promotion: the
	// session sets it after a reconnect, the follower before a save (setTimeline); it is read and
	// written under identMu.
	identMu sync.Mutex
	ident   checkpoint.Checkpoint // identity fields of the checkpoint
	tracker *checkpoint.Tracker
	// follow, set while the source is a standby, reads the server's timeline before each save of
	// a new position, so that the checkpoint follows a promotion (timelineFollower).
	follow timelineReader

	durable atomic.Pointer[checkpoint.Position] // newest position the store holds
	health  *health.Board

	saving sync.Mutex // one save at a time: the position read first is saved in order, follow is used by one
}

// timelineReader reads the server's timeline for the checkpointer (timelineFollower). ok is false
// when it could not be read.
type timelineReader interface {
	// read returns the server's identity, WAL end and timeline, with the timeline's history
	// when the timeline is not label.
	read(label int32) (srv checkpoint.Server, ok bool)
	close()
}

// identity returns the identity fields of the checkpoint, with the timeline it records now. Safe
// for concurrent use once the pipeline has set ident.
func (c *checkpointer) identity() checkpoint.Checkpoint {
	c.identMu.Lock()
	defer c.identMu.Unlock()
	return c.ident
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
	c.identMu.Lock()
	defer c.identMu.Unlock()
	c.ident.Timeline = tli
}

// save saves the position every sink acknowledged with the snapshot progress of the same batches,
// when either moved.
func (c *checkpointer) save() error {
	c.saving.Lock()
	defer c.saving.Unlock()
	pos, seq := c.tracker.AckedSeq()
	if c.follow != nil && pos != c.Durable() {
		// The timeline is read after the position was: see timelineFollower.
		if ok, err := c.followTimeline(); !ok || err != nil {
			return err
		}
	}
	completed, err := c.snap.save(seq, func(v snapView) error {
		if pos == c.Durable() && !v.changed {
			return nil
		}
		cp := c.identity()
		cp.CommitLSN, cp.FlushLSN, cp.UpdatedAt, cp.Snapshot = pos.CommitLSN, pos.EndLSN, c.now(), v.tables()
		cp.Published = v.published()
		if err := c.store.Save(cp); err != nil {
			return fmt.Errorf("save checkpoint: %w", err)
		}
		c.durable.Store(&pos)
		return nil
	})
	if err != nil {
		return err
	}
	for _, t := range completed {
		c.log.Info("table snapshot complete", zap.String("table", t))
	}
	return nil
}

// followTimeline moves the checkpoint to the server's timeline when the server moved to a later one
// whose history holds the durable position (checkpoint.Handed, as for a reconnect), and refuses
// any other timeline with ErrRewound. It reports false when the timeline could not be read: the
// save waits for the next attempt.
func (c *checkpointer) followTimeline() (bool, error) {
	cp := c.identity()
	srv, ok := c.follow.read(cp.Timeline)
	if !ok {
		return false, nil
	}
	if srv.SystemID != cp.SystemID {
		return false, fmt.Errorf("%w: the server's system identifier changed from %s to %s", checkpoint.ErrMismatch, cp.SystemID, srv.SystemID)
	}
	if srv.Timeline == cp.Timeline {
		return true, nil
	}
	durable := c.Durable()
	cp.CommitLSN, cp.FlushLSN = durable.CommitLSN, durable.EndLSN
	if err := c.store.Handed(cp, srv, durable.EndLSN); err != nil {
		return false, err
	}
	c.log.Info("the source moved to a new timeline (promoted, or following its promoted primary); the checkpoint follows it",
		zap.Int32("from_timeline", cp.Timeline), zap.Int32("to_timeline", srv.Timeline))
	c.setTimeline(srv.Timeline)
	return true, nil
}
