package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgstream/pgstream/internal/metrics"
	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/replication"
	"github.com/pgstream/pgstream/walparse"
)

// Chunks read while streaming, between a low and a high watermark (DBLog): the readers that
// write the watermarks and read the chunks, and the replication side that sees the watermarks and
// the changes that touch the rows of an open window.

// window is one chunk read between a low and a high watermark (DBLog). The reader registers it
// before writing the low watermark and hands over the chunk's rows before writing the high one; the
// replication goroutine records the keys of the table changed in between and, at the high watermark,
// delivers the rows whose keys did not change, so that the stream's newer versions win.
type window struct {
	id  uint64
	job chunkJob

	// Owned by the replication goroutine.
	open      bool
	keys      map[string]struct{}
	truncated bool

	rows    *batch // set by the reader under windows.mu before the high watermark is written
	aborted atomic.Bool
	done    chan struct{} // closed by the replication goroutine once the rows are handed to the sinks
}

// keepUnchanged drops from rows the rows whose keys changed inside the window (all of them after a
// truncate): the stream has delivered newer versions of them. Rows without a key are kept.
func (w *window) keepUnchanged(rows *batch) {
	kept := rows.events[:0]
	for _, ev := range rows.events {
		if w.truncated {
			continue
		}
		if ev.Key != nil {
			if _, changed := w.keys[string(ev.Key)]; changed {
				continue
			}
		}
		kept = append(kept, ev)
	}
	clear(rows.events[len(kept):])
	rows.events = kept
}

// windows are the windows readers registered and the replication goroutine has not closed, by id,
// with the rows each reader handed over. Safe for concurrent use: guarded by mu.
type windows struct {
	mu sync.Mutex
	m  map[uint64]*window
}

func (ws *windows) put(w *window) {
	ws.mu.Lock()
	ws.m[w.id] = w
	ws.mu.Unlock()
}

func (ws *windows) get(id uint64) *window {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.m[id]
}

func (ws *windows) setRows(id uint64, b *batch) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := ws.m[id]
	if w == nil {
		return false
	}
	w.rows = b
	return true
}

// take removes window id and returns its rows.
func (ws *windows) take(id uint64) *batch {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := ws.m[id]
	if w == nil {
		return nil
	}
	delete(ws.m, id)
	b := w.rows
	w.rows = nil
	return b
}

// abort removes window id after its reader failed.
func (ws *windows) abort(id uint64) {
	ws.mu.Lock()
	w := ws.m[id]
	delete(ws.m, id)
	ws.mu.Unlock()
	if w != nil {
		w.aborted.Store(true)
		if w.rows != nil {
			discard(w.rows)
		}
	}
}

// discard recycles a batch that was never handed to the sinks.
func discard(b *batch) {
	b.reset()
	batchPool.Put(b)
}

// chunkWindows reads chunks between a low and a high watermark while streaming, and watches the
// stream for the changes that touch their rows. The readers (resnapReaders, each on its own
// goroutine) call readWindow; the replication goroutine calls the rest (watching, keyChanged,
// truncated, watermark), and alone uses openRel. The windows a reader registered are shared with
// the replication goroutine under wins.mu; the open/keys/truncated fields of a window belong to the
// replication goroutine.
type chunkWindows struct {
	src      replication.Config
	log      *zap.Logger
	runID    string // identifies this run's watermarks
	chunks   *chunkReader
	progress *snapProgress
	metrics  *metrics.Metrics

	seq     atomic.Uint64 // the newest window's id
	wins    windows
	openRel map[uint32][]*window // the replication goroutine's: open windows by relation
}

func newChunkWindows(d snapDeps, chunks *chunkReader) *chunkWindows {
	return &chunkWindows{src: d.src, log: d.log, runID: newRunID(), chunks: chunks, progress: d.progress, metrics: d.metrics,
		wins: windows{m: map[uint64]*window{}}, openRel: map[uint32][]*window{}}
}

