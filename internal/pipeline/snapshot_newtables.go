package pipeline

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/replication"
)

// tablePoll finds the tables that join the publication while streaming and asks for their snapshot
// by writing a request into the WAL (WriteRequest), which comes back through the slot as a request
// message (snapRequests). It forgets, in the snapshot record, the tables that left the publication.
// run runs on its own goroutine and alone uses its connection; the record has its own lock.
type tablePoll struct {
	interval time.Duration // snapshot.poll_interval
	src      replication.Config
	log      *zap.Logger
	state    *snapState
}

// run lists the publication's tables every Snapshot.PollInterval. A table that joined
// it is snapshotted through a request written into the WAL, exactly like `pgstream snapshot`: the
// request reaches the checkpoint with its transaction, so it survives a crash. A table that left it
// is forgotten, so that adding it again snapshots it again. Failures are logged and retried.
func (tp *tablePoll) run(ctx context.Context) {
	conn := sqlConn{src: tp.src}
	target := newWriteTarget(tp.src)
	defer func() { conn.close(); target.close() }()
	requested := map[uint32]bool{}
	t := time.NewTicker(tp.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c, err := conn.get(ctx)
		if err != nil {
			if ctx.Err() == nil {
				tp.log.Warn("list publication tables: connect failed", zap.Error(err))
			}
			continue
		}
		tables, err := snapshot.ListTables(ctx, c, tp.src.Publication)
		if err != nil {
			if ctx.Err() == nil {
				tp.log.Warn("list publication tables failed", zap.String("publication", tp.src.Publication), zap.Error(err))
			}
			continue
		}
		var added []string
		var addedOIDs []uint32
		current := make(map[uint32]bool, len(tables))
		for _, tb := range tables {
			current[tb.OID] = true
		}
		for _, tb := range tp.state.comparePublished(tables) {
			if !requested[tb.OID] {
				added = append(added, tb.Schema+"."+tb.Name)
				addedOIDs = append(addedOIDs, tb.OID)
			}
		}
		for oid := range requested {
			if !current[oid] {
				delete(requested, oid)
			}
		}
		if len(added) == 0 {
			continue
		}
		wconn, _, err := target.pick(ctx, c)
		if err == nil {
			_, err = WriteRequest(ctx, wconn, tp.src.Slot, added)
		}
		if err != nil {
			if ctx.Err() == nil {
				tp.log.Warn("request snapshot of new tables failed", zap.Strings("tables", added), zap.Error(err))
			}
			continue
		}
		for _, oid := range addedOIDs {
			requested[oid] = true
		}
		tp.log.Info("tables joined the publication; snapshotting them while streaming", zap.Strings("tables", added))
	}
}
