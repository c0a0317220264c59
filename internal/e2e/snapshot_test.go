package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
)

// snapshotWorkload updates, inserts and deletes rows of the given tables (id int PRIMARY KEY, v int,
// pad text) until it is stopped. Each table starts with ids 1..startRows.
func snapshotWorkload(t testing.TB, db string, tables []string, startRows int) *workload {
	return snapshotWorkloadOn(t, cluster, db, tables, startRows)
}

// snapshotWorkloadOn is snapshotWorkload on the cluster pg.
func snapshotWorkloadOn(t testing.TB, pg *pgtest.Cluster, db string, tables []string, startRows int) *workload {
	next := startRows + 1
	return sqlWorkload(t, pg, db, time.Millisecond, func(int) (string, func()) {
		var sql strings.Builder
		sql.WriteString("BEGIN;")
		for range 1 + rand.IntN(8) {
			tbl := tables[rand.IntN(len(tables))]
			switch r := rand.IntN(10); {
			case r < 6:
				fmt.Fprintf(&sql, "UPDATE %s SET v = v + 1, pad = md5(random()::text) WHERE id = %d;", tbl, 1+rand.IntN(next))
			case r < 8:
				fmt.Fprintf(&sql, "INSERT INTO %s VALUES (%d, 0, 'new') ON CONFLICT DO NOTHING;", tbl, next)
				next++
			default:
				fmt.Fprintf(&sql, "DELETE FROM %s WHERE id = %d;", tbl, 1+rand.IntN(next))
			}
		}
		sql.WriteString("COMMIT;")
		return sql.String(), nil
	})
}

// materialize applies the events in file order: the latest version of each row by table and id.
func materialize(t testing.TB, evs []event) (map[string]map[string]string, map[string]int) {
	t.Helper()
	state := map[string]map[string]string{}
	ops := map[string]int{}
	for _, e := range evs {
		ops[e.Op]++
		name := e.Source.Schema + "." + e.Source.Table
		if state[name] == nil && e.Source.Table != "" {
			state[name] = map[string]string{}
		}
		switch e.Op {
		case "r", "c", "u":
			a := e.row("after")
			state[name][fmt.Sprint(a["id"])] = fmt.Sprintf("%v|%v", a["v"], a["pad"])
			if e.Op == "u" && e.Before != nil && string(e.Before) != "null" {
				if b := e.row("before"); b != nil && fmt.Sprint(b["id"]) != fmt.Sprint(a["id"]) {
					delete(state[name], fmt.Sprint(b["id"]))
				}
			}
		case "d":
			delete(state[name], fmt.Sprint(e.row("before")["id"]))
		case "t":
			state[name] = map[string]string{}
		}
	}
	return state, ops
}

// dbState reads the rows of the tables as the materialized state shows them.
func dbState(t testing.TB, db string, tables []string) map[string]map[string]string {
	t.Helper()
	return dbStateOn(t, cluster, db, tables)
}

// dbStateOn is dbState on the cluster pg.
func dbStateOn(t testing.TB, pg *pgtest.Cluster, db string, tables []string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, tbl := range tables {
		rows, err := pg.QueryRows(db, fmt.Sprintf("SELECT id::text, v::text, pad FROM %s", tbl))
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, r := range rows {
			m[r[0]] = r[1] + "|" + r[2]
		}
		out["public."+tbl] = m
	}
	return out
}

