package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgstream/pgstream/checkpoint"
	ckfile "github.com/pgstream/pgstream/checkpoint/file"
	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/replication"
)

// TestDatabaseWentBackInTime streams from a cluster, takes a cold copy of its data directory,
// streams 1,000 more rows, and then brings the copy back twice: restored as it was, and promoted as
// a standby that had not received the later rows. Each time pgstream must refuse to start (check and
// run), saying that the database went back in time, and must not confirm anything past the server's
// WAL end; removing the checkpoint, the way out it names, delivers the rows written after the copy.
func TestDatabaseWentBackInTime(t *testing.T) {
	if testing.Short() {
		t.Skip("restores a cluster from a copy of its data directory")
	}
	pg := pgtest.New(t, pgtest.Options{})
	pg.MustExec(t, "postgres", "CREATE TABLE t (id int PRIMARY KEY)")
	dir := t.TempDir()
	out, ckpt := filepath.Join(dir, "changes.jsonl"), filepath.Join(dir, "checkpoint.json")
	cfgPath := filepath.Join(dir, "pgstream.yaml")
	cfg := fmt.Sprintf(`source:
  url: %s
  slot: rewind
  publication: pgs_rewind
  status_interval: 200ms
checkpoint:
  path: %s
sinks:
  - type: file
    path: %s
pipeline:
  checkpoint_interval: 50ms
snapshot:
  mode: never
log:
  level: info
  format: json
`, pg.URL("postgres"), ckpt, out)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ids := func() map[string]bool {
		m := map[string]bool{}
		for _, e := range readEvents(t, out) {
			if e.Op == "c" {
				m[num(e.row("after")["id"])] = true
			}
		}
		return m
	}
	// streamRows runs pgstream until the rows from..to have arrived, then stops it cleanly.
	streamRows := func(from, to int) {
		t.Helper()
		p := startBinary(t, "run", "--config", cfgPath)
		waitStreamingOn(t, pg, "rewind", p)
		pg.MustExec(t, "postgres", fmt.Sprintf("INSERT INTO t SELECT generate_series(%d, %d)", from, to))
		waitEvents(t, out, 60*time.Second, func([]event) bool { return ids()[fmt.Sprint(to)] })
		stopBinary(t, p)
	}
	streamRows(1, 100)

	backup := filepath.Join(pg.Dir, "data.copy")
	if err := pg.Stop("fast"); err != nil {
		t.Fatal(err)
	}
	copyTree(t, pg.DataDir(), backup)
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	streamRows(101, 1100)
	_, delivered := readCheckpoint(t, ckpt)

	// refused runs check and run against the server as it is now and expects both to refuse,
	// naming what happened, without moving the slot past the server's WAL.
	refused := func(mentions ...string) {
		t.Helper()
		text, code := runBinary(t, 60*time.Second, "check", "--config", cfgPath)
		if code == 0 || !strings.Contains(text, "went back in time") {
			t.Fatalf("check (exit %d) does not refuse the checkpoint at %s:\n%s", code, delivered, text)
		}
		for _, m := range mentions {
			if !strings.Contains(text, m) {
				t.Fatalf("check does not say %q:\n%s", m, text)
			}
		}
		text, code = runBinary(t, 60*time.Second, "run", "--config", cfgPath)
		if code == 0 || !strings.Contains(text, "went back in time") || !strings.Contains(text, "remove "+ckpt) {
			t.Fatalf("run (exit %d) does not refuse the checkpoint at %s:\n%s", code, delivered, text)
		}
		confirmed, err := pg.Query("postgres", "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'rewind'")
		if err != nil {
			t.Fatal(err)
		}
		walEnd, err := pg.Query("postgres", "SELECT pg_current_wal_lsn()")
		if err != nil {
			t.Fatal(err)
		}
		if c, e := mustLSN(t, confirmed), mustLSN(t, walEnd); c > e {
			t.Fatalf("slot confirmed %s, past the server's WAL end %s", c, e)
		}
	}

	// 1. The database restored from the copy, then 100 new rows.
	restore(t, pg, backup, false)
	pg.MustExec(t, "postgres", "INSERT INTO t SELECT generate_series(2001, 2100)")
	refused("but the server's WAL ends at")

	// 2. The copy started as a standby and promoted: a new timeline forked before what pgstream
	// delivered. Once it has written past the old position only the timeline history tells.
	restore(t, pg, backup, true)
	pg.MustExec(t, "postgres", "INSERT INTO t SELECT generate_series(3001, 3100)")
	for i := 0; ; i++ {
		walEnd, err := pg.Query("postgres", "SELECT pg_current_wal_lsn()")
		if err != nil {
			t.Fatal(err)
		}
		if mustLSN(t, walEnd) > delivered {
			break
		}
		if i == 1000 {
			t.Fatalf("WAL still at %s after 1000 batches", walEnd)
		}
		pg.MustExec(t, "postgres", "CREATE TABLE IF NOT EXISTS filler (v text); INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 1000)")
	}
	refused("forked from timeline 1", "failed over to a standby")

	// The way out: without the checkpoint, pgstream streams from the slot's position on this
	// database, and the rows written after the copy arrive.
	if err := os.Remove(ckpt); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, "run", "--config", cfgPath)
	waitEvents(t, out, 60*time.Second, func([]event) bool {
		got := ids()
		for id := 3001; id <= 3100; id++ {
			if !got[fmt.Sprint(id)] {
				return false
			}
		}
		return true
	})
	stopBinary(t, p)
}

