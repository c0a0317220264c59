package inspect

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/replication"
)

// The preflight tests: each sets up what a run would refuse to start on and checks that Preflight
// reports it, beside the refusal of replication's own command.

func TestWALLevelReplica(t *testing.T) {
	pg := cluster(t, "replica", pgtest.Options{WalLevel: "replica"})
	ctx := ctxT(t, 30*time.Second)
	c := connect(t, testConfig(pg, "s_replica", "pub_replica"))
	probs := Preflight(ctx, c)
	found := false
	for _, p := range probs {
		if p.Check == "wal_level" && strings.Contains(p.Fix, "ALTER SYSTEM SET wal_level = logical") && strings.Contains(p.Fix, "restart PostgreSQL") {
			found = true
		}
	}
	if !found {
		t.Fatalf("preflight = %+v; want a wal_level problem", probs)
	}
	_, err := c.EnsureSlot(ctx)
	wantKind(t, err, replication.ErrWALLevel, "set wal_level = logical (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "55000" {
		t.Fatalf("cause %v is not SQLSTATE 55000", err)
	}
	if replication.IsRetryable(err) {
		t.Fatal("wal_level error reported retryable")
	}
}

func TestSlotOtherPlugin(t *testing.T) {
	pg := mainCluster(t)
	slot := slotName(t)
	dropSlotLater(t, pg, slot)
	pg.MustExec(t, "postgres", "SELECT pg_create_logical_replication_slot('"+slot+"', 'test_decoding')")
	c := connect(t, testConfig(pg, slot, "pub_all"))
	_, err := c.EnsureSlot(ctxT(t, 60*time.Second))
	wantKind(t, err, replication.ErrSlotMismatch, "test_decoding", "pgoutput", "pg_drop_replication_slot('"+slot+"')", "another source.slot")
	if replication.IsRetryable(err) {
		t.Fatal("retryable")
	}
	if probs := Preflight(ctxT(t, 60*time.Second), c); len(probs) != 1 || probs[0].Check != "slot" {
		t.Fatalf("preflight = %+v", probs)
	}
}

