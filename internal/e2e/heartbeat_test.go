package e2e

import (
	"errors"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/lsn"
)

// TestHeartbeatsOutliveADroppedPublication drops the publication under a running pgstream whose
// heartbeats reach the sink. Heartbeats go on coming back (pgoutput sends logical messages
// whatever the publication), so readiness cannot see the drop; the first change after it can.
// Before PostgreSQL 18 the walsender fails on it, from 18 on it would leave the change out:
// either way pgstream stops with an error naming the publication and the way out, and nothing
// committed after the drop reaches the sink.
func TestHeartbeatsOutliveADroppedPublication(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of its own")
	}
	pg := pgtest.New(t, pgtest.Options{})
	pg.MustExec(t, "postgres", "CREATE TABLE t (id int PRIMARY KEY)")
	dir := t.TempDir()
	b := startOpsBinaryWith(t, pg, dir, "hbdrop", "  heartbeat_interval: 1s\n  heartbeat_to_sinks: true\n")
	b.waitFor("readiness", 60*time.Second, func() bool { code, _ := b.get("/readyz"); return code == http.StatusOK })
	changes := filepath.Join(dir, "changes.jsonl")
	// heartbeatAfter waits for a heartbeat in the sink committed after at.
	heartbeatAfter := func(at lsn.LSN) {
		t.Helper()
		waitUntil(t, 60*time.Second, "a heartbeat committed after "+at.String()+" reaches the sink", b.p.exited, func() bool {
			for _, e := range readWrittenEvents(t, changes) {
				if e.Message == nil || e.Message.Prefix != pipeline.HeartbeatPrefix {
					continue
				}
				if c, err := lsn.Parse(e.Source.CommitLSN); err == nil && c > at {
					return true
				}
			}
			return false
		})
	}
	now := func() lsn.LSN {
		v, err := pg.Query("postgres", "SELECT pg_current_wal_lsn()")
		if err != nil {
			t.Fatal(err)
		}
		l, err := lsn.Parse(v)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	heartbeatAfter(0)
	pg.MustExec(t, "postgres", "DROP PUBLICATION pgs_hbdrop")
	heartbeatAfter(now())
	if code, body := b.get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz %d while heartbeats still come back: %s", code, body)
	}

	// A change after the drop, then a message after the change: on a server that left the change
	// out and went on, the message arrives and shows the change skipped.
	pg.MustExec(t, "postgres", "INSERT INTO t VALUES (1)")
	pg.MustExec(t, "postgres", "SELECT pg_logical_emit_message(true, 'e2e.after', 'after the insert')")
	var exitErr error
	waitUntil(t, 120*time.Second, "pgstream stops", nil, func() bool {
		for _, e := range readWrittenEvents(t, changes) {
			if e.Message != nil && e.Message.Prefix == "e2e.after" {
				t.Fatalf("the stream went on past a change it left out (the publication was dropped):\n%s", b.p.stderr)
			}
		}
		select {
		case exitErr = <-b.p.done:
			return true
		default:
			return false
		}
	})
	var exit *exec.ExitError
	if !errors.As(exitErr, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("pgstream ended with %v, want exit code 1:\n%s", exitErr, b.p.stderr)
	}
	wantAll(t, "pgstream's error after the publication was dropped", b.p.stderr.String(),
		"publication pgs_hbdrop was dropped (or renamed) while pgstream streamed from slot hbdrop",
		"SELECT pg_drop_replication_slot('hbdrop')", "snapshot.mode initial", `CREATE PUBLICATION "pgs_hbdrop" FOR ALL TABLES`)
	for _, e := range readEvents(t, changes) {
		if e.Op != "m" {
			t.Fatalf("a change reached the sink: %s", e.Raw)
		}
	}
	t.Logf("PostgreSQL %d: %s", pg.Version, lastLine(b.p.stderr.String()))
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}