// readWindow reads one chunk between a low and a high watermark and waits until the replication
// goroutine has handed its rows to the sinks. The chunk is read on conn, a connection to the
// source; the watermarks are written where target says: on the source while it is a primary, on
// its primary while it is a standby.
func (cw *chunkWindows) readWindow(ctx context.Context, conn *pgconn.PgConn, target *writeTarget, r *snapshot.Reader, pt *pubTables, j chunkJob) error {
	w := &window{id: cw.seq.Add(1), job: j, done: make(chan struct{})}
	cw.wins.put(w)
	ok := false
	defer func() {
		if !ok {
			cw.wins.abort(w.id)
		}
	}()
	wconn, standby, err := target.pick(ctx, conn)
	if err != nil {
		return err
	}
	low, err := cw.writeWatermark(ctx, wconn, w.id, false)
	if err != nil {
		return err
	}
	if standby {
		// The chunk's snapshot must see every transaction whose commit precedes the low watermark
		// in the WAL: the stream delivers those before the window opens, and a chunk missing one
		// would hand over an older version of its rows. On a standby a transaction becomes visible
		// when its commit record is replayed, in WAL order, so a snapshot taken once the standby
		// has replayed the low watermark sees all of them. (Reading the chunk on the primary
		// would need no wait, but would put the snapshot's reads on the server that decoding on a
		// standby means to spare.) Everything it sees beyond the watermark was replayed before the
		// high one is written, so it commits inside the window, whose keys the stream records.
		if err := waitReplayed(ctx, conn, low, "the low watermark", cw.log); err != nil {
			return err
		}
		if err := pgsql.Exec(ctx, conn, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"); err != nil {
			return fmt.Errorf("begin chunk read: %w", err)
		}
	} else if err := beginAfterRunning(ctx, conn); err != nil {
		return err
	}
	var rows *batch
	err = cw.chunks.readChunk(ctx, conn, r, pt, j, nil, 0, 0, func(b *batch) bool { rows = b; return true })
	if err != nil {
		return err
	}
	if err := pgsql.Exec(ctx, conn, "COMMIT"); err != nil {
		discard(rows)
		return fmt.Errorf("end chunk read: %w", err)
	}
	if !cw.wins.setRows(w.id, rows) {
		discard(rows)
		return errors.New("watermark window lost")
	}
	high, err := cw.writeWatermark(ctx, wconn, w.id, true)
	if err != nil {
		return err
	}
	if standby {
		// Promoted before replaying the high watermark, the standby never decodes it (it is on the
		// old primary's timeline only): the chunk is read again, with watermarks written on the
		// promoted server itself.
		if err := waitReplayed(ctx, conn, high, "the high watermark", cw.log); err != nil {
			return err
		}
	}
	ok = true
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return nil
	}
}

// beginAfterRunning opens the chunk's read-only transaction on conn, a primary where the low
// watermark was just written, in a snapshot taken once every transaction running after the
// watermark has ended. A transaction whose commit record precedes the low watermark may not be
// visible yet when the watermark is written (between its commit record and its removal from the
// process array, which a synchronous standby can make long): the chunk's snapshot would miss it
// while the stream delivers it before the window. pg_locks names them all: each holds an exclusive
// lock on its own xid until after it has become visible. txid_current_snapshot() does not: its xip
// leaves out running transactions newer than the newest completed one (they lie at or past its
// xmax), which is the common case of a transaction committing just then.
func beginAfterRunning(ctx context.Context, conn *pgconn.PgConn) error {
	const runningXIDs = "SELECT transactionid FROM pg_catalog.pg_locks WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND granted"
	running, err := pgsql.Value(ctx, conn, "SELECT coalesce(array_agg(transactionid)::text, '{}') FROM ("+runningXIDs+") r")
	if err != nil {
		return fmt.Errorf("read running transactions: %w", err)
	}
	for running != "{}" {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(20 * time.Millisecond):
		}
		if running, err = pgsql.Value(ctx, conn, "SELECT coalesce(array_agg(x)::text, '{}') FROM unnest($1::xid[]) x "+
			"WHERE x IN ("+runningXIDs+")", running); err != nil {
			return fmt.Errorf("wait for running transactions: %w", err)
		}
	}
	// Every one of them ended before this snapshot is taken, so it sees them all.
	if err := pgsql.Exec(ctx, conn, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"); err != nil {
		return fmt.Errorf("begin chunk read: %w", err)
	}
	return nil
}

