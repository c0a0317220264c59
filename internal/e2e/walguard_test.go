package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/internal/logtest"
	"github.com/pgstream/pgstream/internal/metrics"
	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/internal/pipeline"
)

// walWriter writes WAL into the database "other" of pg, about 1 MiB a step with a CHECKPOINT every
// 16 steps (at a checkpoint the server removes WAL and invalidates slots that retain too much), and
// changes rows of table (id int PRIMARY KEY, v int, pad text; ids 1..rows to begin with) in db once
// a step, until it is stopped.
func walWriter(t testing.TB, pg *pgtest.Cluster, db, table string, rows int) *workload {
	t.Helper()
	other, err := pg.Connect(context.Background(), "other")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close(context.Background()) })
	next := rows + 1
	return startWorkload(t, pg, db, 400*time.Millisecond, func(ctx context.Context, app *pgconn.PgConn, i int) error {
		if _, err := other.Exec(ctx, "INSERT INTO filler SELECT repeat(md5(random()::text), 32) FROM generate_series(1, 1000)").ReadAll(); err != nil {
			return fmt.Errorf("write filler: %w", err)
		}
		if (i+1)%16 == 0 {
			if _, err := other.Exec(ctx, "CHECKPOINT").ReadAll(); err != nil {
				return fmt.Errorf("checkpoint: %w", err)
			}
		}
		sql := fmt.Sprintf("BEGIN; UPDATE %[1]s SET v = v + 1, pad = md5(random()::text) WHERE id IN (%[2]d, %[3]d, %[4]d); "+
			"INSERT INTO %[1]s VALUES (%[5]d, 0, 'new'); DELETE FROM %[1]s WHERE id = %[6]d; COMMIT;",
			table, 1+rand.IntN(next), 1+rand.IntN(next), 1+rand.IntN(next), next, 1+rand.IntN(next))
		next++
		if _, err := app.Exec(ctx, sql).ReadAll(); err != nil {
			return fmt.Errorf("change %s: %w", table, err)
		}
		return nil
	})
}

// slotWatcher polls a slot's wal_status and safe_wal_size, and the server's WAL position, every
// 250ms until stopped.
type slotWatcher struct {
	walEnd atomic.Int64 // pg_current_wal_lsn() in bytes at the last poll

	mu       sync.Mutex
	statuses map[string]int // polls that saw each wal_status
	minSafe  int64
	err      error

	stop chan struct{}
	done chan struct{}
}

