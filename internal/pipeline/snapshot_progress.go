package pipeline

import (
	"time"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/checkpoint"
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

// progress returns the progress of the snapshots being read. Safe for concurrent use.
func (sn *snapshotter) progress() SnapshotProgress {
	st := &sn.stats
	pr := SnapshotProgress{ChunksDone: st.chunks.Load(), Chunks: st.totalChunks.Load(), Rows: st.rows.Load(), TablesPending: sn.pendingTables(),
		GuardSwitched: sn.guardSwitched.Load()}
	pr.Active = pr.Chunks > 0 && (pr.ChunksDone < pr.Chunks || st.active.Load() > 0)
	started := st.started.Load()
	if started == 0 || pr.Rows == 0 {
		return pr
	}
	elapsed := sn.now().Sub(time.Unix(0, started)).Seconds()
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

// logSnapshotProgress logs snapshot progress every Snapshot.ProgressInterval while a snapshot runs.
func (sn *snapshotter) logProgress(stop <-chan struct{}) {
	if sn.cfg.ProgressInterval < 0 {
		<-stop
		return
	}
	t := time.NewTicker(sn.cfg.ProgressInterval)
	defer t.Stop()
	var lastRows int64
	last := sn.now()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			pr := sn.progress()
			if !pr.Active {
				lastRows, last = pr.Rows, now
				continue
			}
			fields := []zap.Field{zap.Int64("chunks_done", pr.ChunksDone), zap.Int64("chunks", pr.Chunks), zap.Int64("rows", pr.Rows),
				zap.Float64("rows_per_sec", float64(pr.Rows-lastRows)/now.Sub(last).Seconds()), zap.Int("tables_pending", pr.TablesPending)}
			if pr.ETA > 0 {
				fields = append(fields, zap.Duration("eta", pr.ETA))
			}
			sn.log.Info("snapshot progress", fields...)
			lastRows, last = pr.Rows, now
		}
	}
}

// pendingSnapshot returns a copy of the durable list of unfinished table snapshots.
func (sn *snapshotter) pendingSnapshot() []checkpoint.TableSnapshot {
	sn.state.saveMu.Lock()
	defer sn.state.saveMu.Unlock()
	out := make([]checkpoint.TableSnapshot, len(sn.state.tables))
	for i := range sn.state.tables {
		out[i] = sn.state.tables[i].Clone()
	}
	return out
}

func (sn *snapshotter) pendingTables() int {
	sn.state.saveMu.Lock()
	defer sn.state.saveMu.Unlock()
	return len(sn.state.tables)
}