func compareState(t testing.TB, got, want map[string]map[string]string) {
	t.Helper()
	for tbl, rows := range want {
		g := got[tbl]
		var missing, wrong, extra []string
		for id, v := range rows {
			gv, ok := g[id]
			switch {
			case !ok:
				missing = append(missing, id)
			case gv != v:
				wrong = append(wrong, fmt.Sprintf("%s: sink %q, db %q", id, gv, v))
			}
		}
		for id := range g {
			if _, ok := rows[id]; !ok {
				extra = append(extra, id)
			}
		}
		sort.Strings(missing)
		sort.Strings(extra)
		if len(missing)+len(wrong)+len(extra) > 0 {
			t.Fatalf("%s: the sink's rows differ from the database's (%d rows): %d missing %v, %d stale %v, %d extra %v",
				tbl, len(rows), len(missing), head(missing), len(wrong), head(wrong), len(extra), head(extra))
		}
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }

// snapshotPending returns how many table snapshots the checkpoint file lists as unfinished, or -1
// when there is no checkpoint yet.
func snapshotPending(t testing.TB, path string) int {
	t.Helper()
	_, pending := checkpointState(t, path)
	return pending
}

// checkpointState returns the commit position of the checkpoint file and how many table snapshots
// it lists as unfinished, read at once; pending is -1 when there is no checkpoint yet.
func checkpointState(t testing.TB, path string) (commit lsn.LSN, pending int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, -1
	}
	var env struct {
		Payload struct {
			CommitLSN lsn.LSN           `json:"commit_lsn"`
			Snapshot  []json.RawMessage `json:"snapshot"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatalf("checkpoint %s: %v", path, err)
	}
	return env.Payload.CommitLSN, len(env.Payload.Snapshot)
}

// markDone writes a message through the stream and waits until the sink holds it and a checkpoint
// that covers it lists no unfinished snapshot: then the sink holds every change committed before
// it, and every snapshot requested before it.
func markDone(t *testing.T, db, out, ckpt string, timeout time.Duration) []event {
	t.Helper()
	return markDoneOn(t, cluster, db, out, ckpt, timeout)
}

// markDoneOn is markDone on the cluster pg.
func markDoneOn(t *testing.T, pg *pgtest.Cluster, db, out, ckpt string, timeout time.Duration) []event {
	t.Helper()
	nonce := fmt.Sprintf("done-%d", rand.Int64())
	pg.MustExec(t, db, fmt.Sprintf("SELECT pg_logical_emit_message(true, 'e2e.done', '%s')", nonce))
	want := base64.StdEncoding.EncodeToString([]byte(nonce))
	deadline := time.Now().Add(timeout)
	for {
		// The checkpoint first, then the file: what the checkpoint counts as done is in the file
		// by the time it is read. The checkpoint must be at or past the marker's commit: a
		// snapshot request joins the checkpoint with its transaction, so one saved before a
		// request reached it would show no unfinished snapshot while the sink already holds the
		// marker.
		if commit, pending := checkpointState(t, ckpt); pending == 0 {
			evs := readWrittenEvents(t, out)
			for i := len(evs) - 1; i >= 0; i-- {
				if m := evs[i].Message; m != nil && m.Prefix == "e2e.done" && m.Content == want {
					at, err := lsn.Parse(evs[i].Source.CommitLSN)
					if err != nil {
						t.Fatalf("marker without a commit position: %s", evs[i].Raw)
					}
					if commit >= at {
						return evs
					}
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for the end marker in %s and a checkpoint without unfinished snapshots (%d pending)",
				timeout, out, snapshotPending(t, ckpt))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func createSnapshotTables(t *testing.T, db string, tables []string, rows int) {
	createSnapshotTablesOn(t, cluster, db, tables, rows)
}

// createSnapshotTablesOn is createSnapshotTables on the cluster pg.
func createSnapshotTablesOn(t *testing.T, pg *pgtest.Cluster, db string, tables []string, rows int) {
	for _, tbl := range tables {
		pg.MustExec(t, db, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, v int NOT NULL, pad text);
INSERT INTO %s SELECT i, 0, repeat(md5(i::text), 2) FROM generate_series(1, %d) i;`, tbl, tbl, rows))
	}
}

// TestSnapshotConsistentUnderLoad snapshots tables that a workload keeps changing throughout, with
// two workers and small chunks, and checks that the sink's latest version of every row equals the
// database's: no row missing, no change missing, nothing stale.
func TestSnapshotConsistentUnderLoad(t *testing.T) {
	db := newDB(t)
	tables := []string{"snap_a", "snap_b"}
	createSnapshotTables(t, db, tables, 20000)
	exec1(t, db, `CREATE TABLE snap_empty (id int PRIMARY KEY, v int, pad text)`)
	wl := snapshotWorkload(t, db, tables, 20000)

	r := startPipeline(t, db, runOpts{pcfg: pipeline.Config{MaxBatchEvents: 500,
		Snapshot: pipeline.SnapshotConfig{Mode: pipeline.SnapshotInitial, Workers: 2, ChunkPages: 16}}})
	r.waitStreaming()
	time.Sleep(time.Second)
	wl.MustStop(t)
	evs := markDone(t, db, r.path, r.ckpt, 120*time.Second)
	got, ops := materialize(t, evs)
	compareState(t, got, dbState(t, db, append(tables, "snap_empty")))
	ids := map[string]bool{}
	for _, e := range evs {
		if e.Op == "r" {
			if ids[e.ID] {
				t.Fatalf("snapshot id %s appears twice", e.ID)
			}
			ids[e.ID] = true
		}
	}
	if ops["r"] < 39000 {
		t.Fatalf("only %d snapshot reads for 40000 rows", ops["r"])
	}
	t.Logf("events by op: %v", ops)
}

