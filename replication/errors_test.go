package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/internal/pgtest"
)

func TestWALLevelReplica(t *testing.T) {
	pg := cluster(t, "replica", pgtest.Options{WalLevel: "replica"})
	ctx := ctxT(t, 30*time.Second)
	c := connect(t, testConfig(pg, "s_replica", "pub_replica"))
	probs := c.Preflight(ctx)
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
	wantKind(t, err, ErrWALLevel, "set wal_level = logical (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "55000" {
		t.Fatalf("cause %v is not SQLSTATE 55000", err)
	}
	if IsRetryable(err) {
		t.Fatal("wal_level error reported retryable")
	}
}

func TestRoleWithoutReplication(t *testing.T) {
	pg := mainCluster(t)
	pg.MustExec(t, "postgres", `CREATE ROLE norepl LOGIN PASSWORD 'norepl-pw'`)
	_, err := Connect(ctxT(t, 60*time.Second), Config{URL: pg.URLAs("norepl", "norepl-pw", "postgres")})
	e := wantKind(t, err, ErrReplicationRole, `ALTER ROLE "norepl" WITH REPLICATION`)
	if e.Check != "role" || IsRetryable(err) {
		t.Fatalf("error %+v", e)
	}
}

func TestWrongPassword(t *testing.T) {
	pg := mainCluster(t)
	secret := "not-the-password-123"
	_, err := Connect(ctxT(t, 60*time.Second), Config{URL: pg.URLAs("postgres", secret, "postgres")})
	wantKind(t, err, ErrAuthFailed, "wrong password", "source.password_file")
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error leaks the password: %v", err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" || IsRetryable(err) {
		t.Fatalf("error %v: want SQLSTATE 28P01, not retryable", err)
	}
}

// TestNoPassword: a server asking for a password (scram-sha-256 in pg_hba.conf) when none was
// given anywhere is told apart from a wrong password, on both kinds of connection.
func TestNoPassword(t *testing.T) {
	pg := mainCluster(t)
	t.Setenv("PGPASSWORD", "")
	os.Unsetenv("PGPASSWORD")
	noPW := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&passfile=/nonexistent", pg.Port)
	_, err := Connect(ctxT(t, 10*time.Second), Config{URL: noPW})
	e := wantKind(t, err, ErrNoPassword, "no password was given for role postgres",
		"source.url, source.password_file, PGPASSWORD or ~/.pgpass")
	if errors.Is(err, ErrAuthFailed) || strings.Contains(err.Error(), "wrong password") || e.Check != "authentication" || IsRetryable(err) {
		t.Fatalf("error %v (check %q)", err, e.Check)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("cause %v is not SQLSTATE 28P01", err)
	}
	_, err = NewSQLConn(ctxT(t, 10*time.Second), Config{URL: noPW})
	wantKind(t, err, ErrNoPassword, "no password was given for role postgres")
}