func watchSlotWAL(pg *pgtest.Cluster, slot string) *slotWatcher {
	w := &slotWatcher{statuses: map[string]int{}, minSafe: 1 << 62, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			rows, err := pg.QueryRows("postgres", fmt.Sprintf(`SELECT coalesce(wal_status, ''), coalesce(safe_wal_size::text, ''),
  (pg_current_wal_lsn() - '0/0')::bigint::text FROM pg_replication_slots WHERE slot_name = '%s'`, slot))
			w.mu.Lock()
			switch {
			case err != nil:
				w.err = err
			case len(rows) == 1:
				w.statuses[rows[0][0]]++
				if safe, err := strconv.ParseInt(rows[0][1], 10, 64); err == nil {
					w.minSafe = min(w.minSafe, safe)
				}
				if end, err := strconv.ParseInt(rows[0][2], 10, 64); err == nil {
					w.walEnd.Store(end)
				}
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return w
}

// seen stops the watcher and returns the polls by wal_status, the smallest safe_wal_size seen and
// the last failure to poll.
func (w *slotWatcher) seen() (map[string]int, int64, error) {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.statuses, w.minSafe, w.err
}

// counterValue returns the value of the unlabelled counter name in m, -1 when it is not there.
func counterValue(t testing.TB, m *metrics.Metrics, name string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return -1
}

// TestSnapshotGivesWayWhenSlotWALInDanger reads a table's initial snapshot slowly (a row rate cap)
// inside the slot's exported snapshot, on a cluster whose max_slot_wal_keep_size is 128 MB, while
// another database writes WAL with checkpoints and the table keeps changing. The slot cannot move
// before streaming starts, so held there it would be invalidated; once its safe_wal_size falls
// under wal_guard.min_safe_wal_size, pgstream must start streaming and read the rest of the
// snapshot between watermarks. Twice the slot's budget of WAL is then written while the slot is
// never lost, streamed changes reach the sink before snapshot reads do, and the sink's latest row
// per key equals the database's.
func TestSnapshotGivesWayWhenSlotWALInDanger(t *testing.T) {
	if testing.Short() {
		t.Skip("a slow snapshot while some 350 MB of WAL are written")
	}
	const (
		db     = "app"
		table  = "guarded"
		rows   = 200000 // 100 s at 2,000 rows a second
		budget = 128 << 20
		margin = 64 << 20
	)
	pg := pgtest.New(t, pgtest.Options{Settings: map[string]string{"max_slot_wal_keep_size": "'128MB'"}})
	for _, name := range []string{db, "other"} {
		if err := pg.CreateDB(name); err != nil {
			t.Fatal(err)
		}
	}
	pg.MustExec(t, db, fmt.Sprintf(`CREATE TABLE %[1]s (id int PRIMARY KEY, v int NOT NULL, pad text);
INSERT INTO %[1]s SELECT i, 0, repeat(md5(i::text), 2) FROM generate_series(1, %d) i;`, table, rows))
	pg.MustExec(t, "other", "CREATE TABLE filler (v text)")

	start := time.Now()
	logger, logs := logtest.Debug()
	m := metrics.New("test")
	r := startPipeline(t, db, runOpts{pg: pg, metrics: m, alsoLog: logger, pcfg: pipeline.Config{
		Snapshot: pipeline.SnapshotConfig{Mode: pipeline.SnapshotInitial, Workers: 2, ChunkPages: 16, MaxRowsPerSecond: 2000},
		WALGuard: pipeline.WALGuardConfig{PollInterval: time.Second, MinSafeWALSize: margin}}})
	// The checkpoint is written once the slot exists: WAL written from here on is the slot's.
	waitUntil(t, 120*time.Second, "the slot exists", r.exited, func() bool { return snapshotPending(t, r.ckpt) >= 0 })

	slotWAL := watchSlotWAL(pg, r.slot)
	defer slotWAL.seen()
	writer := walWriter(t, pg, db, table, rows)
	writerFailed := func() (string, bool) {
		if msg, ok := r.exited(); ok {
			return msg, true
		}
		return writer.Failed()
	}

	waitUntil(t, 300*time.Second, "the snapshot gives way to streaming", writerFailed, func() bool {
		return r.p.SnapshotProgress().GuardSwitched
	})
	if pr := r.p.SnapshotProgress(); pr.ChunksDone >= pr.Chunks {
		t.Fatalf("the snapshot gave way with every chunk done: %+v", pr)
	}
	t.Logf("the snapshot gave way to streaming %s in", time.Since(start).Round(time.Second))
	// Twice the slot's budget: held at its position, the slot could not survive it.
	from := slotWAL.walEnd.Load()
	waitUntil(t, 300*time.Second, "twice max_slot_wal_keep_size of WAL written after the switch", writerFailed, func() bool {
		return slotWAL.walEnd.Load()-from >= 2*budget
	})
	writer.MustStop(t)
	t.Logf("twice the budget written after the switch %s in", time.Since(start).Round(time.Second))
	statuses, minSafe, pollErr := slotWAL.seen()
	t.Logf("slot polls by wal_status %v, smallest safe_wal_size %d bytes (last poll failure: %v)", statuses, minSafe, pollErr)
	if statuses["lost"] > 0 {
		t.Fatalf("the slot was lost: polls by wal_status %v", statuses)
	}

	evs := markDoneOn(t, pg, db, r.path, r.ckpt, 300*time.Second)
	t.Logf("the snapshot was complete and the sink caught up %s in", time.Since(start).Round(time.Second))
	if msg, ok := r.exited(); ok {
		t.Fatal(msg)
	}
	got, ops := materialize(t, evs)
	compareState(t, got, dbStateOn(t, pg, db, []string{table}))
	if ops["r"] < rows*99/100 { // rows deleted before their chunk was read are not read
		t.Fatalf("events by op %v: far fewer snapshot reads than the table's %d rows", ops, rows)
	}
	// Streaming started before the snapshot was finished: a streamed change of the table reached
	// the sink before some of its snapshot reads.
	firstChange, readsAfter := -1, 0
	for i, e := range evs {
		switch {
		case e.Source.Table != table:
		case firstChange < 0 && (e.Op == "c" || e.Op == "u" || e.Op == "d"):
			firstChange = i
		case firstChange >= 0 && e.Op == "r":
			readsAfter++
		}
	}
	if firstChange < 0 || readsAfter == 0 {
		t.Fatalf("no snapshot read came after the first streamed change (at %d of %d events): streaming started after the snapshot", firstChange, len(evs))
	}
	t.Logf("events by op %v; %d snapshot reads after the first streamed change", ops, readsAfter)

	if v := counterValue(t, m, "pgstream_snapshot_guard_switches_total"); v != 1 {
		t.Fatalf("pgstream_snapshot_guard_switches_total = %v, want 1", v)
	}
	if !r.p.Status().Snapshot.GuardSwitched {
		t.Fatal("/status does not show the switch")
	}
	var warning string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "the replication slot's WAL is in danger") {
			warning = line
		}
	}
	if !strings.Contains(warning, `"level":"warn"`) || !strings.Contains(warning, `"safe_wal_size":`) ||
		!strings.Contains(warning, fmt.Sprintf(`"margin":%d`, margin)) || !strings.Contains(warning, `"chunks_left":`) {
		t.Fatalf("no warning naming safe_wal_size, the margin and the chunks left; the line: %q", warning)
	}
	t.Log(warning)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}
