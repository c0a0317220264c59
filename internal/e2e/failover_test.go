package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	ckfile "github.com/pgstream/pgstream/checkpoint/file"
	"github.com/pgstream/pgstream/internal/pgcluster"
	"github.com/pgstream/pgstream/internal/pgtest"
)

// needFailoverSlots skips a test on a server without failover slots (before PostgreSQL 17).
func needFailoverSlots(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a primary and a standby")
	}
	if cluster.Version < 17 {
		t.Skipf("failover slots need PostgreSQL 17 or newer; these server binaries are PostgreSQL %d "+
			"(PGSTREAM_PG_BIN=$(bash scripts/postgres.sh 17) runs it)", cluster.Version)
	}
}

// failoverPair starts a primary and a hot standby of it that streams through the physical slot
// "standby"; syncSlots turns sync_replication_slots on there.
func failoverPair(t *testing.T, syncSlots bool) (*pgtest.Cluster, *pgcluster.Cluster) {
	t.Helper()
	primary := pgtest.New(t, pgtest.Options{})
	primary.MustExec(t, "postgres", "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL)")
	settings := map[string]string{}
	if syncSlots {
		settings["sync_replication_slots"] = "on"
	}
	standby, err := primary.StartStandby(pgcluster.StandbyOptions{Slot: "standby", Settings: settings})
	if err != nil {
		t.Fatalf("start standby: %v", err)
	}
	t.Cleanup(standby.Close)
	return primary, standby
}

// failoverURL is a source.url naming the primary first, then the standby.
func failoverURL(primary, standby int) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d,127.0.0.1:%d/postgres?sslmode=disable&target_session_attrs=read-write",
		pgtest.User, pgtest.Password, primary, standby)
}

// writeFailoverConfig writes a config streaming the database postgres of url through slot with
// failover on, into dir.
func writeFailoverConfig(t *testing.T, dir, url, slot string) string {
	t.Helper()
	return binaryConfig{url: url, slot: slot, source: "  failover: true\n  status_interval: 200ms\n  connect_timeout: 5s\n",
		pipeline: "  checkpoint_interval: 50ms\n  reconnect_min: 100ms\n  reconnect_max: 1s\n", jsonFormat: true}.write(t, dir)
}

// standbySlot reads the standby's copy of slot: whether it exists, is synced and is temporary.
func standbySlot(t *testing.T, standby *pgcluster.Cluster, slot string) (exists, synced, temporary bool) {
	t.Helper()
	rows, err := standby.QueryRows("postgres", fmt.Sprintf("SELECT synced::text, temporary::text FROM pg_replication_slots WHERE slot_name = '%s'", slot))
	if err != nil {
		t.Fatalf("read the standby's slots: %v", err)
	}
	if len(rows) == 0 {
		return false, false, false
	}
	return true, rows[0][0] == "true", rows[0][1] == "true"
}

// every returns cond evaluated at most once per interval, false in between: for a condition that
// reads a large file.
func every(interval time.Duration, cond func() bool) func() bool {
	var last time.Time
	return func() bool {
		if time.Since(last) < interval {
			return false
		}
		last = time.Now()
		return cond()
	}
}

// itemVersion is a row of items as a change event shows it.
func itemVersion(t *testing.T, e event) (id, v int) {
	t.Helper()
	a := e.row("after")
	id, err1 := strconv.Atoi(num(a["id"]))
	v, err2 := strconv.Atoi(num(a["v"]))
	if err1 != nil || err2 != nil {
		t.Fatalf("event without id and v: %s", e.Raw)
	}
	return id, v
}