func TestPasswordSources(t *testing.T) {
	pg := mainCluster(t)
	noPW := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&passfile=/nonexistent", pg.Port)

	t.Run("password_file", func(t *testing.T) {
		t.Setenv("PGPASSWORD", "wrong")
		f := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(f, []byte(pgtest.Password+"\nsecond line ignored\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// password_file overrides both the URL's password and PGPASSWORD.
		cfg := Config{URL: pg.URLAs("postgres", "wrong", "postgres"), PasswordFile: f}
		c := connect(t, cfg)
		if _, err := c.IdentifySystem(ctxT(t, 60*time.Second)); err != nil {
			t.Fatal(err)
		}
		sql, err := NewSQLConn(ctxT(t, 60*time.Second), cfg)
		if err != nil {
			t.Fatal(err)
		}
		sql.Close(context.Background())
		bad := Config{URL: noPW, PasswordFile: filepath.Join(t.TempDir(), "missing")}
		if err := bad.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "source.password_file") {
			t.Fatalf("missing password file: %v", err)
		}
	})
	t.Run("PGPASSWORD", func(t *testing.T) {
		t.Setenv("PGPASSWORD", pgtest.Password)
		c := connect(t, Config{URL: noPW})
		if _, err := c.IdentifySystem(ctxT(t, 60*time.Second)); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PGPASSWORD", "wrong")
		_, err := Connect(ctxT(t, 60*time.Second), Config{URL: noPW})
		wantKind(t, err, ErrAuthFailed)
	})
}

func TestSlotOtherPlugin(t *testing.T) {
	pg := mainCluster(t)
	slot := slotName(t)
	dropSlotLater(t, pg, slot)
	pg.MustExec(t, "postgres", "SELECT pg_create_logical_replication_slot('"+slot+"', 'test_decoding')")
	c := connect(t, testConfig(pg, slot, "pub_all"))
	_, err := c.EnsureSlot(ctxT(t, 60*time.Second))
	wantKind(t, err, ErrSlotMismatch, "test_decoding", "pgoutput", "pg_drop_replication_slot('"+slot+"')", "another source.slot")
	if IsRetryable(err) {
		t.Fatal("retryable")
	}
	if probs := c.Preflight(ctxT(t, 60*time.Second)); len(probs) != 1 || probs[0].Check != "slot" {
		t.Fatalf("preflight = %+v", probs)
	}
}

func TestSlotOtherDatabase(t *testing.T) {
	pg := mainCluster(t)
	slot := slotName(t)
	if err := pg.CreateDB("otherdb"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = pg.Exec("otherdb", "SELECT pg_drop_replication_slot('"+slot+"')")
	})
	pg.MustExec(t, "otherdb", "SELECT pg_create_logical_replication_slot('"+slot+"', 'pgoutput')")
	c := connect(t, testConfig(pg, slot, "pub_all"))
	_, err := c.EnsureSlot(ctxT(t, 60*time.Second))
	wantKind(t, err, ErrSlotMismatch, "database otherdb", "database postgres", "pg_drop_replication_slot")
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
	probs := second.Preflight(ctx)
	if len(probs) != 1 || !strings.Contains(probs[0].Message, fmt.Sprintf("PID %d", first.PgConn().PID())) {
		t.Fatalf("preflight = %+v", probs)
	}
	err := second.StartReplication(ctx, 0, 1)
	want := fmt.Sprintf("slot %s is active for PID %d", slot, first.PgConn().PID())
	wantKind(t, err, ErrSlotActive, want, "stop the other consumer or choose another source.slot")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "55006" {
		t.Fatalf("cause %v is not SQLSTATE 55006", err)
	}
	// The refused connection is still usable.
	if _, err := second.IdentifySystem(ctx); err != nil {
		t.Fatalf("after refusal: %v", err)
	}
}

func TestTooManyWALSenders(t *testing.T) {
	pg := mainCluster(t)
	max, err := pg.Query("postgres", "SHOW max_wal_senders")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(max)
	t.Cleanup(func() { // runs last: wait for the closed sessions' WAL senders to exit
		var got string
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
			if got, _ = pg.Query("postgres", "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'"); got == "0" {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("%s WAL senders still running 60s after their sessions closed: the tests after this one may find none free", got)
	})
	cfg := testConfig(pg, "unused", "unused")
	var lastErr error
	for i := 0; i <= n+5; i++ {
		c, err := Connect(ctxT(t, 60*time.Second), cfg)
		if err != nil {
			lastErr = err
			break
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
	}
	wantKind(t, lastErr, ErrTooManyWALSenders, "max_wal_senders")
	if !IsRetryable(lastErr) {
		t.Fatal("53300 not retryable")
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
	probs := c.Preflight(ctx)
	if len(probs) != 1 || probs[0].Check != "max_replication_slots" {
		t.Fatalf("preflight = %+v", probs)
	}
	_, err := c.EnsureSlot(ctx)
	wantKind(t, err, ErrNoFreeSlot, "max_replication_slots")
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	_, err = Connect(ctxT(t, 60*time.Second), Config{URL: fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/db?sslmode=disable", port)})
	wantKind(t, err, ErrUnreachable, fmt.Sprintf("127.0.0.1:%d", port), "listen_addresses")
	if !IsRetryable(err) {
		t.Fatal("unreachable server not retryable")
	}
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
	wantKind(t, err, ErrSlotLost, "(invalidated: wal_removed)", "max_slot_wal_keep_size", "are gone", "re-snapshot", "pg_drop_replication_slot('"+slot+"')")
	if probs := c.Preflight(ctx); len(probs) != 1 || probs[0].Check != "slot" || !strings.Contains(probs[0].Message, "wal_removed") {
		t.Fatalf("preflight = %+v", probs)
	}
	err = c.StartReplication(ctx, 0, 1)
	wantKind(t, err, ErrSlotLost, "re-snapshot", "wal_removed")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || IsRetryable(err) {
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
	wantKind(t, err, ErrSlotLost, "(invalidated: idle_timeout)", "raise idle_replication_slot_timeout", "pg_drop_replication_slot('"+slot+"')")
	if probs := c.Preflight(ctx); len(probs) != 1 || probs[0].Check != "slot" || !strings.Contains(probs[0].Message, "idle_timeout") {
		t.Fatalf("preflight = %+v", probs)
	}
	err = c.StartReplication(ctx, 0, 1)
	wantKind(t, err, ErrSlotLost, "idle_timeout", "re-snapshot")
}