// TestSnapshotSurvivesSIGKILL kills the binary several times during the snapshot of a table under
// load (first inside the exported snapshot, then while the rest is re-read between watermarks) and
// checks that the sink ends up with exactly the database's rows.
func TestSnapshotSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: several kill/restart rounds")
	}
	db := newDB(t)
	tables := []string{"big_a", "big_b"}
	createSnapshotTables(t, db, tables, 60000)
	dir := t.TempDir()
	slot := "snapkill_" + db
	// The row rate cap makes the snapshot of the 120,000 rows last at least 11 seconds of
	// pgstream's running time, however fast the machine: every kill below comes within
	// milliseconds of the checkpoint showing progress, so each lands while chunks remain.
	cfgPath := writeConfigSnapshot(t, dir, db, slot, "", "  mode: initial\n  workers: 2\n  chunk_pages: 8\n  max_rows_per_second: 10000\n", "warn")
	out, ckpt := filepath.Join(dir, "changes.jsonl"), filepath.Join(dir, "checkpoint.json")
	wl := snapshotWorkload(t, db, tables, 60000)

	// Each round kills pgstream as soon as the checkpoint holds more chunks done than at the last
	// kill: the first round inside the exported snapshot, the next ones while the rest is read
	// between watermarks.
	type atKill struct {
		events int                   // complete events in the file when killed
		done   map[string]chunkRange // chunks the checkpoint held as done, by table OID
	}
	var marks []atKill
	for round := 0; round < 4; round++ {
		p := startBinary(t, "run", "--config", cfgPath)
		doneBefore := 0
		if len(marks) > 0 {
			doneBefore = countDone(marks[len(marks)-1].done)
		}
		deadline := time.Now().Add(120 * time.Second)
		for snapshotPending(t, ckpt) <= 0 || countDone(doneChunks(t, ckpt)) <= doneBefore {
			select {
			case err := <-p.done:
				t.Fatalf("round %d: pgstream exited early: %v\n%s", round, err, p.stderr)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the checkpoint shows no chunk done beyond the %d of the last kill after 120s\n%s", round, doneBefore, p.stderr)
			}
			time.Sleep(2 * time.Millisecond)
		}
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		pending := snapshotPending(t, ckpt)
		n := len(readEventsAfterKill(t, out))
		marks = append(marks, atKill{events: n, done: doneChunks(t, ckpt)})
		t.Logf("round %d: killed with %d table snapshot(s) unfinished, %d chunks done, %d events in the file", round, pending, countDone(marks[round].done), n)
		if pending <= 0 {
			t.Fatalf("round %d: the snapshot finished before the kill, although pgstream reads at most 10,000 rows a second", round)
		}
	}
	// check says where the snapshot stands: one line for each table the checkpoint holds unfinished.
	if out, code := runBinary(t, 60*time.Second, "check", "--config", cfgPath); code != 0 ||
		strings.Count(out, "chunks done; the rest is read while streaming") != snapshotPending(t, ckpt) ||
		!strings.Contains(out, "snapshot of public.big_") {
		t.Fatalf("check after the kills (exit %d) does not report the %d unfinished table snapshot(s):\n%s", code, snapshotPending(t, ckpt), out)
	}
	p := startBinary(t, "run", "--config", cfgPath)
	time.Sleep(time.Second)
	wl.MustStop(t)
	evs := markDone(t, db, out, ckpt, 180*time.Second)
	stopBinary(t, p)
	got, ops := materialize(t, evs)
	compareState(t, got, dbState(t, db, tables))
	// A restart reads only the chunks the checkpoint did not hold as done: no snapshot read after a
	// kill comes from a chunk done at that kill.
	doneAtSomeKill := 0
	for k, m := range marks {
		doneAtSomeKill += countDone(m.done)
		for _, e := range evs[m.events:] {
			if e.Op != "r" {
				continue
			}
			oid, chunk := readChunkOf(t, e, m.done)
			if m.done[oid].has(chunk) {
				t.Fatalf("after kill %d, chunk %d of table %s was read again although the checkpoint held it done: %s", k, chunk, oid, e.Raw)
			}
		}
	}
	if doneAtSomeKill == 0 {
		t.Fatal("no kill came after a chunk was done: nothing shows that a restart skips done chunks")
	}
	t.Logf("%d kills; events by op: %v", len(marks), ops)
}

// TestSnapshotRowRateCap snapshots a table with snapshot.max_rows_per_second and checks that the
// snapshot took at least as long as the cap allows: a lower bound that a slower machine only widens.
func TestSnapshotRowRateCap(t *testing.T) {
	db := newDB(t)
	createSnapshotTables(t, db, []string{"capped"}, 10000)
	start := time.Now()
	r := startPipeline(t, db, runOpts{pcfg: pipeline.Config{
		Snapshot: pipeline.SnapshotConfig{Mode: pipeline.SnapshotInitial, Workers: 2, ChunkPages: 8, MaxRowsPerSecond: 2000}}})
	// The end marker must come after the slot's consistent point: the checkpoint is written once
	// the slot exists.
	for deadline := time.Now().Add(60 * time.Second); snapshotPending(t, r.ckpt) < 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint after 60s")
		}
	}
	evs := markDone(t, db, r.path, r.ckpt, 120*time.Second)
	elapsed := time.Since(start)
	_, ops := materialize(t, evs)
	if ops["r"] != 10000 {
		t.Fatalf("%d snapshot reads, want 10000", ops["r"])
	}
	// A burst of 256 rows, then 2,000 a second: (10000-256)/2000 s at the least.
	if least := 4870 * time.Millisecond; elapsed < least {
		t.Fatalf("10,000 rows at most 2,000 a second were read in %s, less than %s", elapsed, least)
	}
	t.Logf("10,000 rows in %s", elapsed)
}

