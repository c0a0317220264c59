package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/pgtest"
)

// statusSecret is the password of the role pgstream status connects as: no output may show it.
const statusSecret = "st4tus-s3cret-pw"

// runStatusCmd runs pgstream status and returns its stdout, stderr and exit code.
func runStatusCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), append([]string{"status"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("pgstream status %v did not finish within 2 minutes:\n%s%s", args, out.String(), errOut.String())
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	all := out.String() + errOut.String()
	if strings.Contains(all, statusSecret) {
		t.Fatalf("pgstream status %v shows the password:\n%s", args, all)
	}
	t.Logf("pgstream status %v: exit %d\n%s%s", args, cmd.ProcessState.ExitCode(), out.String(), errOut.String())
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// wantStatus fails the test unless the exit code is code and the output holds every string of want.
func wantStatus(t *testing.T, what string, stdout, stderr string, code, wantCode int, want ...string) {
	t.Helper()
	if code != wantCode {
		t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", what, code, wantCode, stdout, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stdout, w) {
			t.Fatalf("%s: the output lacks %q:\n%s\nstderr:\n%s", what, w, stdout, stderr)
		}
	}
}

// TestStatusCommand runs pgstream status against the real binary in its three states: healthy
// through the operations endpoint of a running pgstream; degraded once that pgstream stopped (the
// endpoint does not answer, the slot is inactive); broken with the checkpoint of another slot, with
// the slot dropped, and with PostgreSQL out of reach.
func TestStatusCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of its own")
	}
	pg := pgtest.New(t, pgtest.Options{})
	pg.MustExec(t, "postgres", "CREATE TABLE t (id int PRIMARY KEY, v int)")
	pg.MustExec(t, "postgres", "CREATE ROLE pgs_status LOGIN SUPERUSER PASSWORD '"+statusSecret+"'")
	url := pg.URLAs("pgs_status", statusSecret, "postgres")
	dir := t.TempDir()
	b := startOpsBinary(t, pg, dir)
	cfg := filepath.Join(dir, "pgstream.yaml")
	b.waitFor("readiness", 60*time.Second, func() bool { code, _ := b.get("/readyz"); return code == http.StatusOK })
	pg.MustExec(t, "postgres", "INSERT INTO t SELECT g, 0 FROM generate_series(1, 10) g")
	waitEvents(t, filepath.Join(dir, "changes.jsonl"), 60*time.Second, atLeast(10))

	// Healthy: the daemon's own picture, through its endpoint.
	out, errOut, code := runStatusCmd(t, "--config", cfg, "--source.url", url)
	wantStatus(t, "running pgstream", out, errOut, code, 0, "pgstream status: healthy (exit 0)",
		"the operations endpoint at http://"+b.addr, "ops, publication pgs_ops", "connected", "ok   source", "ok   sink:file#0")
	out, errOut, code = runStatusCmd(t, "--config", cfg, "--json")
	wantStatus(t, "running pgstream, --json", out, errOut, code, 0)
	var js struct {
		Slot      string `json:"slot"`
		Connected bool   `json:"connected"`
		Readiness struct {
			Ready      bool `json:"ready"`
			Components []struct {
				Name string `json:"name"`
			} `json:"components"`
		} `json:"readiness"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || js.Slot != "ops" || !js.Connected || !js.Readiness.Ready || len(js.Readiness.Components) == 0 {
		t.Fatalf("--json of a running pgstream (%v):\n%s", err, out)
	}

	// Degraded: pgstream stopped; the endpoint is configured but does not answer, nothing streams.
	stopBinary(t, b.p)
	waitSlotInactiveOn(t, pg, "ops")
	out, errOut, code = runStatusCmd(t, "--config", cfg, "--source.url", url)
	wantStatus(t, "stopped pgstream", out, errOut, code, 1, "pgstream status: degraded (exit 1)",
		"nothing streams: slot ops is inactive", "did not answer", "postgres://pgs_status:xxxxx@", "a run resumes from")
	out, errOut, code = runStatusCmd(t, "--config", cfg, "--source.url", url, "--json")
	wantStatus(t, "stopped pgstream, --json", out, errOut, code, 1)
	var off struct {
		Slot    string `json:"slot"`
		Offline struct {
			SlotExists      bool `json:"slot_exists"`
			SlotActive      bool `json:"slot_active"`
			CheckpointFound bool `json:"checkpoint_found"`
		} `json:"offline"`
	}
	if err := json.Unmarshal([]byte(out), &off); err != nil || off.Slot != "ops" || !off.Offline.SlotExists || off.Offline.SlotActive || !off.Offline.CheckpointFound {
		t.Fatalf("--json of a stopped pgstream (%v):\n%s", err, out)
	}
	if !strings.Contains(errOut, "inactive") {
		t.Fatalf("--json of a stopped pgstream: stderr does not say why it is degraded:\n%s", errOut)
	}

	// Broken: the checkpoint belongs to slot ops, the configuration names another slot.
	pg.MustExec(t, "postgres", "SELECT pg_create_logical_replication_slot('other', 'pgoutput')")
	out, errOut, code = runStatusCmd(t, "--config", cfg, "--source.url", url, "--source.slot", "other")
	wantStatus(t, "checkpoint of another slot", out, errOut, code, 2, "pgstream status: broken (exit 2)",
		"a run would refuse to start", "checkpoint does not match the server")

	// Broken: the slot the checkpoint belongs to was dropped.
	pg.MustExec(t, "postgres", "SELECT pg_drop_replication_slot('ops')")
	out, errOut, code = runStatusCmd(t, "--config", cfg, "--source.url", url)
	wantStatus(t, "slot dropped", out, errOut, code, 2, "pgstream status: broken (exit 2)",
		"a run would refuse to start", `slot "ops" was dropped`)

	// Broken: PostgreSQL is out of reach.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	out, errOut, code = runStatusCmd(t, "--config", cfg, "--source.url", fmt.Sprintf("postgres://pgs_status:%s@%s/postgres?sslmode=disable&connect_timeout=5", statusSecret, closed))
	wantStatus(t, "server out of reach", out, errOut, code, 2, "pgstream status: broken (exit 2)", "cannot reach PostgreSQL")
}

// waitSlotInactiveOn waits until no process streams from slot on the cluster pg: the server releases a slot shortly
// after its consumer disconnected, not at once.
func waitSlotInactiveOn(t *testing.T, pg *pgtest.Cluster, slot string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		active, err := pg.Query("postgres", "SELECT active::text FROM pg_replication_slots WHERE slot_name = '"+slot+"'")
		if err != nil {
			t.Fatal(err)
		}
		if active == "false" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s still active (%q) 60s after its consumer stopped", slot, active)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