// TestFailoverResumesOnPromotedStandby streams a write workload from a primary whose
// synchronized_standby_slots names its standby's slot, through a multi-host source.url with
// source.failover on, into a file sink; kills the primary once the standby's copy of pgstream's
// slot is synced and persistent, and promotes the standby. pgstream must carry on against the new
// primary by itself, and afterwards the sink must hold each change exactly once by id, with no
// version of a row missing: every row's versions in commit order, ending at the new primary's.
func TestFailoverResumesOnPromotedStandby(t *testing.T) {
	needFailoverSlots(t)
	primary, standby := failoverPair(t, true)
	// Set after the standby was copied, so that the promoted standby does not wait for a standby
	// of its own.
	primary.MustExec(t, "postgres", "ALTER SYSTEM SET synchronized_standby_slots = 'standby'")
	primary.MustExec(t, "postgres", "SELECT pg_reload_conf()")

	const slot = "failover"
	dir := t.TempDir()
	out, ckpt := filepath.Join(dir, "changes.jsonl"), filepath.Join(dir, "checkpoint.json")
	cfgPath := writeFailoverConfig(t, dir, failoverURL(primary.Port, standby.Port), slot)
	p := startBinary(t, "run", "--config", cfgPath)
	waitStreamingOn(t, primary, slot, p)

	// The workload: each transaction inserts new rows or bumps v of existing ones (v = v + 1 on the
	// server, so a row's versions are 0, 1, 2, … on whatever server it lives). It runs until the
	// primary goes away.
	next := 1
	wl := sqlWorkload(t, primary, "postgres", 3*time.Millisecond, func(int) (string, func()) {
		var sql strings.Builder
		sql.WriteString("BEGIN;")
		for i, n := 0, 1+rand.IntN(5); i < n; i++ {
			if next < 20 || rand.IntN(2) == 0 {
				fmt.Fprintf(&sql, "INSERT INTO items VALUES (%d, 0);", next)
				next++
			} else {
				fmt.Fprintf(&sql, "UPDATE items SET v = v + 1 WHERE id = %d;", 1+rand.IntN(next-1))
			}
		}
		sql.WriteString("COMMIT;")
		return sql.String(), nil
	})

	// The standby's copy of the slot must be usable before the primary goes: synced, persistent.
	began := time.Now()
	waitUntil(t, 300*time.Second, "the standby's copy of the slot is synced and persistent", p.exited, func() bool {
		exists, synced, temporary := standbySlot(t, standby, slot)
		return exists && synced && !temporary
	})
	waitUntil(t, 300*time.Second, "changes are delivered", p.exited, every(time.Second, func() bool {
		return len(readWrittenEvents(t, out)) >= 200
	}))
	text, code := runBinary(t, 60*time.Second, "check", "--config", cfgPath)
	for _, want := range []string{"synchronized_standby_slots = standby", "slot failover is a failover slot",
		"its copy of slot failover is synced and persistent"} {
		if !strings.Contains(text, want) {
			t.Fatalf("check (exit %d) does not say %q:\n%s", code, want, text)
		}
	}
	// (Its exit code is 1: the slot is active, as pgstream streams from it.)
	if strings.Contains(text, "WARN") || strings.Contains(text, ":"+pgtest.Password+"@") {
		t.Fatalf("check (exit %d) of a ready pair warns:\n%s", code, text)
	}

	// Kill the primary mid-workload and promote the standby.
	before := readWrittenEvents(t, out)
	if err := primary.Stop("immediate"); err != nil {
		t.Fatal(err)
	}
	if err := wl.Stop(); err == nil {
		t.Log("the workload stopped before the primary went away")
	}
	if msg, ok := p.exited(); ok {
		t.Fatalf("pgstream stopped when the primary went away: %s", msg)
	}
	if err := standby.Promote(); err != nil {
		t.Fatal(err)
	}
	t.Logf("primary killed %s after the workload began, after %d transactions, %d events delivered; standby promoted",
		time.Since(began).Round(time.Millisecond), wl.Committed(), len(before))
	promoted := time.Now()

	// More writes on the new primary: every row once more, and new rows.
	if err := standby.Exec("postgres", "UPDATE items SET v = v + 1; INSERT INTO items SELECT g, 0 FROM generate_series(1000001, 1000100) g"); err != nil {
		t.Fatal(err)
	}
	rows, err := standby.QueryRows("postgres", "SELECT id, v FROM items")
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]int{}
	for _, r := range rows {
		id, _ := strconv.Atoi(r[0])
		v, _ := strconv.Atoi(r[1])
		want[id] = v
	}

	// latest dedupes the sink's events by id (a repeat must be the same change) and returns each
	// row's versions in commit order.
	versions := func(evs []event) map[int][]int {
		seen := map[string]event{}
		got := map[int][]int{}
		for _, e := range evs {
			if e.Op != "c" && e.Op != "u" {
				t.Fatalf("unexpected event %s", e.Raw)
			}
			if first, ok := seen[e.ID]; ok {
				if first.Op != e.Op || string(first.After) != string(e.After) {
					t.Fatalf("two changes under id %s:\n%s\n%s", e.ID, first.Raw, e.Raw)
				}
				continue
			}
			seen[e.ID] = e
			id, v := itemVersion(t, e)
			got[id] = append(got[id], v)
		}
		return got
	}
	caughtUp := func(evs []event) bool {
		got := versions(evs)
		for id, v := range want {
			if vs := got[id]; len(vs) == 0 || vs[len(vs)-1] != v {
				return false
			}
		}
		return true
	}
	waitUntil(t, 300*time.Second, "the sink holds the new primary's rows", p.exited, every(time.Second, func() bool {
		return caughtUp(readWrittenEvents(t, out))
	}))
	t.Logf("the sink holds the new primary's rows %s after the promotion", time.Since(promoted).Round(time.Millisecond))
	stopBinary(t, p)
	logged := false
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(l, "a standby was promoted") || strings.Contains(l, "resuming replication") {
			t.Log(l)
			logged = logged || strings.Contains(l, "a standby was promoted")
		}
	}
	if !logged {
		t.Errorf("pgstream did not log the promotion:\n%s", p.stderr)
	}
	if strings.Contains(p.stderr.String(), ":"+pgtest.Password+"@") {
		t.Errorf("the password appears in pgstream's output:\n%s", p.stderr)
	}

	got := versions(readEvents(t, out))
	ids := make([]int, 0, len(got))
	for id := range got {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		vs := got[id]
		wv, ok := want[id]
		if !ok {
			t.Fatalf("row %d is in the sink (versions %v) but not on the new primary", id, vs)
		}
		for i, v := range vs {
			if v != i {
				t.Fatalf("row %d: versions in the sink %v, want 0…%d each once", id, vs, wv)
			}
		}
		if vs[len(vs)-1] != wv {
			t.Fatalf("row %d: newest version in the sink %d, on the new primary %d", id, vs[len(vs)-1], wv)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("the sink has %d rows, the new primary %d", len(got), len(want))
	}
	// What was delivered before the failover is all there, and the new primary has every change of it.
	final := map[string]bool{}
	for _, e := range readEvents(t, out) {
		final[e.ID] = true
	}
	for _, e := range before {
		id, v := itemVersion(t, e)
		if !final[e.ID] || want[id] < v {
			t.Fatalf("delivered before the failover but lost: %s (new primary has v %d)", e.Raw, want[id])
		}
	}

	// The checkpoint moved to the new timeline: a new run resumes there.
	cp, found, err := ckfile.New(ckpt, ckfile.OSFS()).Load()
	if err != nil || !found || cp.Timeline != 2 {
		t.Fatalf("checkpoint after the failover = %+v, %v, %v; want timeline 2", cp, found, err)
	}
	text, code = runBinary(t, 60*time.Second, "check", "--config", cfgPath)
	if code != 0 || !strings.Contains(text, "resumes from") {
		t.Fatalf("check against the new primary (exit %d):\n%s", code, text)
	}
	t.Logf("%d rows, %d events before the failover", len(want), len(before))
}

