package pipeline

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/sinks"
)

// One chunk read under the row rate cap.

// paceRows is how many rows a snapshot reader reads between two waits of the row rate limit.
const paceRows = 256

// newRowLimit returns the limiter of snapshot.max_rows_per_second, nil when there is no cap. Its
// burst is a tenth of a second's rows, at least paceRows.
func newRowLimit(perSecond int) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), max(paceRows, perSecond/10))
}

// chunkReader reads one chunk under snapshot.max_rows_per_second, the row rate cap that every
// reader shares (the exported reads and the readers while streaming). Safe for concurrent use: the
// limiter is; the rest is read only.
type chunkReader struct {
	limit *rate.Limiter // nil: no cap
	log   *zap.Logger
}

// readChunk reads one chunk on c, in whatever transaction c has open. Full batches go to full
// (when maxEvents > 0) and the rest, possibly empty, to last; either returning false stops the
// read. A table that no longer exists reads as empty.
func (cr *chunkReader) readChunk(ctx context.Context, c *pgconn.PgConn, r *snapshot.Reader, pt *pubTables, j chunkJob,
	full func(*batch) bool, maxEvents, maxBytes int, last func(*batch) bool) error {
	pub, err := pt.lookup(ctx, c, j.table.OID)
	if err != nil {
		return err
	}
	b := newBatch()
	stopped := errors.New("stopped")
	unpaced := 0 // rows read and not yet paced by the row rate limit
	_, err = r.ReadChunk(ctx, j.table, pub.Columns, pub.RowFilter, j.idx, func(ev sinks.Event) error {
		if cr.limit != nil {
			if unpaced++; unpaced == paceRows {
				if err := cr.limit.WaitN(ctx, unpaced); err != nil {
					return err
				}
				unpaced = 0
			}
		}
		b.add(ev)
		if maxEvents > 0 && (len(b.events) >= maxEvents || b.bytes >= maxBytes) {
			if !full(b) {
				return stopped
			}
			b = newBatch()
		}
		return nil
	})
	if errors.Is(err, snapshot.ErrTableGone) {
		cr.log.Warn("table dropped during its snapshot; nothing left to read", zap.String("table", j.table.Name()), zap.Uint32("chunk", j.idx))
		discard(b)
		b = newBatch()
		err = nil
	}
	if err == nil && cr.limit != nil && unpaced > 0 {
		err = cr.limit.WaitN(ctx, unpaced)
	}
	if err != nil {
		if !errors.Is(err, stopped) {
			discard(b)
		}
		return err
	}
	if !last(b) {
		return context.Cause(ctx)
	}
	return nil
}
