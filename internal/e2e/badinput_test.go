package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/pgtest"
)

func runBinary(t *testing.T, timeout time.Duration, args ...string) (string, int) {
	t.Helper()
	p := startBinary(t, args...)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("pgstream %v did not finish within %s:\n%s", args, timeout, p.stderr)
	}
	return p.stderr.String(), p.cmd.ProcessState.ExitCode()
}

func TestWrongPasswordIsAClearError(t *testing.T) {
	db := newDB(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, db, "s_"+db, "")
	data, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(data), ":"+pgtest.Password+"@", ":wrong-secret@", 1)), 0o600)
	out, code := runBinary(t, 60*time.Second, "run", "--config", cfg)
	if code == 0 {
		t.Fatalf("exit 0 with a wrong password:\n%s", out)
	}
	if strings.Contains(out, "wrong-secret") {
		t.Fatalf("the password appears in the output:\n%s", out)
	}
	if !strings.Contains(strings.ToLower(out), "password") {
		t.Fatalf("the error does not say the password was wrong:\n%s", out)
	}
}

func TestBadConfigIsAClearError(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", "source:\n  url: postgres://x@127.0.0.1:1/db\n  slott: x\ncheckpoint:\n  path: c\nsinks:\n  - type: stdout\n", "slott"},
		{"no sinks", "source:\n  url: postgres://x@127.0.0.1:1/db\ncheckpoint:\n  path: c\n", "sinks"},
		{"unknown sink", "source:\n  url: postgres://x@127.0.0.1:1/db\ncheckpoint:\n  path: c\nsinks:\n  - type: carrier-pigeon\n", "carrier-pigeon"},
		{"sink key typo", "source:\n  url: postgres://x@127.0.0.1:1/db\ncheckpoint:\n  path: c\nsinks:\n  - type: file\n    pth: x\n", "pth"},
		{"no url", "checkpoint:\n  path: c\nsinks:\n  - type: stdout\n", "source.url"},
		{"bad duration", "source:\n  url: postgres://x@127.0.0.1:1/db\n  status_interval: soon\ncheckpoint:\n  path: c\nsinks:\n  - type: stdout\n", "status_interval"},
		{"not yaml", "source: [\n", "config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			os.WriteFile(p, []byte(tc.yaml), 0o600)
			out, code := runBinary(t, 30*time.Second, "run", "--config", p)
			if code != 2 {
				t.Errorf("exit code %d, want 2:\n%s", code, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("error does not name %q:\n%s", tc.want, out)
			}
		})
	}
}

// refusedByServer runs check and run against the server pg with a minimal configuration and fails
// the test unless both exit non-zero with output holding every one of want (what, for the
// messages, names the server). It returns the configuration's directory.
func refusedByServer(t *testing.T, pg *pgtest.Cluster, what string, want ...string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("source:\n  url: "+pg.URL("postgres")+"\ncheckpoint:\n  path: "+filepath.Join(dir, "ck")+"\nsinks:\n  - type: stdout\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"check", "run"} {
		out, code := runBinary(t, 60*time.Second, cmd, "--config", cfg)
		if code == 0 {
			t.Fatalf("%s: exit 0 against %s:\n%s", cmd, what, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Fatalf("%s against %s: the error does not say %q:\n%s", cmd, what, w, out)
			}
		}
	}
	return dir
}

func TestServerWithoutLogicalWAL(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{WalLevel: "replica"})
	dir := refusedByServer(t, c, "wal_level=replica", "wal_level", "logical")
	if _, err := os.Stat(filepath.Join(dir, "ck")); err == nil {
		t.Errorf("a checkpoint was written although streaming never started")
	}
}

// PostgreSQL 13 is past its end of life and lacks what pgstream asks of pgoutput: check and run
// refuse it at once, naming the version found and the minimum, instead of failing deep inside
// START_REPLICATION.
func TestServerOlderThan14IsRefused(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{BinDir: pgtest.BinDirFor(t, 13)})
	if c.Version != 13 {
		t.Fatalf("the cluster runs PostgreSQL %d, want 13", c.Version)
	}
	refusedByServer(t, c, "PostgreSQL 13", "PostgreSQL 13.", "PostgreSQL 14 or newer")
	if n, err := c.Query("postgres", "SELECT count(*) FROM pg_replication_slots"); err != nil || n != "0" {
		t.Fatalf("a slot was created on PostgreSQL 13: %q, %v", n, err)
	}
}

func TestCheckCommandOnAHealthyServer(t *testing.T) {
	db := newDB(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, db, "chk_"+db, "")
	out, code := runBinary(t, 60*time.Second, "check", "--config", cfg)
	if code != 0 || strings.Contains(out, "FAIL") {
		t.Fatalf("check failed on a healthy server (exit %d):\n%s", code, out)
	}
}

// A role that may not call pg_logical_emit_message cannot write heartbeats: run refuses at start
// with the GRANT for the signature this server has (PostgreSQL 17 added a fourth parameter) and
// the options that avoid it.
func TestHeartbeatWithoutGrantIsRefused(t *testing.T) {
	db := newDB(t)
	slot := "hbgrant_" + db
	role := "hb_" + db
	exec1(t, db, fmt.Sprintf(`CREATE TABLE t (id int PRIMARY KEY);
CREATE PUBLICATION pgs_%s FOR ALL TABLES;
CREATE ROLE %s LOGIN REPLICATION PASSWORD 'pw';
GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s;
DO $$ BEGIN EXECUTE format('REVOKE EXECUTE ON FUNCTION %%s FROM PUBLIC', coalesce(
  to_regprocedure('pg_catalog.pg_logical_emit_message(boolean,text,text,boolean)'),
  to_regprocedure('pg_catalog.pg_logical_emit_message(boolean,text,text)'))); END $$`, slot, role, role))
	t.Cleanup(func() {
		_ = cluster.Exec("postgres", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE); DROP ROLE IF EXISTS "+role)
	})
	want := "GRANT EXECUTE ON FUNCTION pg_catalog.pg_logical_emit_message(boolean,text,text)"
	if cluster.Version >= 17 {
		want = "GRANT EXECUTE ON FUNCTION pg_catalog.pg_logical_emit_message(boolean,text,text,boolean)"
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("source:\n  url: %s\n  slot: %s\n  publication: pgs_%s\n  heartbeat_interval: 1s\n"+
		"snapshot:\n  mode: never\ncheckpoint:\n  path: %s\nsinks:\n  - type: stdout\n",
		cluster.URLAs(role, "pw", db), slot, slot, filepath.Join(dir, "ck"))), 0o600)
	out, code := runBinary(t, 60*time.Second, "run", "--config", cfg)
	if code == 0 || !strings.Contains(out, want) || !strings.Contains(out, "heartbeat_interval") {
		t.Fatalf("run as a role without EXECUTE on pg_logical_emit_message: exit %d, want the error to name %q:\n%s", code, want, out)
	}
	if n, err := cluster.Query(db, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '"+slot+"'"); err != nil || n != "0" {
		t.Fatalf("a slot was created although heartbeats were refused: %q, %v", n, err)
	}
}
