package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/lsn"
)

// serverSlot is the server section of /status as far as these tests read it.
type serverSlot struct {
	WALStatus                  string     `json:"wal_status"`
	Conflicting                *bool      `json:"conflicting"`
	InactiveSince              *time.Time `json:"inactive_since"`
	InvalidationReason         string     `json:"invalidation_reason"`
	IdleReplicationSlotTimeout *string    `json:"idle_replication_slot_timeout"`
	IdleTimeoutSeconds         int64      `json:"idle_replication_slot_timeout_seconds"`
}

// statusServer returns the server section of the binary's /status once the slot has been polled.
func (b *opsBinary) statusServer() serverSlot {
	b.t.Helper()
	var srv serverSlot
	b.waitFor("the slot's first poll", 60*time.Second, func() bool {
		var st struct {
			Server serverSlot `json:"server"`
		}
		code, body := b.get("/status")
		if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
			return false
		}
		srv = st.Server
		return srv.WALStatus != ""
	})
	return srv
}

// TestSlotFieldsByVersion runs the binary against whatever server version the tests run on: /status
// carries the slot's columns and the settings that version has, and none it lacks. On PostgreSQL
// 18, an idle_replication_slot_timeout not longer than pipeline.reconnect_max is warned of at start,
// naming what to change.
func TestSlotFieldsByVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of its own")
	}
	pg := pgtest.New(t, pgtest.Options{})
	pg.MustExec(t, "postgres", "CREATE TABLE t (id int PRIMARY KEY)")
	if pg.Version >= 18 {
		pg.MustExec(t, "postgres", "ALTER SYSTEM SET idle_replication_slot_timeout = '1h'")
		pg.MustExec(t, "postgres", "SELECT pg_reload_conf()")
	}
	b := startOpsBinaryOpts(t, pg, t.TempDir(), opsOpts{slot: "fields", reconnectMax: "1h"})
	b.waitFor("readiness", 60*time.Second, func() bool { code, _ := b.get("/readyz"); return code == http.StatusOK })
	srv := b.statusServer()
	_, body := b.get("/status")
	t.Logf("PostgreSQL %d: /status server section: %+v", pg.Version, srv)
	if (pg.Version >= 16) != (srv.Conflicting != nil) || srv.Conflicting != nil && *srv.Conflicting {
		t.Errorf("PostgreSQL %d: conflicting %v in %s", pg.Version, srv.Conflicting, body)
	}
	// The slot is streamed from: inactive_since is NULL (17 and later) or not a column (before).
	if srv.InactiveSince != nil || srv.InvalidationReason != "" {
		t.Errorf("PostgreSQL %d: an active, valid slot shows inactive_since %v, invalidation_reason %q", pg.Version, srv.InactiveSince, srv.InvalidationReason)
	}
	if pg.Version < 18 {
		if srv.IdleReplicationSlotTimeout != nil || srv.IdleTimeoutSeconds != 0 || strings.Contains(b.p.stderr.String(), "idle_replication_slot_timeout") {
			t.Errorf("PostgreSQL %d has no idle_replication_slot_timeout, yet pgstream shows one:\n%s\n%s", pg.Version, body, b.p.stderr)
		}
		stopBinary(t, b.p)
		return
	}
	if srv.IdleReplicationSlotTimeout == nil || *srv.IdleReplicationSlotTimeout != "1h" || srv.IdleTimeoutSeconds != 3600 {
		t.Errorf("idle_replication_slot_timeout in /status: %s", body)
	}
	b.waitFor("the idle timeout's warning", 60*time.Second, func() bool {
		return strings.Contains(b.p.stderr.String(), "idle_replication_slot_timeout (1h0m0s) is not longer than pipeline.reconnect_max (1h0m0s)")
	})
	for _, fix := range []string{"raise idle_replication_slot_timeout well above pipeline.reconnect_max", "lower pipeline.reconnect_max"} {
		if !strings.Contains(b.p.stderr.String(), fix) {
			t.Errorf("the warning does not say %q:\n%s", fix, b.p.stderr)
		}
	}
	stopBinary(t, b.p)
}