// chunkRange is a table's chunk size and its done chunk ranges, as the checkpoint holds them.
type chunkRange struct {
	pages uint64
	done  [][2]uint64
}

// countDone counts the done chunks of every table.
func countDone(tables map[string]chunkRange) int {
	n := 0
	for _, c := range tables {
		for _, r := range c.done {
			n += int(r[1] - r[0])
		}
	}
	return n
}

func (c chunkRange) has(chunk uint64) bool {
	for _, r := range c.done {
		if chunk >= r[0] && chunk < r[1] {
			return true
		}
	}
	return false
}

// doneChunks reads the done chunks of every unfinished table snapshot in the checkpoint file.
func doneChunks(t testing.TB, path string) map[string]chunkRange {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Payload struct {
			Snapshot []struct {
				OID        uint32      `json:"oid"`
				ChunkPages uint64      `json:"chunk_pages"`
				Done       [][2]uint64 `json:"done"`
			} `json:"snapshot"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatalf("checkpoint %s: %v", path, err)
	}
	out := map[string]chunkRange{}
	for _, s := range env.Payload.Snapshot {
		out[fmt.Sprint(s.OID)] = chunkRange{pages: s.ChunkPages, done: s.Done}
	}
	return out
}

// readChunkOf returns the table OID and chunk index of a snapshot read, from its id
// "<generation>/r/<oid>/<block>.<offset>/<xmin>" and the table's chunk size.
func readChunkOf(t testing.TB, e event, tables map[string]chunkRange) (string, uint64) {
	t.Helper()
	parts := strings.Split(e.ID, "/")
	if len(parts) != 6 || parts[2] != "r" {
		t.Fatalf("snapshot read id %q", e.ID)
	}
	block, err := strconv.ParseUint(strings.SplitN(parts[4], ".", 2)[0], 10, 64)
	if err != nil {
		t.Fatalf("snapshot read id %q: %v", e.ID, err)
	}
	c, ok := tables[parts[3]]
	if !ok || c.pages == 0 {
		return parts[3], ^uint64(0) // the table's snapshot had no done chunks listed
	}
	return parts[3], block / c.pages
}

// TestOnlineResnapshot re-reads a table with `pgstream snapshot --table` while a pipeline streams
// it under load: the stream keeps its walsender, and the sink's rows equal the database's although
// the sink saw none of the rows that existed before streaming started except through the re-read.
func TestOnlineResnapshot(t *testing.T) {
	db := newDB(t)
	tables := []string{"live"}
	createSnapshotTables(t, db, tables, 20000)
	r := startPipeline(t, db, runOpts{tables: []string{"public.live"},
		pcfg: pipeline.Config{Snapshot: pipeline.SnapshotConfig{Mode: pipeline.SnapshotNever, ChunkPages: 16}}})
	r.waitStreaming()
	_, pidBefore := slotState(t, r.slot)
	wl := snapshotWorkload(t, db, tables, 20000)
	time.Sleep(300 * time.Millisecond)

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "pgstream.yaml")
	cfg := fmt.Sprintf("source:\n  url: %s\n  slot: %s\n  publication: pgs_%s\ncheckpoint:\n  path: %s\nsinks:\n  - type: stdout\n",
		cluster.URL(db), r.slot, r.slot, filepath.Join(dir, "unused.json"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, "snapshot", "--config", cfgPath, "--table", "public.live")
	if err := <-p.done; err != nil {
		t.Fatalf("pgstream snapshot: %v\n%s", err, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "the running pgstream re-reads") {
		t.Fatalf("pgstream snapshot said:\n%s", p.stderr)
	}
	// A table outside the publication is refused with the way out.
	exec1(t, db, `CREATE TABLE not_published (id int)`)
	bad := startBinary(t, "snapshot", "--config", cfgPath, "--table", "public.not_published")
	if err := <-bad.done; err == nil || !strings.Contains(bad.stderr.String(), "ALTER PUBLICATION") {
		t.Fatalf("snapshot of an unpublished table: err %v, output:\n%s", err, bad.stderr)
	}

	time.Sleep(time.Second)
	wl.MustStop(t)
	evs := markDone(t, db, r.path, r.ckpt, 120*time.Second)
	got, ops := materialize(t, evs)
	compareState(t, got, dbState(t, db, tables))
	if _, pidAfter := slotState(t, r.slot); pidAfter != pidBefore {
		t.Fatalf("walsender changed from %s to %s during the re-snapshot", pidBefore, pidAfter)
	}
	if ops["r"] == 0 {
		t.Fatal("no snapshot reads")
	}
	t.Logf("events by op: %v", ops)
}

// TestSnapshotPartitionedViaRoot snapshots a partitioned table published through its root: the
// partitions' ctids and xmins overlap (one INSERT fills both), yet every row gets its own id, and the
// chunks cover the largest partition's pages.
func TestSnapshotPartitionedViaRoot(t *testing.T) {
	db := newDB(t)
	slot := "part_" + db
	exec1(t, db, `CREATE TABLE parted (id int PRIMARY KEY, v int NOT NULL, pad text) PARTITION BY RANGE (id);
CREATE TABLE parted_lo PARTITION OF parted FOR VALUES FROM (0) TO (5000);
CREATE TABLE parted_hi PARTITION OF parted FOR VALUES FROM (5000) TO (1000000);
INSERT INTO parted SELECT i, 0, repeat('x', 100) FROM generate_series(1, 9000) i;`)
	exec1(t, db, fmt.Sprintf(`CREATE PUBLICATION pgs_%s FOR TABLE parted WITH (publish_via_partition_root = true)`, slot))
	r := startPipeline(t, db, runOpts{slot: slot, tables: []string{"public.parted"},
		pcfg: pipeline.Config{Snapshot: pipeline.SnapshotConfig{Mode: pipeline.SnapshotInitial, ChunkPages: 8}}})
	r.waitStreaming()
	exec1(t, db, `UPDATE parted SET v = 1 WHERE id IN (1, 4999, 5000, 8999)`)
	evs := markDone(t, db, r.path, r.ckpt, 120*time.Second)
	ids := map[string]bool{}
	for _, e := range evs {
		if e.Op != "r" {
			continue
		}
		if e.Source.Table != "parted" {
			t.Fatalf("snapshot row of table %q, want the root parted: %s", e.Source.Table, e.Raw)
		}
		if ids[e.ID] {
			t.Fatalf("snapshot id %s appears twice", e.ID)
		}
		ids[e.ID] = true
	}
	if len(ids) != 9000 {
		t.Fatalf("%d snapshot reads, want 9000", len(ids))
	}
	got, _ := materialize(t, evs)
	compareState(t, got, dbState(t, db, []string{"parted"}))
}

// TestSnapshotTableJoinsPublication adds a table with rows, changed by a workload, to the
// publication while streaming: pgstream notices it and snapshots it without stopping.
func TestSnapshotTableJoinsPublication(t *testing.T) {
	db := newDB(t)
	createSnapshotTables(t, db, []string{"first", "later"}, 3000)
	r := startPipeline(t, db, runOpts{tables: []string{"public.first"},
		pcfg: pipeline.Config{Snapshot: pipeline.SnapshotConfig{Mode: pipeline.SnapshotInitial, ChunkPages: 4, PollInterval: 200 * time.Millisecond}}})
	r.waitStreaming()
	_, pidBefore := slotState(t, r.slot)
	wl := snapshotWorkload(t, db, []string{"first", "later"}, 3000)
	time.Sleep(300 * time.Millisecond)
	exec1(t, db, fmt.Sprintf(`ALTER PUBLICATION pgs_%s ADD TABLE later`, r.slot))
	waitEvents(t, r.path, 60*time.Second, func(evs []event) bool {
		for _, e := range evs {
			if e.Op == "r" && e.Source.Table == "later" {
				return true
			}
		}
		return false
	})
	wl.MustStop(t)
	evs := markDone(t, db, r.path, r.ckpt, 120*time.Second)
	got, ops := materialize(t, evs)
	compareState(t, got, dbState(t, db, []string{"first", "later"}))
	if _, pidAfter := slotState(t, r.slot); pidAfter != pidBefore {
		t.Fatalf("walsender changed from %s to %s", pidBefore, pidAfter)
	}
	// Restarting does not snapshot the table again: the checkpoint knows it.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	n := len(readEvents(t, r.path))
	r2 := startPipeline(t, db, runOpts{dir: filepath.Dir(r.path), slot: r.slot, tables: []string{"public.first"},
		pcfg: pipeline.Config{Snapshot: pipeline.SnapshotConfig{Mode: pipeline.SnapshotInitial, PollInterval: 100 * time.Millisecond}}})
	r2.waitStreaming()
	// A restart that forgot the table would request its snapshot at one of the publication polls
	// (every 100ms) of this second; the marker after it waits for whatever was requested to be read.
	// The wait only bounds what the check can see: it cannot make the check fail wrongly.
	time.Sleep(time.Second)
	for _, e := range markDone(t, db, r2.path, r2.ckpt, 120*time.Second)[n:] {
		if e.Op == "r" {
			t.Fatalf("a restart snapshotted again: %s", e.Raw)
		}
	}
	t.Logf("events by op: %v", ops)
}

// TestSnapshotInitialOnlyThenRun snapshots with snapshot.mode initial_only (the binary exits 0 by
// itself, logging progress on the way), then a normal run streams from the snapshot's consistent
// point: the changes made in between are neither lost nor doubled.
func TestSnapshotInitialOnlyThenRun(t *testing.T) {
	db := newDB(t)
	createSnapshotTables(t, db, []string{"just"}, 50000)
	dir := t.TempDir()
	slot := "only_" + db
	out, ckpt := filepath.Join(dir, "changes.jsonl"), filepath.Join(dir, "checkpoint.json")
	only := "  mode: initial_only\n  chunk_pages: 16\n  progress_interval: 20ms\n"
	cfgPath := writeConfigSnapshot(t, dir, db, slot, "", only, "info")
	p := startBinary(t, "run", "--config", cfgPath)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("initial_only run: %v\n%s", err, p.stderr)
		}
	case <-time.After(120 * time.Second):
		t.Fatal("initial_only run did not stop by itself")
	}
	log := p.stderr.String()
	for _, want := range []string{`"snapshot progress"`, `"eta"`, `"rows_per_sec"`, `"table snapshot complete"`, `initial_only: stopping`} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %s:\n%s", want, log)
		}
	}
	if n := len(readEvents(t, out)); n != 50000 {
		t.Fatalf("%d events after initial_only, want 50000 snapshot reads", n)
	}
	// Changes while pgstream is stopped, then a normal run.
	exec1(t, db, `UPDATE just SET v = 7 WHERE id % 100 = 0; DELETE FROM just WHERE id % 1000 = 1; INSERT INTO just VALUES (60001, 1, 'new')`)
	writeConfigSnapshot(t, dir, db, slot, "", strings.Replace(only, "initial_only", "initial", 1), "info")
	p = startBinary(t, "run", "--config", cfgPath)
	evs := markDone(t, db, out, ckpt, 120*time.Second)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	got, ops := materialize(t, evs)
	compareState(t, got, dbState(t, db, []string{"just"}))
	if ops["r"] != 50000 || ops["u"] != 500 || ops["d"] != 50 || ops["c"] != 1 {
		t.Fatalf("events by op %v; want 50000 r, then 500 u, 50 d and 1 c", ops)
	}
}

// TestResnapshotWaitsForRunningTransactions requests a re-snapshot from SQL (no slot named: every
// pgstream on the database) while a transaction is open: the chunk is read only once every
// transaction running at its low watermark has ended, so that its snapshot sees everything the
// stream delivered before the window.
func TestResnapshotWaitsForRunningTransactions(t *testing.T) {
	db := newDB(t)
	createSnapshotTables(t, db, []string{"waits"}, 100)
	r := startPipeline(t, db, runOpts{pcfg: pipeline.Config{Snapshot: pipeline.SnapshotConfig{Mode: pipeline.SnapshotNever}}})
	r.waitStreaming()
	ctx := context.Background()
	open, err := cluster.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close(ctx)
	if _, err := open.Exec(ctx, "BEGIN; INSERT INTO waits VALUES (1000, 1, 'open')").ReadAll(); err != nil {
		t.Fatal(err)
	}
	exec1(t, db, `SELECT pg_logical_emit_message(true, 'pgstream.snapshot', '{"tables":["public.waits"]}')`)
	// The request is taken in once its transaction has come through the stream: the checkpoint then
	// lists the table's snapshot. A reader that did not wait for the open transaction would deliver
	// the chunk within moments from there; it gets 1.5s to. (The wait only bounds what the check
	// can see: it cannot make the check fail wrongly.)
	waitUntil(t, 60*time.Second, "the checkpoint lists the requested snapshot", nil, func() bool {
		return snapshotPending(t, r.ckpt) == 1
	})
	time.Sleep(1500 * time.Millisecond)
	for _, e := range readWrittenEvents(t, r.path) {
		if e.Op == "r" {
			t.Fatalf("a chunk was delivered while a transaction older than its low watermark was open: %s", e.Raw)
		}
	}
	if _, err := open.Exec(ctx, "COMMIT").ReadAll(); err != nil {
		t.Fatal(err)
	}
	evs := markDone(t, db, r.path, r.ckpt, 120*time.Second)
	got, ops := materialize(t, evs)
	compareState(t, got, dbState(t, db, []string{"waits"}))
	// The open transaction committed inside the chunk's window: its row is read by the chunk but
	// delivered by the stream, whose version wins.
	if ops["r"] != 100 || ops["c"] != 1 {
		t.Fatalf("events by op %v, want 100 snapshot reads and the insert", ops)
	}
}

// TestSignalTableRequestsSnapshot re-snapshots a table because a row naming it was inserted into
// the signal table, the way automation that cannot run pgstream snapshot asks for one.
func TestSignalTableRequestsSnapshot(t *testing.T) {
	db := newDB(t)
	createSnapshotTables(t, db, []string{"sig_data"}, 2000)
	exec1(t, db, `CREATE TABLE pgstream_signal (id bigserial PRIMARY KEY, tables text NOT NULL)`)
	r := startPipeline(t, db, runOpts{pcfg: pipeline.Config{Snapshot: pipeline.SnapshotConfig{Mode: pipeline.SnapshotNever, SignalTable: "pgstream_signal"}}})
	r.waitStreaming()
	exec1(t, db, `UPDATE sig_data SET v = 5 WHERE id <= 10`)
	exec1(t, db, `INSERT INTO pgstream_signal (tables) VALUES ('public.sig_data')`)
	evs := markDone(t, db, r.path, r.ckpt, 120*time.Second)
	got, ops := materialize(t, evs)
	compareState(t, got, dbState(t, db, []string{"sig_data"}))
	if ops["r"] != 2000 {
		t.Fatalf("events by op %v, want 2000 snapshot reads", ops)
	}
}

// TestSignalTableTextArray names the tables in a text[] column of the signal table, one of them a
// table whose name holds a comma: each element is one table.
func TestSignalTableTextArray(t *testing.T) {
	db := newDB(t)
	createSnapshotTables(t, db, []string{"sig_plain", `"sig, odd"`}, 300)
	exec1(t, db, `CREATE TABLE pgstream_signal (id bigserial PRIMARY KEY, tables text[] NOT NULL)`)
	r := startPipeline(t, db, runOpts{pcfg: pipeline.Config{Snapshot: pipeline.SnapshotConfig{Mode: pipeline.SnapshotNever, SignalTable: "pgstream_signal"}}})
	r.waitStreaming()
	exec1(t, db, `INSERT INTO pgstream_signal (tables) VALUES (ARRAY['public.sig, odd', 'public.sig_plain'])`)
	evs := waitEvents(t, r.path, 60*time.Second, func(evs []event) bool {
		_, ops := materialize(t, evs)
		return ops["r"] >= 600
	})
	byTable := map[string]int{}
	for _, e := range evs {
		if e.Op == "r" {
			byTable[e.Source.Table]++
		}
	}
	if byTable["sig, odd"] != 300 || byTable["sig_plain"] != 300 {
		t.Fatalf("snapshot reads by table %v, want 300 of each", byTable)
	}
}

// gateSink holds its first Write until the test opens the gate, and says when that Write began.
type gateSink struct {
	inner   sinks.Sink
	entered chan struct{} // closed when the first Write begins
	first   lsn.LSN       // the commit LSN of the first Write's first event; set before entered closes
	gate    chan struct{} // closed by open
	once    sync.Once
	writes  atomic.Int32
}

func newGateSink() *gateSink {
	return &gateSink{entered: make(chan struct{}), gate: make(chan struct{})}
}

func (s *gateSink) open() { s.once.Do(func() { close(s.gate) }) }

func (s *gateSink) Write(ctx context.Context, b *sinks.Batch) error {
	if s.writes.Add(1) == 1 {
		if len(b.Events) > 0 {
			s.first = b.Events[0].CommitLSN
		}
		close(s.entered)
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.inner.Write(ctx, b)
}

func (s *gateSink) Close() error { return s.inner.Close() }

// TestSnapshotSurvivesLossOfExportingConnection ends the replication connection that exported the
// snapshot while the readers are still reading (as a server's idle-in-transaction timeout could):
// the readers keep their imported snapshot, and streaming starts on a new connection afterwards.
func TestSnapshotSurvivesLossOfExportingConnection(t *testing.T) {
	db := newDB(t)
	createSnapshotTables(t, db, []string{"lost_export"}, 20000)
	// The sink holds the first rows until the connection is ended. With at most 1 MiB in flight
	// (of some 6 MB of rows) the readers stop in the middle of the table, inside the exported
	// snapshot, and the snapshot cannot finish, nor streaming start, before the gate opens.
	gate := newGateSink()
	r := startPipeline(t, db, runOpts{wrap: func(s sinks.Sink) sinks.Sink { gate.inner = s; return gate },
		pcfg: pipeline.Config{MaxBatchEvents: 256, MaxBatchBytes: 256 << 10, MaxInFlightBytes: 1 << 20,
			Snapshot: pipeline.SnapshotConfig{Mode: pipeline.SnapshotInitial, ChunkPages: 8}}})
	t.Cleanup(gate.open)
	select {
	case <-gate.entered:
	case err := <-r.done:
		r.ended, r.result = true, err
		t.Fatalf("the pipeline ended before the snapshot started: %v", err)
	case <-time.After(120 * time.Second):
		t.Fatal("the snapshot never started")
	}
	killed, err := cluster.Query("postgres", fmt.Sprintf(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE backend_type = 'walsender' AND datname = '%s'`, db))
	if err != nil || killed != "1" {
		t.Fatalf("terminated %q walsenders (%v), want the exporting one", killed, err)
	}
	if pr := r.p.SnapshotProgress(); pr.ChunksDone >= pr.Chunks {
		t.Fatalf("the readers had read all %d chunks before the connection was ended", pr.Chunks)
	}
	gate.open()
	exec1(t, db, `UPDATE lost_export SET v = 9 WHERE id % 7 = 0`)
	evs := markDone(t, db, r.path, r.ckpt, 180*time.Second)
	got, ops := materialize(t, evs)
	compareState(t, got, dbState(t, db, []string{"lost_export"}))
	if ops["r"] != 20000 {
		t.Fatalf("events by op %v, want 20000 snapshot reads", ops)
	}
}