func TestSlotActiveElsewhere(t *testing.T) {
	pg := mainCluster(t)
	ctx := ctxT(t, 30*time.Second)
	slot := slotName(t)
	dropSlotLater(t, pg, slot)
	first := connect(t, testConfig(pg, slot, "pub_all"))
	if err := first.EnsurePublication(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := first.EnsureSlot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := first.StartReplication(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	second := connect(t, testConfig(pg, slot, "pub_all"))
	probs := Preflight(ctx, second)
	if len(probs) != 1 || !strings.Contains(probs[0].Message, fmt.Sprintf("PID %d", first.PgConn().PID())) {
		t.Fatalf("preflight = %+v", probs)
	}
	err := second.StartReplication(ctx, 0, 1)
	want := fmt.Sprintf("slot %s is active for PID %d", slot, first.PgConn().PID())
	wantKind(t, err, replication.ErrSlotActive, want, "stop the other consumer or choose another source.slot")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "55006" {
		t.Fatalf("cause %v is not SQLSTATE 55006", err)
	}
	// The refused connection is still usable.
	if _, err := second.IdentifySystem(ctx); err != nil {
		t.Fatalf("after refusal: %v", err)
	}
}

func TestNoFreeSlot(t *testing.T) {
	pg := mainCluster(t)
	ctx := ctxT(t, 30*time.Second)
	max, _ := pg.Query("postgres", "SHOW max_replication_slots")
	used, _ := pg.Query("postgres", "SELECT count(*) FROM pg_replication_slots")
	m, _ := strconv.Atoi(max)
	u, _ := strconv.Atoi(used)
	for i := u; i < m; i++ {
		name := fmt.Sprintf("filler_%d", i)
		pg.MustExec(t, "postgres", "SELECT pg_create_physical_replication_slot('"+name+"')")
		t.Cleanup(func() { _ = pg.Exec("postgres", "SELECT pg_drop_replication_slot('"+name+"')") })
	}
	c := connect(t, testConfig(pg, slotName(t), "pub_all"))
	probs := Preflight(ctx, c)
	if len(probs) != 1 || probs[0].Check != "max_replication_slots" {
		t.Fatalf("preflight = %+v", probs)
	}
	_, err := c.EnsureSlot(ctx)
	wantKind(t, err, replication.ErrNoFreeSlot, "max_replication_slots")
}

// TestSlotLost makes the server invalidate a slot (max_slot_wal_keep_size exceeded) and checks that
// EnsureSlot, Preflight and START_REPLICATION all refuse it with the re-snapshot fix.
func TestSlotLost(t *testing.T) {
	pg := mainCluster(t)
	ctx := ctxT(t, 60*time.Second)
	slot := slotName(t)
	dropSlotLater(t, pg, slot)
	pg.MustExec(t, "postgres", `CREATE TABLE lost_t (id int)`)
	c := connect(t, testConfig(pg, slot, "pub_all"))
	if _, err := c.EnsureSlot(ctx); err != nil {
		t.Fatal(err)
	}
	pg.MustExec(t, "postgres", "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
	pg.MustExec(t, "postgres", "SELECT pg_reload_conf()")
	t.Cleanup(func() {
		_ = pg.Exec("postgres", "ALTER SYSTEM RESET max_slot_wal_keep_size")
		_ = pg.Exec("postgres", "SELECT pg_reload_conf()")
	})
	status := ""
	for i := 0; i < 20 && status != "lost"; i++ {
		pg.MustExec(t, "postgres", "INSERT INTO lost_t SELECT generate_series(1, 1000)")
		pg.MustExec(t, "postgres", "SELECT pg_switch_wal()")
		pg.MustExec(t, "postgres", "CHECKPOINT")
		status, _ = pg.Query("postgres", "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '"+slot+"'")
	}
	if status != "lost" {
		t.Fatalf("slot wal_status = %q; the server did not invalidate it", status)
	}
	si, err := c.SlotInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The columns of each version: conflicting from 16 on (16 sets it for removed WAL too; 17
	// only for a conflict with recovery), invalidation_reason from 17 on.
	if (pg.Version >= 16) != (si.Conflicting != nil) || pg.Version >= 17 && *si.Conflicting ||
		(pg.Version >= 17) != (si.InvalidationReason == "wal_removed") || si.Invalidated() != "wal_removed" {
		t.Fatalf("PostgreSQL %d: lost slot = %+v (conflicting %v)", pg.Version, si, si.Conflicting)
	}
	_, err = c.EnsureSlot(ctx)
	wantKind(t, err, replication.ErrSlotLost, "(invalidated: wal_removed)", "max_slot_wal_keep_size", "are gone", "re-snapshot", "pg_drop_replication_slot('"+slot+"')")
	if probs := Preflight(ctx, c); len(probs) != 1 || probs[0].Check != "slot" || !strings.Contains(probs[0].Message, "wal_removed") {
		t.Fatalf("preflight = %+v", probs)
	}
	err = c.StartReplication(ctx, 0, 1)
	wantKind(t, err, replication.ErrSlotLost, "re-snapshot", "wal_removed")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || replication.IsRetryable(err) {
		t.Fatalf("START_REPLICATION on a lost slot: %v", err)
	}
	t.Logf("server said: %s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
}

// TestSlotIdleTimeout lets PostgreSQL 18 invalidate an inactive slot for idle_replication_slot_timeout:
// SlotInfo reads invalidation_reason and inactive_since, and EnsureSlot, Preflight and
// START_REPLICATION refuse the slot naming idle_timeout and the setting to change.
func TestSlotIdleTimeout(t *testing.T) {
	if v := mainCluster(t).Version; v < 18 {
		t.Skipf("PostgreSQL %d has no idle_replication_slot_timeout (18 and later)", v)
	}
	// A cluster of its own: the timeout invalidates every idle slot of the cluster.
	pg := cluster(t, "idle", pgtest.Options{})
	ctx := ctxT(t, 120*time.Second)
	slot := slotName(t)
	dropSlotLater(t, pg, slot)
	c := connect(t, testConfig(pg, slot, "pub_all"))
	if _, err := c.EnsureSlot(ctx); err != nil {
		t.Fatal(err)
	}
	si, err := c.SlotInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if si.Active || si.InactiveSince.IsZero() || si.Invalidated() != "" || si.Conflicting == nil {
		t.Fatalf("a new slot, never streamed from: %+v", si)
	}
	pg.MustExec(t, "postgres", "ALTER SYSTEM SET idle_replication_slot_timeout = '1s'")
	pg.MustExec(t, "postgres", "SELECT pg_reload_conf()")
	t.Cleanup(func() {
		_ = pg.Exec("postgres", "ALTER SYSTEM RESET idle_replication_slot_timeout")
		_ = pg.Exec("postgres", "SELECT pg_reload_conf()")
	})
	// The checkpointer invalidates a slot idle for longer than the timeout, as the server's clock
	// and its reloaded setting see it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		idle, err := pg.Query("postgres", "SELECT (current_setting('idle_replication_slot_timeout') = '1s' AND clock_timestamp() - inactive_since > '2s')::text "+
			"FROM pg_replication_slots WHERE slot_name = '"+slot+"'")
		if err != nil {
			t.Fatal(err)
		}
		if idle == "true" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot was not idle for 2s with the timeout in effect within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	pg.MustExec(t, "postgres", "CHECKPOINT")
	si, err = c.SlotInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if si.InvalidationReason != "idle_timeout" || si.WALStatus != "lost" || si.Invalidated() != "idle_timeout" {
		t.Fatalf("slot after the checkpoint: %+v", si)
	}
	_, err = c.EnsureSlot(ctx)
	wantKind(t, err, replication.ErrSlotLost, "(invalidated: idle_timeout)", "raise idle_replication_slot_timeout", "pg_drop_replication_slot('"+slot+"')")
	if probs := Preflight(ctx, c); len(probs) != 1 || probs[0].Check != "slot" || !strings.Contains(probs[0].Message, "idle_timeout") {
		t.Fatalf("preflight = %+v", probs)
	}
	err = c.StartReplication(ctx, 0, 1)
	wantKind(t, err, replication.ErrSlotLost, "idle_timeout", "re-snapshot")
}

func TestEnsurePublication(t *testing.T) {
	pg := mainCluster(t)
	pg.MustExec(t, "postgres", `CREATE TABLE pub_a (id int primary key); CREATE SCHEMA s2; CREATE TABLE s2."Mixed" (id int primary key)`)
	ctx := ctxT(t, 30*time.Second)

	all := connect(t, testConfig(pg, "unused", "pub_all"))
	if err := all.EnsurePublication(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := pg.Query("postgres", "SELECT puballtables FROM pg_publication WHERE pubname = 'pub_all'"); got != "t" {
		t.Fatalf("pub_all puballtables = %q", got)
	}
	if err := all.EnsurePublication(ctx); err != nil { // exists: nothing to do
		t.Fatal(err)
	}

	cfg := testConfig(pg, "unused", "pub_list")
	cfg.Tables = []string{"pub_a"}
	list := connect(t, cfg)
	if err := list.EnsurePublication(ctx); err != nil {
		t.Fatal(err)
	}
	// A table added to the configuration is added to the publication.
	cfg.Tables = []string{"pub_a", `s2.Mixed`}
	list2 := connect(t, cfg)
	if probs := Preflight(ctx, list2); len(probs) != 0 {
		t.Fatalf("preflight: %+v", probs)
	}
	if err := list2.EnsurePublication(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := pg.QueryRows("postgres", "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = 'pub_list' ORDER BY 1")
	if err != nil || len(rows) != 2 || rows[0][0] != "public.pub_a" || rows[1][0] != "s2.Mixed" {
		t.Fatalf("pub_list tables = %v, %v", rows, err)
	}
	if got, _ := pg.Query("postgres", "SELECT puballtables FROM pg_publication WHERE pubname = 'pub_list'"); got != "f" {
		t.Fatalf("pub_list puballtables = %q", got)
	}
}

func TestPublicationAndTableErrors(t *testing.T) {
	pg := mainCluster(t)
	pg.MustExec(t, "postgres", `CREATE TABLE pe_a (id int primary key)`)
	ctx := ctxT(t, 30*time.Second)

	cfg := testConfig(pg, "unused", "pub_never")
	cfg.CreatePublication = boolp(false)
	cfg.Tables = []string{"pe_a"}
	c := connect(t, cfg)
	err := c.EnsurePublication(ctx)
	wantKind(t, err, replication.ErrPublication, `CREATE PUBLICATION "pub_never" FOR TABLE "public"."pe_a"`)
	if replication.IsRetryable(err) {
		t.Fatal("missing publication reported retryable")
	}
	probs := Preflight(ctx, c)
	if len(probs) != 1 || probs[0].Check != "publication" || !strings.Contains(probs[0].Fix, "CREATE PUBLICATION") {
		t.Fatalf("preflight = %+v", probs)
	}

	// An existing publication lacking a configured table, with creation off: the ALTER statement.
	pg.MustExec(t, "postgres", `CREATE TABLE pe_b (id int primary key); CREATE PUBLICATION pub_partial FOR TABLE pe_a`)
	cfg = testConfig(pg, "unused", "pub_partial")
	cfg.CreatePublication = boolp(false)
	cfg.Tables = []string{"pe_a", "public.pe_b"}
	err = connect(t, cfg).EnsurePublication(ctx)
	wantKind(t, err, replication.ErrPublication, `ALTER PUBLICATION "pub_partial" ADD TABLE "public"."pe_b"`)

	// Missing tables are named, every one of them, and preflight reports every problem at once.
	cfg = testConfig(pg, "unused", "pub_missing_tables")
	cfg.CreatePublication = boolp(false)
	cfg.CreateSlot = boolp(false)
	cfg.Tables = []string{"pe_a", "nosuch_one", "nosuch.two"}
	c = connect(t, cfg)
	wantKind(t, c.EnsurePublication(ctx), replication.ErrTableMissing, "nosuch_one", "nosuch.two")
	probs = Preflight(ctx, c)
	checks := map[string]int{}
	for _, p := range probs {
		checks[p.Check]++
	}
	if checks["table"] != 2 || checks["publication"] != 1 || checks["slot"] != 1 {
		t.Fatalf("preflight = %+v", probs)
	}
}

func TestEnsureSlot(t *testing.T) {
	pg := mainCluster(t)
	ctx := ctxT(t, 30*time.Second)
	slot := slotName(t)
	dropSlotLater(t, pg, slot)

	cfg := testConfig(pg, slot, "pub_all")
	cfg.CreateSlot = boolp(false)
	c := connect(t, cfg)
	si, err := c.SlotInfo(ctx)
	if err != nil || si.Exists {
		t.Fatalf("SlotInfo before creation = %+v, %v", si, err)
	}
	_, err = c.EnsureSlot(ctx)
	wantKind(t, err, replication.ErrSlotMissing, "pg_create_logical_replication_slot('"+slot+"', 'pgoutput')", "source.create_slot")

	c = connect(t, testConfig(pg, slot, "pub_all"))
	si, err = c.EnsureSlot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	confirmed, _ := pg.Query("postgres", "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '"+slot+"'")
	if !si.Created || !si.Exists || si.Plugin != "pgoutput" || si.Database != "postgres" || si.ConfirmedFlush.String() != confirmed ||
		si.RestartLSN == 0 || si.WALStatus != "reserved" || si.Active {
		t.Fatalf("created slot = %+v; confirmed_flush_lsn %s", si, confirmed)
	}
	si2, err := c.EnsureSlot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if si2.Created || !si2.Exists || si2.ConfirmedFlush != si.ConfirmedFlush {
		t.Fatalf("reused slot = %+v", si2)
	}
	if probs := Preflight(ctx, c); len(probs) != 0 {
		t.Fatalf("preflight = %+v", probs)
	}
}

// TestEnsureSlotFailover: with source.failover, a created slot is a failover slot and an existing
// one is made one (PostgreSQL 17+); on an older server both are refused, as is the preflight,
// naming the version and the minimum.
func TestEnsureSlotFailover(t *testing.T) {
	pg := mainCluster(t)
	ctx := ctxT(t, 60*time.Second)
	created, existing := slotName(t)+"_c", slotName(t)+"_e"
	dropSlotLater(t, pg, created)
	dropSlotLater(t, pg, existing)
	pg.MustExec(t, "postgres", "SELECT pg_create_logical_replication_slot('"+existing+"', 'pgoutput')")

	cfg := testConfig(pg, created, "pub_all")
	cfg.Failover = true
	c := connect(t, cfg)
	cfgE := testConfig(pg, existing, "pub_all")
	cfgE.Failover = true
	e := connect(t, cfgE)
	if pg.Version < 17 {
		_, err := c.EnsureSlot(ctx)
		wantKind(t, err, replication.ErrFailoverUnsupported, fmt.Sprintf("the server runs PostgreSQL %d.", pg.Version), "at least 170000", "source.failover: false")
		_, err = e.EnsureSlot(ctx)
		wantKind(t, err, replication.ErrFailoverUnsupported)
		probs := Preflight(ctx, c)
		if len(probs) != 1 || probs[0].Check != "failover" || !strings.Contains(probs[0].Message, "needs PostgreSQL 17 or newer") {
			t.Fatalf("preflight = %+v; want the failover problem only", probs)
		}
		if n, _ := pg.Query("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '"+created+"'"); n != "0" {
			t.Fatal("a refused EnsureSlot created the slot")
		}
		return
	}
	failover := func(slot string) string {
		v, err := pg.Query("postgres", "SELECT failover::text FROM pg_replication_slots WHERE slot_name = '"+slot+"'")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	si, err := c.EnsureSlot(ctx)
	if err != nil || !si.Created || !si.Failover || failover(created) != "true" {
		t.Fatalf("created slot = %+v, %v; failover column %q", si, err, failover(created))
	}
	if si, _, err = c.EnsureSlotExport(ctx); err != nil || si.Created || !si.Failover {
		t.Fatalf("EnsureSlotExport of the failover slot = %+v, %v", si, err)
	}
	before, err := e.SlotInfo(ctx)
	if err != nil || before.Failover {
		t.Fatalf("slot created without failover = %+v, %v", before, err)
	}
	si, err = e.EnsureSlot(ctx)
	if err != nil || si.Created || !si.Failover || failover(existing) != "true" || si.ConfirmedFlush != before.ConfirmedFlush {
		t.Fatalf("existing slot after EnsureSlot = %+v, %v; failover column %q", si, err, failover(existing))
	}
	if probs := Preflight(ctx, c); len(probs) != 0 {
		t.Fatalf("preflight = %+v", probs)
	}
	// Without source.failover nothing changes a slot's failover.
	plain := connect(t, testConfig(pg, existing, "pub_all"))
	if si, err := plain.EnsureFailover(ctx, si); err != nil || !si.Failover {
		t.Fatalf("EnsureFailover without source.failover = %+v, %v", si, err)
	}
}