// slotColumn reads one column of the slot's row in pg_replication_slots ("" for NULL).
func slotColumn(t *testing.T, pg *pgtest.Cluster, slot, column string) string {
	t.Helper()
	v, err := pg.Query("postgres", fmt.Sprintf("SELECT (%s)::text FROM pg_replication_slots WHERE slot_name = '%s'", column, slot))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// loseSlotWAL sets max_slot_wal_keep_size to 1MB and writes WAL in database other, switching
// segments and checkpointing, until the server invalidates slot (wal_status lost, no walsender).
func loseSlotWAL(t *testing.T, pg *pgtest.Cluster, slot string) {
	t.Helper()
	pg.MustExec(t, "postgres", "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
	pg.MustExec(t, "postgres", "SELECT pg_reload_conf()")
	deadline := time.Now().Add(300 * time.Second)
	for {
		v, err := pg.Query("postgres", fmt.Sprintf("SELECT wal_status || ' ' || (active_pid IS NULL)::text FROM pg_replication_slots WHERE slot_name = '%s'", slot))
		if err != nil {
			t.Fatal(err)
		}
		if v == "lost true" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s not lost after 300s of WAL and checkpoints (wal_status, released: %q)", slot, v)
		}
		pg.MustExec(t, "other", "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 2000)")
		pg.MustExec(t, "postgres", "SELECT pg_switch_wal()")
		pg.MustExec(t, "postgres", "CHECKPOINT")
	}
}

// TestLostSlotRefused makes the server invalidate the slot of a stopped pgstream: for removed WAL
// (a small max_slot_wal_keep_size) on every version, and on PostgreSQL 18 also for idle time
// (idle_replication_slot_timeout). Started again, pgstream refuses, naming the cause and the way
// out, and pgstream status exits 2 saying the same. Then the slot of a running pgstream, paused
// with SIGSTOP, is invalidated: resumed, pgstream stops with that error.
func TestLostSlotRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of its own")
	}
	pg := pgtest.New(t, pgtest.Options{})
	pg.MustExec(t, "postgres", "CREATE TABLE t (id int PRIMARY KEY)")
	pg.MustExec(t, "postgres", "CREATE DATABASE other")
	pg.MustExec(t, "other", "CREATE TABLE filler (v text)")

	// stopped streams a little on slot with a binary of its own, stops it and waits until the
	// server released the slot; it returns the binary's directory.
	stopped := func(slot string) string {
		dir := t.TempDir()
		b := startOpsBinaryWith(t, pg, dir, slot, "")
		b.waitFor("readiness", 60*time.Second, func() bool { code, _ := b.get("/readyz"); return code == http.StatusOK })
		pg.MustExec(t, "postgres", "INSERT INTO t SELECT coalesce(max(id), 0) + 1 FROM t")
		stopBinary(t, b.p)
		waitSlotInactiveOn(t, pg, slot)
		return dir
	}
	refused := func(dir, slot, cause string, want ...string) {
		t.Helper()
		out := runRefused(t, dir)
		wantAll(t, "the refusal of a slot lost for "+cause, out, append([]string{"replication slot " + slot + " is lost (invalidated: " + cause + ")",
			"SELECT pg_drop_replication_slot('" + slot + "')", "delete the checkpoint", "re-snapshot"}, want...)...)
		stdout, stderr, code := runStatusCmd(t, "--config", filepath.Join(dir, "pgstream.yaml"))
		wantStatus(t, "pgstream status of a slot lost for "+cause, stdout, stderr, code, 2, "pgstream status: broken (exit 2)",
			"a run would refuse to start: replication slot "+slot+" is lost (invalidated: "+cause+")", "pg_drop_replication_slot('"+slot+"')")
		for _, w := range want {
			if !strings.Contains(stdout, w) {
				t.Fatalf("pgstream status of a slot lost for %s lacks %q:\n%s", cause, w, stdout)
			}
		}
	}

	if pg.Version >= 18 {
		dir := stopped("idle")
		pg.MustExec(t, "postgres", "ALTER SYSTEM SET idle_replication_slot_timeout = '1s'")
		pg.MustExec(t, "postgres", "SELECT pg_reload_conf()")
		waitUntil(t, 60*time.Second, "the slot is idle for longer than the timeout, as the server sees it", nil, func() bool {
			return slotColumn(t, pg, "idle", "current_setting('idle_replication_slot_timeout') = '1s' AND clock_timestamp() - inactive_since > '2s'") == "true"
		})
		pg.MustExec(t, "postgres", "CHECKPOINT")
		if r := slotColumn(t, pg, "idle", "invalidation_reason"); r != "idle_timeout" {
			t.Fatalf("invalidation_reason %q after a checkpoint, want idle_timeout", r)
		}
		refused(dir, "idle", "idle_timeout", "raise idle_replication_slot_timeout")
		pg.MustExec(t, "postgres", "ALTER SYSTEM RESET idle_replication_slot_timeout")
		pg.MustExec(t, "postgres", "SELECT pg_reload_conf(); SELECT pg_drop_replication_slot('idle')")
	}

	dir := stopped("lost")
	loseSlotWAL(t, pg, "lost")
	if pg.Version >= 17 {
		if r := slotColumn(t, pg, "lost", "invalidation_reason"); r != "wal_removed" {
			t.Fatalf("invalidation_reason %q, want wal_removed", r)
		}
	}
	refused(dir, "lost", "wal_removed", "raise max_slot_wal_keep_size")
	pg.MustExec(t, "postgres", "ALTER SYSTEM RESET max_slot_wal_keep_size")
	pg.MustExec(t, "postgres", "SELECT pg_reload_conf(); SELECT pg_drop_replication_slot('lost')")

	// A running pgstream, paused once it has confirmed everything, so that its walsender sends it
	// nothing but keepalives: terminated by the checkpoint that invalidates the slot, the
	// walsender can say so without waiting for pgstream to read, and exits.
	b := startOpsBinaryWith(t, pg, t.TempDir(), "paused", "")
	b.waitFor("readiness", 60*time.Second, func() bool { code, _ := b.get("/readyz"); return code == http.StatusOK })
	pg.MustExec(t, "postgres", "INSERT INTO t SELECT coalesce(max(id), 0) + 1 FROM t")
	end, err := pg.Query("postgres", "SELECT pg_current_wal_lsn()")
	if err != nil {
		t.Fatal(err)
	}
	endLSN, err := lsn.Parse(end)
	if err != nil {
		t.Fatal(err)
	}
	b.waitFor("the slot confirmed past the insert", 60*time.Second, func() bool {
		c, err := lsn.Parse(slotColumn(t, pg, "paused", "confirmed_flush_lsn"))
		return err == nil && c >= endLSN
	})
	frozen(t, b.p, func() struct{} { loseSlotWAL(t, pg, "paused"); return struct{}{} })
	select {
	case err := <-b.p.done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("pgstream ended with %v, want exit code 1:\n%s", err, b.p.stderr)
		}
	case <-time.After(120 * time.Second):
		t.Fatalf("pgstream went on for 120s after its slot was lost:\n%s", b.p.stderr)
	}
	wantAll(t, "pgstream's error after its slot was lost under it", b.p.stderr.String(), "(invalidated: wal_removed)",
		"pg_drop_replication_slot('paused')", "raise max_slot_wal_keep_size")
	t.Logf("PostgreSQL %d, slot lost under a paused pgstream: %s", pg.Version, lastLine(b.p.stderr.String()))
}