// TestResnapshotSeesATransactionCommittingAtItsLowWatermark reads chunks between watermarks while
// a transaction T sits between its commit record and becoming visible: a synchronous standby that
// never answers holds it there, as any commit is held for an instant. The stream delivers T's
// updates before the next low watermark, so the chunk read after that watermark must see them; a
// read that does not wait for T delivers T's rows stale, after their updates. T is the newest
// transaction, which txid_current_snapshot()'s list of running transactions leaves out.
func TestResnapshotSeesATransactionCommittingAtItsLowWatermark(t *testing.T) {
	pg := pgtest.New(t, pgtest.Options{Settings: map[string]string{
		// Nothing but T may end a transaction while it waits: that would put T on the list.
		"autovacuum": "off", "synchronous_commit": "local"}})
	db := "app"
	if err := pg.CreateDB(db); err != nil {
		t.Fatal(err)
	}
	// Room on every page, so that T's new row versions stay on their pages (HOT) instead of going
	// to the table's end, where a later chunk would read them again and hide a stale one.
	pg.MustExec(t, db, `CREATE TABLE live (id int PRIMARY KEY, v int NOT NULL, pad text) WITH (fillfactor = 50);
INSERT INTO live SELECT i, 0, repeat(md5(i::text), 2) FROM generate_series(1, 30000) i;`)
	r := startPipeline(t, db, runOpts{pg: pg, tables: []string{"public.live"}, pcfg: pipeline.Config{
		Snapshot:  pipeline.SnapshotConfig{Mode: pipeline.SnapshotNever, ChunkPages: 8, Workers: 1, MaxRowsPerSecond: 2000},
		Heartbeat: pipeline.HeartbeatConfig{Interval: -1}}})
	r.waitStreaming()
	pg.MustExec(t, "postgres", "ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
	pg.MustExec(t, "postgres", "SELECT pg_reload_conf()")
	release := func() {
		_ = pg.Exec("postgres", "ALTER SYSTEM RESET synchronous_standby_names")
		_ = pg.Exec("postgres", "SELECT pg_reload_conf()")
	}
	t.Cleanup(release)
	pg.MustExec(t, db, `SELECT pg_logical_emit_message(true, 'pgstream.snapshot', '{"tables":["public.live"]}')`)
	waitUntil(t, 120*time.Second, "the re-snapshot's first rows", nil, func() bool {
		for _, e := range readWrittenEvents(t, r.path) {
			if e.Op == "r" {
				return true
			}
		}
		return false
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tconn, err := pg.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer tconn.Close(context.Background())
	tDone := make(chan error, 1)
	go func() {
		_, err := tconn.Exec(ctx, "SET synchronous_commit = on; UPDATE live SET v = v + 1 WHERE id % 10 = 0").ReadAll()
		tDone <- err
	}()
	tPID := tconn.PID()
	var waitStart string
	waitUntil(t, 120*time.Second, "T to wait for the synchronous standby after its commit record", nil, func() bool {
		v, err := pg.Query("postgres", fmt.Sprintf("SELECT state_change::text FROM pg_stat_activity WHERE pid = %d AND wait_event = 'SyncRep'", tPID))
		waitStart = v
		return err == nil && v != ""
	})
	// Release T once a chunk's low watermark has certainly been written after T's commit record:
	// the reader waits for T, or (one reader, one chunk after another) two more chunks are done.
	doneAtWait := r.p.SnapshotProgress().ChunksDone
	waitUntil(t, 180*time.Second, "a chunk read begun after T's commit record", nil, func() bool {
		if r.p.SnapshotProgress().ChunksDone >= doneAtWait+2 {
			return true
		}
		v, err := pg.Query("postgres", fmt.Sprintf(`SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'
AND application_name = 'pgstream' AND query LIKE '%%pg_locks%%' AND query_start > '%s'::timestamptz`, db, waitStart))
		return err == nil && v != "0"
	})
	release()
	if err := <-tDone; err != nil {
		t.Fatalf("T: %v", err)
	}
	evs := markDoneOn(t, pg, db, r.path, r.ckpt, 300*time.Second)
	got, ops := materialize(t, evs)
	compareState(t, got, dbStateOn(t, pg, db, []string{"live"}))
	t.Logf("events by op: %v; chunks done since T began to wait: %d", ops, r.p.SnapshotProgress().ChunksDone-doneAtWait)
}
