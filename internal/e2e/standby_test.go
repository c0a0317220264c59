package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/inspect"
	"github.com/pgstream/pgstream/internal/pgcluster"
	"github.com/pgstream/pgstream/internal/pgtest"
)

// standbyPair is a primary and a hot standby streaming from it through a physical slot, with
// hot_standby_feedback on, of the test's own.
type standbyPair struct {
	primary, standby *pgtest.Cluster
}

// skipBefore16 skips a test of decoding on a standby when the server binaries are older than
// PostgreSQL 16, which cannot decode on a standby.
func skipBefore16(t *testing.T) {
	t.Helper()
	if cluster.Version < inspect.MinStandbyMajor {
		t.Skipf("decoding on a standby needs PostgreSQL %d or newer and the server binaries are PostgreSQL %d "+
			"(run it with PGSTREAM_PG_BIN=$(bash scripts/postgres.sh 16), as make test-versions does)", inspect.MinStandbyMajor, cluster.Version)
	}
}

// newStandbyPair starts a primary, runs setup on its database postgres, and makes a standby of it.
func newStandbyPair(t *testing.T, setup func(p *pgtest.Cluster), standbySettings map[string]string) *standbyPair {
	t.Helper()
	p := pgtest.New(t, pgtest.Options{Settings: map[string]string{
		"wal_sender_timeout":    fmt.Sprintf("'%dms'", walSenderTimeout.Milliseconds()),
		"max_wal_senders":       "20",
		"max_replication_slots": "20",
	}})
	if setup != nil {
		setup(p)
	}
	s, err := p.StartStandby(pgcluster.StandbyOptions{Settings: standbySettings})
	if err != nil {
		t.Fatalf("start the standby: %v", err)
	}
	t.Cleanup(s.Close)
	return &standbyPair{primary: p, standby: &pgtest.Cluster{Cluster: s}}
}

// waitReplayed waits until the standby has replayed everything the primary has written so far.
func (sp *standbyPair) waitReplayed(t *testing.T) {
	t.Helper()
	at, err := sp.primary.Query("postgres", "SELECT pg_current_wal_lsn()")
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 120*time.Second, "the standby replayed "+at, nil, func() bool {
		v, err := sp.standby.Query("postgres", "SELECT (pg_last_wal_replay_lsn() >= '"+at+"')::text")
		return err == nil && v == "true"
	})
}

// standbyConfig writes a config streaming the standby's database postgres to a file sink in dir;
// with primary, source.primary_url names the primary. source and snapshot are the lines of those
// sections after the common ones.
func (sp *standbyPair) config(t *testing.T, dir, slot string, primary bool, source, snapshot string) string {
	t.Helper()
	if primary {
		source = "  primary_url: " + sp.primary.URL("postgres") + "\n" + source
	}
	return binaryConfig{url: sp.standby.URL("postgres"), slot: slot, source: "  status_interval: 200ms\n" + source,
		pipeline: "  checkpoint_interval: 50ms\n  max_batch_events: 64\n  reconnect_min: 100ms\n  reconnect_max: 1s\n",
		snapshot: snapshot, jsonFormat: true}.write(t, dir)
}

// loggedProc is the pgstream binary running, with its output readable while it runs.
type loggedProc struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan error
}