// TestFailoverToAStandbyBehindIsRefused: without synchronized_standby_slots pgstream may deliver
// changes that a standby does not have. Promoted after such changes, the standby's timeline forks
// before what pgstream delivered: pgstream must stop, saying that the database went back in time,
// rather than resume there and skip the new primary's own changes at those positions.
func TestFailoverToAStandbyBehindIsRefused(t *testing.T) {
	needFailoverSlots(t)
	primary, standby := failoverPair(t, true)
	const slot = "behind"
	dir := t.TempDir()
	out, ckpt := filepath.Join(dir, "changes.jsonl"), filepath.Join(dir, "checkpoint.json")
	cfgPath := writeFailoverConfig(t, dir, failoverURL(primary.Port, standby.Port), slot)
	p := startBinary(t, "run", "--config", cfgPath)
	waitStreamingOn(t, primary, slot, p)

	// The standby's copy becomes persistent once the primary's slot moves: write while waiting.
	next := 0
	waitUntil(t, 300*time.Second, "the standby's copy of the slot is synced and persistent", p.exited, func() bool {
		next++
		primary.MustExec(t, "postgres", fmt.Sprintf("INSERT INTO items VALUES (%d, 0)", next))
		exists, synced, temporary := standbySlot(t, standby, slot)
		return exists && synced && !temporary
	})
	// The standby stops receiving; pgstream delivers more, which only the primary has.
	if err := standby.Stop("fast"); err != nil {
		t.Fatal(err)
	}
	primary.MustExec(t, "postgres", "INSERT INTO items SELECT g, 0 FROM generate_series(1000001, 1000100) g")
	waitUntil(t, 120*time.Second, "pgstream delivers the rows the standby does not have", p.exited, every(200*time.Millisecond, func() bool {
		for _, e := range readWrittenEvents(t, out) {
			if id, _ := itemVersion(t, e); id == 1000100 {
				return true
			}
		}
		return false
	}))
	_, delivered := readCheckpoint(t, ckpt)
	if err := primary.Stop("immediate"); err != nil {
		t.Fatal(err)
	}
	if err := standby.Start(); err != nil {
		t.Fatal(err)
	}
	if err := standby.Promote(); err != nil {
		t.Fatal(err)
	}
	if err := standby.Exec("postgres", "INSERT INTO items SELECT g, 1 FROM generate_series(2000001, 2000100) g"); err != nil {
		t.Fatal(err)
	}

	select {
	case err := <-p.done:
		text := p.stderr.String()
		// Its WAL ends before the checkpoint, or (once written past it) forked before it.
		if err == nil || !strings.Contains(text, "went back in time") || !strings.Contains(text, "timeline 2") {
			t.Fatalf("pgstream (%v) did not refuse the promoted standby that lacks what it delivered up to %s:\n%s", err, delivered, text)
		}
	case <-time.After(300 * time.Second):
		t.Fatalf("pgstream still runs 300s after the promotion of a standby behind it:\n%s", p.stderr)
	}
	for _, e := range readEvents(t, out) {
		if id, _ := itemVersion(t, e); id > 2000000 {
			t.Fatalf("a change of the new primary was delivered past the gap: %s", e.Raw)
		}
	}
	if cp, found, err := ckfile.New(ckpt, ckfile.OSFS()).Load(); err != nil || !found || cp.Timeline != 1 {
		t.Fatalf("checkpoint after the refusal = %+v, %v, %v; want it still on timeline 1", cp, found, err)
	}
	text, code := runBinary(t, 60*time.Second, "check", "--config", cfgPath)
	if code == 0 || !strings.Contains(text, "went back in time") {
		t.Fatalf("check (exit %d) does not refuse the promoted standby:\n%s", code, text)
	}
}

