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