// writeWatermark writes a watermark on conn and returns its WAL position.
func (cw *chunkWindows) writeWatermark(ctx context.Context, conn *pgconn.PgConn, id uint64, high bool) (lsn.LSN, error) {
	content, _ := json.Marshal(watermark{Slot: cw.src.Slot, Run: cw.runID, ID: id, High: high})
	v, err := pgsql.Value(ctx, conn, "SELECT pg_logical_emit_message(false, $1, $2)::text", WatermarkPrefix, string(content))
	if err != nil {
		return 0, fmt.Errorf("write watermark: %w", err)
	}
	at, err := lsn.Parse(v)
	if err != nil {
		return 0, fmt.Errorf("write watermark: %w", err)
	}
	return at, nil
}

// watching reports whether a watermark window is open.
func (cw *chunkWindows) watching() bool { return len(cw.openRel) > 0 }

// keyChanged records, for every open window of the relation, that the row with key k changed.
func (cw *chunkWindows) keyChanged(relID uint32, k []byte) {
	ws := cw.openRel[relID]
	if len(ws) == 0 {
		return
	}
	for _, w := range ws {
		if k != nil {
			w.keys[string(k)] = struct{}{}
		}
	}
	cw.pruneAborted(relID)
}

// truncated records, for every open window of the relation, that all its rows changed.
func (cw *chunkWindows) truncated(relID uint32) {
	for _, w := range cw.openRel[relID] {
		w.truncated = true
	}
	cw.pruneAborted(relID)
}

func (cw *chunkWindows) pruneAborted(relID uint32) {
	ws := cw.openRel[relID]
	kept := ws[:0]
	for _, w := range ws {
		if !w.aborted.Load() {
			kept = append(kept, w)
		}
	}
	clear(ws[len(kept):])
	if len(kept) == 0 {
		delete(cw.openRel, relID)
		return
	}
	cw.openRel[relID] = kept
}

// watermark handles a watermark of this run: the low one opens the chunk's window, the high one
// closes it and returns the chunk's rows whose keys did not change inside the window.
func (cw *chunkWindows) watermark(m *walparse.LogicalMessage) (*batch, func(seq uint64)) {
	var wm watermark
	if err := json.Unmarshal(m.Content, &wm); err != nil || wm.Slot != cw.src.Slot || wm.Run != cw.runID {
		return nil, nil
	}
	w := cw.wins.get(wm.ID)
	if w == nil {
		return nil, nil
	}
	oid := w.job.table.OID
	if !wm.High {
		if !w.open {
			w.open = true
			w.keys = make(map[string]struct{})
			cw.openRel[oid] = append(cw.openRel[oid], w)
		}
		return nil, nil
	}
	rows := cw.wins.take(wm.ID)
	ws := cw.openRel[oid]
	for i, o := range ws {
		if o == w {
			cw.openRel[oid] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(cw.openRel[oid]) == 0 {
		delete(cw.openRel, oid)
	}
	if rows == nil {
		return nil, nil
	}
	w.keepUnchanged(rows)
	cw.progress.handed(len(rows.events))
	cw.metrics.SnapshotRows(w.job.table.Name(), len(rows.events))
	return rows, func(seq uint64) {
		cw.progress.state.mark(snapMark{seq: seq, gen: w.job.table.Gen, oid: oid, chunk: w.job.idx})
		cw.progress.chunkDone()
		close(w.done)
	}
}
