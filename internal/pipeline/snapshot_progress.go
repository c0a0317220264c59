package pipeline

import (
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Where the snapshots stand: the progress /status reports and the periodic log line.

// SnapshotProgress is where the snapshots being read stand.
type SnapshotProgress struct {
	Active        bool          `json:"active"`         // chunks are being read or wait to be
	ChunksDone    int64         `json:"chunks_done"`    // chunks handed to the sinks by this run
	Chunks        int64         `json:"chunks"`         // chunks this run has had to read
	Rows          int64         `json:"rows"`           // rows handed to the sinks by this run
	RowsPerSec    float64       `json:"rows_per_sec"`   // average since the snapshot started
	ETA           time.Duration `json:"eta_ns"`         // estimate of the time left; 0 when unknown
	TablesPending int           `json:"tables_pending"` // tables whose snapshot the checkpoint lists as unfinished
	// GuardSwitched reports that this run's initial snapshot stopped reading inside the slot's
	// exported snapshot because the slot's WAL was in danger, and reads the rest while streaming.
	GuardSwitched bool `json:"guard_switched"`
}

// snapProgress is where the snapshots stand: the snapshot record (the durable list and the marks
// waiting for acknowledgement, with its own locks) and the counters of this run, for
// SnapshotProgress and the periodic log line. It is built with the pipeline, before anything is
// read, and used by every snapshot part (the exported reads, the replication goroutine's windows and
// requests), by logProgress's goroutine and by scrapes. Safe for concurrent use: the counters are
// atomic.
type snapProgress struct {
	state    *snapState
	interval time.Duration // snapshot.progress_interval; < 0: no log line
	log      *zap.Logger
	now      func() time.Time

	started     atomic.Int64 // unix nanoseconds when the chunks being read were queued
	rowsAtStart atomic.Int64
	rows        atomic.Int64
	chunks      atomic.Int64 // chunks read by this run
	totalChunks atomic.Int64 // chunks this run has to read
	estRows     atomic.Int64 // estimated rows of the chunks this run has to read (pg_class.reltuples)
	active      atomic.Int32 // snapshots being read
	switched    atomic.Bool  // the exported snapshot gave way to streaming (slotEndangered)
}

func newSnapProgress(cfg SnapshotConfig, log *zap.Logger, now func() time.Time) *snapProgress {
	return &snapProgress{state: &snapState{}, interval: cfg.ProgressInterval, log: log, now: now}
}

// queued counts jobs chunks, holding about estRows rows, that this run has to read.
func (st *snapProgress) queued(jobs int, estRows float64) {
	if st.chunks.Load() >= st.totalChunks.Load() && st.active.Load() == 0 {
		// A new snapshot after an idle time: its rate and estimate start now.
		st.started.Store(st.now().UnixNano())
		st.rowsAtStart.Store(st.rows.Load())
		st.estRows.Store(st.rows.Load())
	}
	st.totalChunks.Add(int64(jobs))
	st.estRows.Add(int64(estRows))
}

// handed counts rows handed to the sinks.
func (st *snapProgress) handed(rows int) { st.rows.Add(int64(rows)) }

// handedRows returns the rows handed to the sinks by this run.
func (st *snapProgress) handedRows() int64 { return st.rows.Load() }

// chunkDone counts a chunk whose rows are all handed to the sinks.
func (st *snapProgress) chunkDone() { st.chunks.Add(1) }

// reading counts a snapshot being read until the returned function is called.
func (st *snapProgress) reading() (done func()) {
	st.active.Add(1)
	return func() { st.active.Add(-1) }
}

// gaveWay records that the initial snapshot stopped reading inside the slot's exported snapshot.
func (st *snapProgress) gaveWay() { st.switched.Store(true) }

// progress returns the progress of the snapshots being read. Safe for concurrent use.
func (st *snapProgress) progress() SnapshotProgress {
	pr := SnapshotProgress{ChunksDone: st.chunks.Load(), Chunks: st.totalChunks.Load(), Rows: st.rows.Load(), TablesPending: st.state.pendingCount(),
		GuardSwitched: st.switched.Load()}
	pr.Active = pr.Chunks > 0 && (pr.ChunksDone < pr.Chunks || st.active.Load() > 0)
	started := st.started.Load()
	if started == 0 || pr.Rows == 0 {
		return pr
	}
	elapsed := st.now().Sub(time.Unix(0, started)).Seconds()
	if elapsed <= 0 {
		return pr
	}
	pr.RowsPerSec = float64(pr.Rows-st.rowsAtStart.Load()) / elapsed
	left := float64(st.estRows.Load() - pr.Rows)
	if left <= 0 || st.estRows.Load() == 0 {
		left = float64(pr.Rows) * float64(pr.Chunks-pr.ChunksDone) / float64(max(pr.ChunksDone, 1))
	}
	if pr.RowsPerSec > 0 && pr.ChunksDone < pr.Chunks {
		eta := time.Duration(left / pr.RowsPerSec * float64(time.Second))
		if eta >= 10*time.Second {
			eta = eta.Round(time.Second)
		} else {
			eta = max(eta.Round(100*time.Millisecond), 100*time.Millisecond)
		}
		pr.ETA = eta
	}
	return pr
}

// logProgress logs snapshot progress every Snapshot.ProgressInterval while a snapshot runs.
func (st *snapProgress) logProgress(stop <-chan struct{}) {
	if st.interval < 0 {
		<-stop
		return
	}
	t := time.NewTicker(st.interval)
	defer t.Stop()
	var lastRows int64
	last := st.now()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			pr := st.progress()
			if !pr.Active {
				lastRows, last = pr.Rows, now
				continue
			}
			fields := []zap.Field{zap.Int64("chunks_done", pr.ChunksDone), zap.Int64("chunks", pr.Chunks), zap.Int64("rows", pr.Rows),
				zap.Float64("rows_per_sec", float64(pr.Rows-lastRows)/now.Sub(last).Seconds()), zap.Int("tables_pending", pr.TablesPending)}
			if pr.ETA > 0 {
				fields = append(fields, zap.Duration("eta", pr.ETA))
			}
			st.log.Info("snapshot progress", fields...)
			lastRows, last = pr.Rows, now
		}
	}
}