// restore stops the cluster and puts a copy of backup in place of its data directory; standby
// starts it as a standby and promotes it, which begins a new timeline.
func restore(t *testing.T, pg *pgtest.Cluster, backup string, standby bool) {
	t.Helper()
	if err := pg.Stop("fast"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(pg.DataDir()); err != nil {
		t.Fatal(err)
	}
	copyTree(t, backup, pg.DataDir())
	if standby {
		// Owned like the rest of the data directory: the server runs as that user.
		sig := filepath.Join(pg.DataDir(), "standby.signal")
		st, err := os.Stat(pg.DataDir())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sig, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		own := st.Sys().(*syscall.Stat_t)
		if err := os.Chown(sig, int(own.Uid), int(own.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	if standby {
		if err := pg.Promote(); err != nil {
			t.Fatal(err)
		}
	}
}

// copyTree copies a directory with its owners and modes.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v: %s", from, to, err, out)
	}
}

func mustLSN(t *testing.T, s string) lsn.LSN {
	t.Helper()
	l, err := lsn.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitStreamingOn waits until, on the cluster pg, the slot's walsender streams, failing if p exits first.
func waitStreamingOn(t *testing.T, pg *pgtest.Cluster, slot string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-p.done:
			t.Fatalf("pgstream exited before streaming: %v\n%s", err, p.stderr)
		default:
		}
		v, err := pg.Query("postgres", fmt.Sprintf(`SELECT r.state FROM pg_replication_slots s
JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = '%s'`, slot))
		if err == nil && (v == "streaming" || v == "catchup") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s not streaming after 60s", slot)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopBinary stops pgstream with SIGTERM and expects a clean exit.
func stopBinary(t *testing.T, p *proc) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("pgstream did not exit cleanly: %v\n%s", err, p.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("pgstream did not stop within 60s of SIGTERM")
	}
}

// movingStore is a checkpoint store whose checkpoint moves on while it is loaded, as the checkpoint
// of a pgstream streaming beside `check` or `status` does: Load makes the server write WAL and
// returns a checkpoint at the new WAL end.
type movingStore struct {
	*ckfile.Store
	t    *testing.T
	db   string
	slot string
	sys  replication.SystemInfo
}

func (s *movingStore) Load() (checkpoint.Checkpoint, bool, error) {
	exec1(s.t, s.db, "INSERT INTO moving VALUES (1)")
	end, err := cluster.Query("postgres", "SELECT pg_current_wal_lsn()")
	if err != nil {
		return checkpoint.Checkpoint{}, false, err
	}
	at := mustLSN(s.t, end)
	return checkpoint.Checkpoint{SystemID: s.sys.SystemID, Timeline: s.sys.Timeline, Database: s.sys.DBName, Slot: s.slot,
		CommitLSN: at, FlushLSN: at}, true, nil
}

// TestInspectComparesWithTheWALEndAfterTheCheckpoint: a checkpoint that moved past the WAL end
// IDENTIFY_SYSTEM reported before it was loaded is no database gone back in time.
func TestInspectComparesWithTheWALEndAfterTheCheckpoint(t *testing.T) {
	db := newDB(t)
	exec1(t, db, "CREATE TABLE moving (id int)")
	slot := "moving_" + db
	conn, err := replication.Connect(context.Background(), sourceConfig(db, slot, nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := conn.EnsureSlot(ctx); err != nil {
		t.Fatal(err)
	}
	sys, err := conn.IdentifySystem(ctx)
	if err != nil {
		t.Fatal(err)
	}
	store := &movingStore{Store: ckfile.New(filepath.Join(t.TempDir(), "checkpoint.json"), ckfile.OSFS()),
		t: t, db: db, slot: slot, sys: sys}
	st, err := pipeline.Inspect(ctx, conn, sys, store, pipeline.Config{Snapshot: pipeline.SnapshotConfig{Mode: pipeline.SnapshotNever}})
	if err != nil {
		t.Fatalf("Inspect with a checkpoint that moved on while it was loaded: %v", err)
	}
	if st.System.XLogPos < st.Checkpoint.FlushLSN {
		t.Fatalf("Inspect kept the WAL end %s read before the checkpoint at %s", st.System.XLogPos, st.Checkpoint.FlushLSN)
	}
}