// TestFailoverCheckReportsStandbyNotReady: pgstream check, with source.failover on, names what a
// failover still lacks (a slot that is no failover slot, an empty synchronized_standby_slots, a
// standby without sync_replication_slots and without a copy of the slot) as warnings, says so
// when no standby can be inspected, and a run makes the existing slot a failover slot.
func TestFailoverCheckReportsStandbyNotReady(t *testing.T) {
	needFailoverSlots(t)
	primary, standby := failoverPair(t, false)
	const slot = "notready"
	primary.MustExec(t, "postgres", "SELECT pg_create_logical_replication_slot('"+slot+"', 'pgoutput')")
	dir := t.TempDir()
	cfgPath := writeFailoverConfig(t, dir, failoverURL(primary.Port, standby.Port), slot)

	text, code := runBinary(t, 60*time.Second, "check", "--config", cfgPath)
	for _, want := range []string{
		"WARN  failover: primary 127.0.0.1:" + strconv.Itoa(primary.Port),
		"slot notready is not a failover slot",
		"synchronized_standby_slots is empty",
		"ALTER SYSTEM SET synchronized_standby_slots = 'standby'",
		"WARN  failover: standby 127.0.0.1:" + strconv.Itoa(standby.Port),
		"sync_replication_slots is off",
		"NOT READY FOR FAILOVER: the standby has no copy of slot notready",
	} {
		if !strings.Contains(text, want) {
			t.Fatalf("check (exit %d) does not say %q:\n%s", code, want, text)
		}
	}
	if code != 0 || strings.Contains(text, ":"+pgtest.Password+"@") {
		t.Fatalf("check (exit %d): warnings only, and no password, expected:\n%s", code, text)
	}

	// One host: nothing tells which standby could be promoted.
	single := writeFailoverConfig(t, t.TempDir(), primary.URL("postgres"), slot)
	text, _ = runBinary(t, 60*time.Second, "check", "--config", single)
	if !strings.Contains(text, "no standby can be inspected: source.url names no other server") {
		t.Fatalf("check with one host does not say that no standby can be inspected:\n%s", text)
	}

	// A run makes the slot a failover slot.
	p := startBinary(t, "run", "--config", cfgPath)
	waitStreamingOn(t, primary, slot, p)
	stopBinary(t, p)
	if f, err := primary.Query("postgres", "SELECT failover::text FROM pg_replication_slots WHERE slot_name = '"+slot+"'"); err != nil || f != "true" {
		t.Fatalf("failover of the slot after a run = %q, %v", f, err)
	}
	text, _ = runBinary(t, 60*time.Second, "check", "--config", cfgPath)
	if !strings.Contains(text, "ok    failover: primary 127.0.0.1:"+strconv.Itoa(primary.Port)+": slot notready is a failover slot") {
		t.Fatalf("check after a run does not say the slot is a failover slot:\n%s", text)
	}
}