func startLogged(t *testing.T, args ...string) *loggedProc {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	p := &loggedProc{cmd: cmd, out: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

// exited reports, with a message, whether the process has ended. Its result stays in p.done.
func (p *loggedProc) exited() (string, bool) {
	select {
	case err := <-p.done:
		p.done <- err
		return fmt.Sprintf("pgstream exited: %v\n%s", err, p.out), true
	default:
		return "", false
	}
}

// stop stops pgstream with SIGTERM and expects a clean exit.
func (p *loggedProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("pgstream did not exit cleanly: %v\n%s", err, p.out)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("pgstream did not stop within 60s of SIGTERM:\n%s", p.out)
	}
}

// waitStreaming waits until, on the cluster pg, the slot's walsender streams.
func (p *loggedProc) waitStreaming(t *testing.T, pg *pgtest.Cluster, slot string) {
	t.Helper()
	waitUntil(t, 120*time.Second, "slot "+slot+" streams", p.exited, func() bool {
		v, err := pg.Query("postgres", fmt.Sprintf(`SELECT r.state FROM pg_replication_slots s
JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = '%s'`, slot))
		return err == nil && (v == "streaming" || v == "catchup")
	})
}

// compareWithPrimary checks that the sink's latest version of every row of the tables is the
// database's (on pg), once a marker written on pg and every snapshot requested before it have
// reached the sink.
func compareWithPrimary(t *testing.T, pg *pgtest.Cluster, dir string, tables []string) []event {
	t.Helper()
	evs := markDoneOn(t, pg, "postgres", filepath.Join(dir, "changes.jsonl"), filepath.Join(dir, "checkpoint.json"), 180*time.Second)
	got, ops := materialize(t, evs)
	compareState(t, got, dbStateOn(t, pg, "postgres", tables))
	t.Logf("events by op: %v", ops)
	return evs
}

// snapshotReads counts the snapshot reads ("r" events) of each table.
func snapshotReads(evs []event) map[string]int {
	n := map[string]int{}
	for _, e := range evs {
		if e.Op == "r" {
			n[e.Source.Table]++
		}
	}
	return n
}

// TestStandbyDecodingSnapshotStreamsAndRestarts decodes from a hot standby with source.primary_url
// set: pgstream creates the publication on the primary and the slot on the standby (made prompt by
// pg_log_standby_snapshot() on the primary), reads the initial snapshot on the standby, streams a
// workload running on the primary, is restarted in the middle of it, and writes its heartbeats on
// the primary. The sink's latest version of every row must be the primary's.
func TestStandbyDecodingSnapshotStreamsAndRestarts(t *testing.T) {
	skipBefore16(t)
	tables := []string{"sa", "sb"}
	sp := newStandbyPair(t, func(p *pgtest.Cluster) { createSnapshotTablesOn(t, p, "postgres", tables, 20000) }, nil)
	wl := snapshotWorkloadOn(t, sp.primary, "postgres", tables, 20000)

	dir := t.TempDir()
	cfg := sp.config(t, dir, "sby", true, "  heartbeat_interval: 1s\n  heartbeat_to_sinks: true\n",
		"  mode: initial\n  workers: 2\n  chunk_pages: 16\n  poll_interval: 200ms\n")
	p := startLogged(t, "run", "--config", cfg)
	p.waitStreaming(t, sp.standby, "sby")
	if n, err := sp.primary.Query("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical'"); err != nil || n != "0" {
		t.Fatalf("logical slots on the primary: %q, %v (the slot belongs on the standby)", n, err)
	}
	if n, err := sp.primary.Query("postgres", "SELECT count(*) FROM pg_publication WHERE pubname = 'pgs_sby'"); err != nil || n != "1" {
		t.Fatalf("publication pgs_sby on the primary: %q, %v", n, err)
	}
	waitEvents(t, filepath.Join(dir, "changes.jsonl"), 60*time.Second, func(evs []event) bool { return snapshotReads(evs)["sa"] > 0 })
	p.stop(t)
	for _, want := range []string{"the source is a standby: decoding runs on it", "snapshot complete"} {
		if !strings.Contains(p.out.String(), want) {
			t.Fatalf("pgstream's log does not say %q:\n%s", want, p.out)
		}
	}

	// Restarted while the workload runs: it resumes from its checkpoint on the standby.
	p = startLogged(t, "run", "--config", cfg)
	p.waitStreaming(t, sp.standby, "sby")
	time.Sleep(500 * time.Millisecond) // let the workload run on while it streams
	wl.MustStop(t)
	evs := compareWithPrimary(t, sp.primary, dir, tables)
	// The workload deletes rows before the slot exists: most of the 20000 rows of each table are left.
	if n := snapshotReads(evs); n["sa"] < 15000 || n["sb"] < 15000 {
		t.Fatalf("snapshot reads %v, want most of the 20000 rows of each table", n)
	}
	// With nothing committed any more, a heartbeat is written on the primary and comes back
	// through the standby's slot.
	waitEvents(t, filepath.Join(dir, "changes.jsonl"), 60*time.Second, func(evs []event) bool {
		for _, e := range evs {
			if e.Message != nil && e.Message.Prefix == "pgstream.heartbeat" {
				return true
			}
		}
		return false
	})
	p.stop(t)
}

// TestStandbyDecodingResnapshotsOnline requests snapshots while pgstream streams from a hot standby:
// with pgstream snapshot (the request is written on the primary), with a row of the signal table,
// and by adding a table to the publication. The chunks are read on the standby between watermarks
// written on the primary, while a workload runs on the primary; pgstream is restarted while they
// are read, and resumes them. The sink's latest version of every row must be the primary's.
func TestStandbyDecodingResnapshotsOnline(t *testing.T) {
	skipBefore16(t)
	tables := []string{"ra", "rb"}
	sp := newStandbyPair(t, func(p *pgtest.Cluster) {
		createSnapshotTablesOn(t, p, "postgres", tables, 20000)
		p.MustExec(t, "postgres", "CREATE TABLE signals (id serial PRIMARY KEY, tables text)")
	}, nil)
	dir := t.TempDir()
	// The row rate cap keeps the snapshots running long enough to restart pgstream in the middle.
	cfg := sp.config(t, dir, "rsn", true, "  heartbeat_interval: -1s\n",
		"  mode: never\n  new_tables: true\n  poll_interval: 200ms\n  signal_table: public.signals\n  workers: 2\n  chunk_pages: 16\n  max_rows_per_second: 4000\n")
	p := startLogged(t, "run", "--config", cfg)
	p.waitStreaming(t, sp.standby, "rsn")
	wl := snapshotWorkloadOn(t, sp.primary, "postgres", tables, 20000)

	if out, code := runBinary(t, 60*time.Second, "snapshot", "--config", cfg, "--table", "public.ra"); code != 0 || !strings.Contains(out, "requested at") {
		t.Fatalf("pgstream snapshot (exit %d):\n%s", code, out)
	}
	sp.primary.MustExec(t, "postgres", "INSERT INTO signals (tables) VALUES ('public.rb')")
	createSnapshotTablesOn(t, sp.primary, "postgres", []string{"rc"}, 5000)
	ckpt := filepath.Join(dir, "checkpoint.json")
	waitOutput(t, p.out, p.done, "tables joined the publication", 120*time.Second)
	waitUntil(t, 120*time.Second, "the checkpoint holds an unfinished snapshot", p.exited, func() bool { return snapshotPending(t, ckpt) > 0 })
	p.stop(t)
	if pending := snapshotPending(t, ckpt); pending <= 0 {
		t.Fatalf("the snapshots finished before the restart (%d pending), although pgstream reads at most 4000 rows a second", pending)
	}

	p = startLogged(t, "run", "--config", cfg)
	p.waitStreaming(t, sp.standby, "rsn")
	time.Sleep(500 * time.Millisecond)
	wl.MustStop(t)
	evs := compareWithPrimary(t, sp.primary, dir, append(tables, "rc"))
	// A chunk leaves out the rows the workload changed while it was read (the stream delivers
	// them): most of ra's and rb's 20000 rows are snapshot reads, and every one of rc's.
	n := snapshotReads(evs)
	if n["ra"] < 15000 || n["rb"] < 15000 || n["rc"] < 5000 {
		t.Fatalf("snapshot reads %v: want most rows of ra and rb (20000 each) and every row of rc (5000)", n)
	}
	p.stop(t)
	if !strings.Contains(p.out.String(), "resuming snapshot while streaming") {
		t.Fatalf("the second run's log does not say that it resumes the snapshots:\n%s", p.out)
	}
}

// TestStandbyDecodingChunkWaitsForReplay checks the watermark order on a standby that applies
// commits three seconds late (recovery_min_apply_delay). A snapshot is requested, and a second and
// a half later every row of the table is updated on the primary. The request comes through the
// standby's slot three seconds after it committed, and pgstream writes the low watermark on the
// primary then, after the update; the standby applies the update only a second and a half later.
// A chunk read on the standby at once would miss the update, which the stream delivers before the
// window opens, and its old rows would overwrite the new ones in the sink. pgstream reads the chunk
// once the standby has replayed the low watermark, so the sink ends with the updated rows.
func TestStandbyDecodingChunkWaitsForReplay(t *testing.T) {
	skipBefore16(t)
	sp := newStandbyPair(t, func(p *pgtest.Cluster) { createSnapshotTablesOn(t, p, "postgres", []string{"wa"}, 1000) },
		map[string]string{"recovery_min_apply_delay": "'3s'"})
	dir := t.TempDir()
	cfg := sp.config(t, dir, "wat", true, "  heartbeat_interval: -1s\n", "  mode: never\n  new_tables: false\n")
	p := startLogged(t, "run", "--config", cfg)
	p.waitStreaming(t, sp.standby, "wat")
	if out, code := runBinary(t, 60*time.Second, "snapshot", "--config", cfg, "--table", "public.wa"); code != 0 {
		t.Fatalf("pgstream snapshot (exit %d):\n%s", code, out)
	}
	// Not a synchronisation: the pause puts the update's commit between the request and the low
	// watermark, far enough from both for a chunk read at once to miss it.
	time.Sleep(1500 * time.Millisecond)
	sp.primary.MustExec(t, "postgres", "UPDATE wa SET v = v + 1, pad = 'updated'")
	evs := compareWithPrimary(t, sp.primary, dir, []string{"wa"})
	if n := snapshotReads(evs)["wa"]; n != 1000 {
		t.Fatalf("%d snapshot reads of wa's 1000 rows, none of which changed inside the window", n)
	}
	p.stop(t)
}

// TestStandbyDecodingRefusedWithoutPrimary points pgstream at a hot standby without
// source.primary_url. check and run refuse, at once and naming source.primary_url and the options
// that turn each feature off, what needs a write: heartbeats, new tables, the publication's creation.
// With those off, run creates the slot, saying that it waits for the primary's running-transactions
// record and how to make that prompt, and streams once the record comes. A snapshot request is
// refused, naming source.primary_url; so is a standby without hot_standby_feedback.
func TestStandbyDecodingRefusedWithoutPrimary(t *testing.T) {
	skipBefore16(t)
	sp := newStandbyPair(t, func(p *pgtest.Cluster) {
		p.MustExec(t, "postgres", "CREATE TABLE t (id int PRIMARY KEY, v text)")
	}, nil)
	dir := t.TempDir()
	cfg := sp.config(t, dir, "nop", false, "", "  mode: initial\n")
	for _, cmd := range []string{"check", "run"} {
		out, code := runBinary(t, 60*time.Second, cmd, "--config", cfg)
		if code == 0 {
			t.Fatalf("%s on a standby without source.primary_url succeeded:\n%s", cmd, out)
		}
		if cmd == "check" {
			t.Logf("check on a standby without source.primary_url (exit %d):\n%s", code, out)
		}
		for _, want := range []string{"source.primary_url", "negative source.heartbeat_interval", "snapshot.new_tables: false",
			"publication pgs_nop needs CREATE PUBLICATION"} {
			if !strings.Contains(out, want) {
				t.Fatalf("%s (exit %d) does not say %q:\n%s", cmd, code, want, out)
			}
		}
	}
	if n, err := sp.standby.Query("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical'"); err != nil || n != "0" {
		t.Fatalf("slots on the standby after the refusals: %q, %v", n, err)
	}

	sp.primary.MustExec(t, "postgres", "CREATE PUBLICATION pgs_nop FOR ALL TABLES; INSERT INTO t VALUES (1, 'before')")
	sp.waitReplayed(t)
	cfg = sp.config(t, dir, "nop", false, "  heartbeat_interval: -1s\n", "  mode: initial\n  new_tables: false\n")
	if out, code := runBinary(t, 60*time.Second, "check", "--config", cfg); code != 0 || !strings.Contains(out, "source is a hot standby") {
		t.Fatalf("check with heartbeats and new tables off (exit %d):\n%s", code, out)
	}
	p := startLogged(t, "run", "--config", cfg)
	waitOutput(t, p.out, p.done, "waits for the primary's next running-transactions record", 60*time.Second)
	if !strings.Contains(p.out.String(), "pg_log_standby_snapshot()") {
		t.Fatalf("the wait for the slot's creation does not say how to make it prompt:\n%s", p.out)
	}
	// The primary is idle: its background writer logs no running-transactions record. The slot's
	// creation completes once the test logs one.
	waitUntil(t, 120*time.Second, "the slot is created and streams", p.exited, func() bool {
		sp.primary.MustExec(t, "postgres", "SELECT pg_log_standby_snapshot()")
		v, err := sp.standby.Query("postgres", `SELECT r.state FROM pg_replication_slots s
JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = 'nop'`)
		return err == nil && v == "streaming"
	})
	sp.primary.MustExec(t, "postgres", "INSERT INTO t VALUES (2, 'after')")
	waitEvents(t, filepath.Join(dir, "changes.jsonl"), 60*time.Second, func(evs []event) bool {
		got := map[string]string{}
		for _, e := range evs {
			if e.Op == "r" || e.Op == "c" {
				got[e.Op+num(e.row("after")["id"])] = fmt.Sprint(e.row("after")["v"])
			}
		}
		return got["r1"] == "before" && got["c2"] == "after"
	})
	if out, code := runBinary(t, 60*time.Second, "snapshot", "--config", cfg, "--table", "public.t"); code == 0 || !strings.Contains(out, "set source.primary_url") {
		t.Fatalf("pgstream snapshot on a standby without source.primary_url (exit %d):\n%s", code, out)
	}
	p.stop(t)

	sp.standby.MustExec(t, "postgres", "ALTER SYSTEM SET hot_standby_feedback = off")
	sp.standby.MustExec(t, "postgres", "SELECT pg_reload_conf()")
	waitUntil(t, 60*time.Second, "hot_standby_feedback is off", nil, func() bool {
		v, err := sp.standby.Query("postgres", "SHOW hot_standby_feedback")
		return err == nil && v == "off"
	})
	if out, code := runBinary(t, 60*time.Second, "check", "--config", cfg); code == 0 ||
		!strings.Contains(out, "hot_standby_feedback is off") || !strings.Contains(out, "removes catalog rows the slot still needs") {
		t.Fatalf("check on a standby without hot_standby_feedback (exit %d):\n%s", code, out)
	}
}

// TestStandbyDecodingAcrossPromotion streams from a hot standby while a workload runs on the
// primary, then promotes the standby and moves the workload to it. pgstream carries on: its
// checkpoint follows the new timeline, a snapshot requested after the promotion has its watermarks
// written on the promoted server itself, and a reconnect and a restart after the promotion resume
// where it stood. The sink's latest version of every row must be the promoted server's.
func TestStandbyDecodingAcrossPromotion(t *testing.T) {
	skipBefore16(t)
	tables := []string{"pa", "pb"}
	sp := newStandbyPair(t, func(p *pgtest.Cluster) { createSnapshotTablesOn(t, p, "postgres", tables, 5000) }, nil)
	wl := snapshotWorkloadOn(t, sp.primary, "postgres", tables, 5000)
	dir := t.TempDir()
	cfg := sp.config(t, dir, "pro", true, "  heartbeat_interval: 1s\n", "  mode: initial\n  workers: 2\n  chunk_pages: 8\n  poll_interval: 200ms\n")
	p := startLogged(t, "run", "--config", cfg)
	p.waitStreaming(t, sp.standby, "pro")
	time.Sleep(time.Second)
	wl.MustStop(t)
	sp.waitReplayed(t)

	if err := sp.standby.Promote(); err != nil {
		t.Fatal(err)
	}
	// The next ids of the workload on the promoted server start far above the primary's.
	wl = snapshotWorkloadOn(t, sp.standby, "postgres", tables, 100000)
	ckpt := filepath.Join(dir, "checkpoint.json")
	waitUntil(t, 120*time.Second, "the checkpoint records timeline 2", p.exited, func() bool { return checkpointTimeline(t, ckpt) == 2 })
	if out, code := runBinary(t, 60*time.Second, "snapshot", "--config", cfg, "--table", "public.pa"); code != 0 {
		t.Fatalf("pgstream snapshot after the promotion (exit %d):\n%s", code, out)
	}
	// A reconnect: the walsender is ended on the promoted server.
	sp.standby.MustExec(t, "postgres", "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'pro'")
	waitUntil(t, 60*time.Second, "pgstream reconnected", p.exited, func() bool { return strings.Contains(p.out.String(), "resuming replication") })
	p.waitStreaming(t, sp.standby, "pro")
	p.stop(t)
	if !strings.Contains(p.out.String(), "the checkpoint follows it") {
		t.Fatalf("pgstream's log does not say that the checkpoint follows the new timeline:\n%s", p.out)
	}
	first := p.out.String()

	p = startLogged(t, "run", "--config", cfg)
	p.waitStreaming(t, sp.standby, "pro")
	time.Sleep(500 * time.Millisecond)
	wl.MustStop(t)
	evs := compareWithPrimary(t, sp.standby, dir, tables)
	// The request was planned by one of the runs, whichever decoded it, and dropped by none.
	logs := first + p.out.String()
	if strings.Contains(logs, "snapshot request ignored") || !strings.Contains(logs, "snapshot requested") {
		t.Fatalf("the snapshot request after the promotion was not planned:\n%s", logs)
	}
	// Each table holds about 5000 rows whenever it is read (the workload inserts as much as it
	// deletes), and a chunk leaves out rows changed while it was read.
	if n := snapshotReads(evs); n["pa"] < 8000 || n["pb"] < 4000 || n["pb"] > 6000 {
		t.Fatalf("snapshot reads %v: want pa read twice (initial, and requested after the promotion) and pb once", n)
	}
	p.stop(t)
}

// checkpointTimeline returns the timeline the checkpoint file records, 0 when there is none yet.
func checkpointTimeline(t *testing.T, path string) int32 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var env struct {
		Payload struct {
			Timeline int32 `json:"timeline"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatalf("checkpoint %s: %v", path, err)
	}
	return env.Payload.Timeline
}

// TestStandbyDecodingRefusedBefore16: a standby of PostgreSQL 14 or 15 cannot decode; check and run say
// so, naming the minimum version. It runs on the servers older than 16 only.
func TestStandbyDecodingRefusedBefore16(t *testing.T) {
	if cluster.Version >= inspect.MinStandbyMajor {
		t.Skipf("PostgreSQL %d decodes on a standby; this test is for servers older than %d", cluster.Version, inspect.MinStandbyMajor)
	}
	sp := newStandbyPair(t, func(p *pgtest.Cluster) {
		p.MustExec(t, "postgres", "CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION pgs_old FOR ALL TABLES")
	}, nil)
	sp.waitReplayed(t)
	dir := t.TempDir()
	cfg := sp.config(t, dir, "old", true, "  heartbeat_interval: -1s\n", "  mode: never\n")
	want := fmt.Sprintf("logical decoding on a standby needs PostgreSQL %d or newer", inspect.MinStandbyMajor)
	for _, cmd := range []string{"check", "run"} {
		out, code := runBinary(t, 60*time.Second, cmd, "--config", cfg)
		if code == 0 || !strings.Contains(out, want) || !strings.Contains(out, fmt.Sprintf("PostgreSQL %d", cluster.Version)) {
			t.Fatalf("%s on a PostgreSQL %d standby (exit %d) does not say %q:\n%s", cmd, cluster.Version, code, want, out)
		}
	}
}