// TestFailoverRefusedBeforePostgres17: source.failover on a server without failover slots is
// refused at start-up, by run and check alike, naming the server's version and the minimum.
func TestFailoverRefusedBeforePostgres17(t *testing.T) {
	if cluster.Version >= 17 {
		t.Skipf("PostgreSQL %d has failover slots", cluster.Version)
	}
	db := newDB(t)
	dir := t.TempDir()
	slot := "s_" + db
	cfgPath := writeConfig(t, dir, db, slot, "")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(data), "  status_interval:", "  failover: true\n  status_interval:", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	version := fmt.Sprintf("PostgreSQL %d.", cluster.Version)
	for _, cmd := range []string{"run", "check"} {
		text, code := runBinary(t, 60*time.Second, cmd, "--config", cfgPath)
		if code == 0 || !strings.Contains(text, "source.failover needs PostgreSQL 17 or newer") || !strings.Contains(text, version) ||
			!strings.Contains(text, "at least 170000") {
			t.Fatalf("%s (exit %d) does not refuse source.failover on PostgreSQL %d clearly:\n%s", cmd, code, cluster.Version, text)
		}
	}
	if n, err := cluster.Query("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '"+slot+"'"); err != nil || n != "0" {
		t.Fatalf("a refused run created the slot: count %q, %v", n, err)
	}
}
