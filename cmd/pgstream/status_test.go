package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/internal/httpapi"
	"github.com/pgstream/pgstream/internal/inspect"
	"github.com/pgstream/pgstream/internal/metrics"
	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/replication"
)

var (
	statusNow = time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	gib       = float64(1 << 30)
)

// daemonReport is the picture a running pgstream's endpoint gives: ready when every component is.
func daemonReport(comps ...health.Status) *statusReport {
	r := &statusReport{Endpoint: "http://127.0.0.1:9187"}
	r.Status.Slot, r.Status.Publication, r.Status.Connected = "pgstream", "pgstream", true
	r.Status.Positions.Durable, r.Status.Positions.DurableCommit = "0/1A2B3C8", "0/1A2B3A0"
	r.Status.Positions.Confirmed, r.Status.Positions.ServerWALEnd = "0/1A2B3C8", "0/1A2B400"
	r.Status.Lag.Bytes, r.Status.Transactions, r.Status.Events = 56, 1200, 6000
	r.Status.Server = polledSlot("reserved")
	r.Readiness.Ready = len(comps) > 0
	for _, c := range comps {
		r.Readiness.Ready = r.Readiness.Ready && c.OK
	}
	r.Readiness.Components = comps
	return r
}

func comp(name string, ok bool, reason string) health.Status {
	return health.Status{Name: name, OK: ok, Reason: reason, Since: statusNow.Add(-90 * time.Second)}
}

func polledSlot(walStatus string) inspect.SlotState {
	safe := int64(3 << 30)
	return inspect.SlotState{Polled: statusNow.Add(-4 * time.Second), WALStatus: walStatus, SafeWALSize: &safe, RetainedWAL: 1536,
		ServerVersion: "17.2", WalSenderTimeout: "1min", MaxSlotWALKeepSize: "4096MB"}
}

// offlineReport is the picture built from the server and the checkpoint of a pgstream streaming
// without an endpoint: the slot exists and is active, the checkpoint is fine.
func offlineReport(change func(r *statusReport)) *statusReport {
	r := &statusReport{Offline: "http.listen is not set", Source: "postgres://pgstream:xxxxx@db:5432/app", Checkpoint: "/var/lib/pgstream/checkpoint.json"}
	r.Status.Slot, r.Status.Publication = "pgstream", "pgstream"
	r.Start = pipeline.StartState{
		System:     replication.SystemInfo{SystemID: "7301234567890123456", Timeline: 1, XLogPos: 0x1A2B400, DBName: "app"},
		Slot:       replication.SlotInfo{Name: "pgstream", Exists: true, Active: true, ActivePID: 4242, ConfirmedFlush: 0x1A2B3C8, WALStatus: "reserved"},
		Checkpoint: checkpoint.Checkpoint{Slot: "pgstream", CommitLSN: 0x1A2B3A0, FlushLSN: 0x1A2B3C8, UpdatedAt: statusNow.Add(-2 * time.Second)},
		Found:      true,
		Start:      checkpoint.Start{From: 0x1A2B3C8, SkipThrough: 0x1A2B3A0},
	}
	r.Status.Positions.ServerWALEnd, r.Status.Positions.Durable = "0/1A2B400", "0/1A2B3C8"
	r.Status.Positions.DurableCommit, r.Status.Positions.Confirmed = "0/1A2B3A0", "0/1A2B3C8"
	r.Status.Lag.Bytes = 56
	r.Status.Server = polledSlot("reserved")
	if change != nil {
		change(r)
	}
	return r
}

func TestClassifyStatus(t *testing.T) {
	lim := lagLimits{Bytes: 1 << 30, Seconds: 5 * time.Minute}
	ok := []health.Status{comp("sink:file#0", true, ""), comp("slot", true, ""), comp("source", true, "")}
	for _, tc := range []struct {
		name    string
		r       *statusReport
		lim     lagLimits
		code    int
		reasons []string // each reason holds the string of the same index
	}{
		{name: "daemon ready", r: daemonReport(ok...), code: 0},
		{name: "daemon ready, slot not polled yet", r: func() *statusReport {
			r := daemonReport(ok...)
			r.Status.Server = inspect.SlotState{}
			return r
		}(), code: 0},
		{name: "daemon reconnecting", r: daemonReport(comp("sink:file#0", true, ""), comp("source", false, "reconnecting: connection refused")),
			code: 1, reasons: []string{"source not ready: reconnecting: connection refused"}},
		{name: "daemon starting", r: daemonReport(), code: 1, reasons: []string{"pgstream is starting"}},
		{name: "daemon sink stalled", r: daemonReport(comp("sink:kafka", false, "one write has run for 45s"), comp("source", true, "")),
			code: 1, reasons: []string{"sink:kafka not ready: one write has run for 45s"}},
		{name: "daemon slot extended", r: func() *statusReport {
			r := daemonReport(ok...)
			r.Status.Server = polledSlot("extended")
			return r
		}(), code: 1, reasons: []string{"wal_status extended"}},
		{name: "daemon slot unreserved, said once", r: func() *statusReport {
			r := daemonReport(comp("slot", false, "wal_status unreserved: the server will remove WAL"), comp("source", true, ""))
			r.Status.Server = polledSlot("unreserved")
			return r
		}(), code: 1, reasons: []string{"slot not ready: wal_status unreserved"}},
		{name: "daemon slot unreserved, readiness not updated yet", r: func() *statusReport {
			r := daemonReport(ok...)
			r.Status.Server = polledSlot("unreserved")
			return r
		}(), code: 1, reasons: []string{"wal_status unreserved"}},
		{name: "daemon slot lost", r: func() *statusReport {
			r := daemonReport(comp("slot", false, "replication slot lost"), comp("source", true, ""))
			r.Status.Server = polledSlot("lost")
			return r
		}(), code: 2, reasons: []string{"slot not ready: replication slot lost"}},
		{name: "daemon lag in bytes", r: func() *statusReport {
			r := daemonReport(ok...)
			r.Status.Lag.Bytes = 2 * gib
			return r
		}(), lim: lim, code: 1, reasons: []string{"lag 2.0 GiB is over --max-lag-bytes 1.0 GiB"}},
		{name: "daemon lag in time", r: func() *statusReport {
			r := daemonReport(ok...)
			r.Status.Lag.Seconds = 301
			return r
		}(), lim: lim, code: 1, reasons: []string{"lag 301.0s is over --max-lag 5m0s"}},
		{name: "lag limits off", r: func() *statusReport {
			r := daemonReport(ok...)
			r.Status.Lag.Bytes, r.Status.Lag.Seconds = 100*gib, 86400
			return r
		}(), code: 0},

		{name: "offline, another pgstream streams", r: offlineReport(nil), lim: lim, code: 0},
		{name: "offline, slot inactive", r: offlineReport(func(r *statusReport) { r.Start.Slot.Active, r.Start.Slot.ActivePID = false, 0 }),
			code: 1, reasons: []string{"nothing streams: slot pgstream is inactive"}},
		{name: "offline, never started", r: offlineReport(func(r *statusReport) {
			r.Start.Slot = replication.SlotInfo{Name: "pgstream"}
			r.Start.Found, r.Start.CreateSlot, r.Start.Snapshot = false, true, true
			r.Status.Server = inspect.SlotState{ServerVersion: "17.2"}
		}), code: 1, reasons: []string{"slot pgstream does not exist yet"}},
		{name: "offline, lag", r: offlineReport(func(r *statusReport) { r.Status.Lag.Bytes = 2 * gib }), lim: lim,
			code: 1, reasons: []string{"over --max-lag-bytes"}},
		{name: "offline, inactive and extended", r: offlineReport(func(r *statusReport) {
			r.Start.Slot.Active = false
			r.Status.Server = polledSlot("extended")
		}), code: 1, reasons: []string{"inactive", "wal_status extended"}},
		{name: "offline, slot unreadable", r: offlineReport(func(r *statusReport) { r.PollErr = errors.New("permission denied") }),
			code: 1, reasons: []string{"cannot read the slot's WAL state: permission denied"}},
		{name: "offline, unreachable", r: offlineReport(func(r *statusReport) {
			r.Reach = errors.New("cannot connect to db:5432 as pgstream: connection refused")
		}), code: 2, reasons: []string{"cannot reach PostgreSQL: cannot connect to db:5432"}},
		{name: "offline, slot dropped", r: offlineReport(func(r *statusReport) {
			r.Start.Slot = replication.SlotInfo{Name: "pgstream"}
			r.Refusal = fmt.Errorf("%w: slot \"pgstream\" was dropped after checkpoint 0/1A2B3C8", checkpoint.ErrSlotMissing)
			r.Status.Server = inspect.SlotState{ServerVersion: "17.2"}
		}), code: 2, reasons: []string{"a run would refuse to start: replication slot missing"}},
		{name: "offline, checkpoint of another system", r: offlineReport(func(r *statusReport) {
			r.Refusal = fmt.Errorf("%w: checkpoint was taken for system id \"1\"", checkpoint.ErrMismatch)
		}), code: 2, reasons: []string{"checkpoint does not match the server"}},
		{name: "offline, checkpoint ahead of the server", r: offlineReport(func(r *statusReport) {
			r.Refusal = fmt.Errorf("%w: the checkpoint holds changes up to 0/9000000", checkpoint.ErrRewound)
		}), code: 2, reasons: []string{"database is behind the checkpoint"}},
		{name: "offline, corrupt checkpoint", r: offlineReport(func(r *statusReport) {
			r.Refusal = fmt.Errorf("load checkpoint: %w: checksum mismatch", checkpoint.ErrCorrupt)
		}), code: 2, reasons: []string{"checkpoint file corrupt"}},
		{name: "offline, slot lost, said once", r: offlineReport(func(r *statusReport) {
			r.Start.Slot.Active, r.Start.Slot.WALStatus = false, "lost"
			r.Refusal = &replication.Error{Kind: replication.ErrSlotLost, Check: "slot", Msg: "replication slot pgstream is lost"}
			r.Status.Server = polledSlot("lost")
		}), code: 2, reasons: []string{"replication slot pgstream is lost"}},
		{name: "offline, wal_status lost before a run sees it", r: offlineReport(func(r *statusReport) { r.Status.Server = polledSlot("lost") }),
			code: 2, reasons: []string{"slot pgstream is lost (invalidated: wal_removed): the server removed WAL"}},
		{name: "offline, invalidated for idle time before a run sees it", r: offlineReport(func(r *statusReport) {
			r.Status.Server = polledSlot("lost")
			r.Status.Server.InvalidationReason = "idle_timeout"
		}), code: 2, reasons: []string{"slot pgstream is lost (invalidated: idle_timeout): no consumer streamed from it for longer than idle_replication_slot_timeout; " +
			"drop the slot and the checkpoint, then start again with snapshot.mode initial; to avoid it: raise idle_replication_slot_timeout"}},
		{name: "offline, inactive under an idle timeout", r: offlineReport(func(r *statusReport) {
			r.Start.Slot.Active, r.Start.Slot.ActivePID = false, 0
			since := statusNow.Add(-10 * time.Minute)
			r.Status.Server.InactiveSince, r.Status.Server.IdleReplicationSlotTimeout, r.Status.Server.IdleTimeoutSeconds = &since, "1h", 3600
		}), code: 1, reasons: []string{"start pgstream run; idle_replication_slot_timeout is 1h: the server invalidates the slot at its first checkpoint after 2026-12-01 15:50:00Z"}},
		{name: "offline, preflight refuses", r: offlineReport(func(r *statusReport) {
			r.Problems = []inspect.Problem{{Check: "wal_level", Message: "wal_level is replica", Fix: "set wal_level = logical"}}
		}), code: 2, reasons: []string{"a run would refuse to start: wal_level: wal_level is replica; fix: set wal_level = logical"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := classify(tc.r, tc.lim)
			if v.Code != tc.code || len(v.Reasons) != len(tc.reasons) {
				t.Fatalf("exit %d, reasons %q; want exit %d with %d reason(s)", v.Code, v.Reasons, tc.code, len(tc.reasons))
			}
			for i, want := range tc.reasons {
				if !strings.Contains(v.Reasons[i], want) {
					t.Errorf("reason %d %q lacks %q", i, v.Reasons[i], want)
				}
			}
		})
	}
}

func TestRenderStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *statusReport
		want string
	}{
		{name: "daemon not ready", r: func() *statusReport {
			r := daemonReport(comp("sink:kafka", true, ""), comp("slot", true, ""), comp("source", false, "reconnecting: server closed the connection"))
			r.Status.Connected, r.Status.Reconnects, r.Status.LastError = false, 3, "server closed the connection"
			r.Status.Snapshot = pipeline.SnapshotProgress{Active: true, ChunksDone: 12, Chunks: 40, Rows: 120000, RowsPerSec: 8000, ETA: 35 * time.Second, TablesPending: 2,
				GuardSwitched: true}
			return r
		}(), want: `pgstream status: degraded (exit 1)
  - source not ready: reconnecting: server closed the connection

from         the operations endpoint at http://127.0.0.1:9187
slot         pgstream, publication pgstream
replication  not connected, 3 reconnect(s); last error: server closed the connection
positions    durable 0/1A2B3C8 (newest commit 0/1A2B3A0), confirmed 0/1A2B3C8, server WAL end 0/1A2B400
lag          56 B, 0.0s behind; 0 B in flight
delivered    transactions 1200, events 6000 since it started
readiness    NOT READY
             ok   sink:kafka (since 2026-12-01 14:58:30Z, 1m30s ago)
             ok   slot (since 2026-12-01 14:58:30Z, 1m30s ago)
             FAIL source: reconnecting: server closed the connection (since 2026-12-01 14:58:30Z, 1m30s ago)
snapshot     12 of 40 chunks, 120000 rows, 8000 rows/s, ETA 35s; 2 table(s) unfinished; read while streaming since the slot's WAL was in danger
server       PostgreSQL 17.2, primary, wal_sender_timeout 1min, max_slot_wal_keep_size 4096MB
slot WAL     wal_status reserved, safe_wal_size 3.0 GiB, retained 1.5 KiB (polled 2026-12-01 14:59:56Z, 4s ago)
`},
		{name: "offline, streaming without an endpoint, snapshot unfinished", r: offlineReport(func(r *statusReport) {
			r.Start.Checkpoint.Snapshot = []checkpoint.TableSnapshot{{Schema: "public", Table: "orders", Pages: 40, ChunkPages: 10,
				Done: []checkpoint.ChunkRange{{From: 0, To: 2}}}}
		}), want: `pgstream status: healthy (exit 0)

from         the server and the checkpoint; http.listen is not set
source       postgres://pgstream:xxxxx@db:5432/app
system       7301234567890123456, timeline 1, database app
slot         pgstream, publication pgstream: active (PID 4242): a pgstream, or another consumer, streams from it
checkpoint   /var/lib/pgstream/checkpoint.json: flush 0/1A2B3C8, commit 0/1A2B3A0, taken 2026-12-01 14:59:58Z, 2s ago
start        a run resumes from 0/1A2B3C8, skipping transactions committed at or before 0/1A2B3A0
positions    durable 0/1A2B3C8 (newest commit 0/1A2B3A0), slot confirmed 0/1A2B3C8, server WAL end 0/1A2B400
lag          56 B (server WAL end − checkpoint flush)
snapshot     public.orders unfinished: 2 of 4 chunks done
server       PostgreSQL 17.2, primary, wal_sender_timeout 1min, max_slot_wal_keep_size 4096MB
slot WAL     wal_status reserved, safe_wal_size 3.0 GiB, retained 1.5 KiB (polled 2026-12-01 14:59:56Z, 4s ago)
`},
		{name: "offline, PostgreSQL 18, slot invalidated for idle time", r: offlineReport(func(r *statusReport) {
			r.Start.Slot.Active, r.Start.Slot.ActivePID, r.Start.Slot.WALStatus, r.Start.Slot.InvalidationReason = false, 0, "lost", "idle_timeout"
			r.Refusal = &replication.Error{Kind: replication.ErrSlotLost, Check: "slot", Msg: "replication slot pgstream is lost (invalidated: idle_timeout)"}
			since := statusNow.Add(-2 * time.Hour)
			srv := polledSlot("lost")
			srv.ServerVersion, srv.SafeWALSize, srv.Conflicting, srv.InactiveSince = "18.4", nil, new(bool), &since
			srv.InvalidationReason, srv.IdleReplicationSlotTimeout, srv.IdleTimeoutSeconds = "idle_timeout", "1h", 3600
			r.Status.Server = srv
		}), want: `pgstream status: broken (exit 2)
  - a run would refuse to start: replication slot pgstream is lost (invalidated: idle_timeout)

from         the server and the checkpoint; http.listen is not set
source       postgres://pgstream:xxxxx@db:5432/app
system       7301234567890123456, timeline 1, database app
slot         pgstream, publication pgstream: inactive: nothing streams from it
checkpoint   /var/lib/pgstream/checkpoint.json: flush 0/1A2B3C8, commit 0/1A2B3A0, taken 2026-12-01 14:59:58Z, 2s ago
start        a run would refuse to start (see above)
positions    durable 0/1A2B3C8 (newest commit 0/1A2B3A0), slot confirmed 0/1A2B3C8, server WAL end 0/1A2B400
lag          56 B (server WAL end − checkpoint flush)
snapshot     none unfinished
server       PostgreSQL 18.4, primary, wal_sender_timeout 1min, max_slot_wal_keep_size 4096MB, idle_replication_slot_timeout 1h
slot WAL     wal_status lost, safe_wal_size unlimited, retained 1.5 KiB (polled 2026-12-01 14:59:56Z, 4s ago)
invalidated  idle_timeout
inactive     since 2026-12-01 13:00:00Z, 2h0m0s ago
`},
		{name: "offline, slot dropped", r: offlineReport(func(r *statusReport) {
			r.Offline = "the operations endpoint (http.listen :9187) did not answer: connection refused"
			r.Start.Slot = replication.SlotInfo{Name: "pgstream"}
			r.Refusal = fmt.Errorf("%w: slot \"pgstream\" was dropped after checkpoint 0/1A2B3C8", checkpoint.ErrSlotMissing)
			r.Status.Server = inspect.SlotState{ServerVersion: "17.2"}
		}), want: `pgstream status: broken (exit 2)
  - a run would refuse to start: replication slot missing: slot "pgstream" was dropped after checkpoint 0/1A2B3C8

from         the server and the checkpoint; the operations endpoint (http.listen :9187) did not answer: connection refused
source       postgres://pgstream:xxxxx@db:5432/app
system       7301234567890123456, timeline 1, database app
slot         pgstream, publication pgstream: missing
checkpoint   /var/lib/pgstream/checkpoint.json: flush 0/1A2B3C8, commit 0/1A2B3A0, taken 2026-12-01 14:59:58Z, 2s ago
start        a run would refuse to start (see above)
positions    durable 0/1A2B3C8 (newest commit 0/1A2B3A0), no slot, server WAL end 0/1A2B400
lag          56 B (server WAL end − checkpoint flush)
snapshot     none unfinished
server       PostgreSQL 17.2
`},
		{name: "offline, never started", r: offlineReport(func(r *statusReport) {
			r.Start.Slot = replication.SlotInfo{Name: "pgstream"}
			r.Start.Checkpoint, r.Start.Found, r.Start.CreateSlot, r.Start.Snapshot = checkpoint.Checkpoint{}, false, true, true
			r.Status.Lag.Bytes = 0
			r.Status.Server = inspect.SlotState{ServerVersion: "17.2"}
		}), want: `pgstream status: degraded (exit 1)
  - nothing streams: slot pgstream does not exist yet; pgstream run creates it

from         the server and the checkpoint; http.listen is not set
source       postgres://pgstream:xxxxx@db:5432/app
system       7301234567890123456, timeline 1, database app
slot         pgstream, publication pgstream: missing
checkpoint   /var/lib/pgstream/checkpoint.json: none
start        a first run creates the slot, snapshots the published tables, then streams
positions    no checkpoint, no slot, server WAL end 0/1A2B400
snapshot     none unfinished
server       PostgreSQL 17.2
`},
		{name: "offline, unreachable", r: offlineReport(func(r *statusReport) {
			r.Reach = errors.New(`cannot connect to db:5432: failed to connect to "postgres://pgstream:hunter2-secret@db:5432/app": refused`)
		}), want: `pgstream status: broken (exit 2)
  - cannot reach PostgreSQL: cannot connect to db:5432: failed to connect to "postgres://pgstream:xxxxx@db:5432/app": refused

from         the server and the checkpoint; http.listen is not set
source       postgres://pgstream:xxxxx@db:5432/app
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			renderStatus(&b, tc.r, classify(tc.r, lagLimits{}), statusNow)
			if b.String() != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", b.String(), tc.want)
			}
		})
	}
}

func TestStatusJSON(t *testing.T) {
	t.Run("daemon", func(t *testing.T) {
		r := daemonReport(comp("source", false, "reconnecting"))
		r.rawStatus, _ = json.MarshalIndent(r.Status, "", "  ")
		r.rawReady, _ = json.MarshalIndent(r.Readiness, "", "  ")
		var b bytes.Buffer
		if err := writeStatusJSON(&b, r); err != nil {
			t.Fatal(err)
		}
		var got struct {
			pipeline.Status
			Readiness httpapi.Readiness `json:"readiness"`
		}
		if err := json.Unmarshal(b.Bytes(), &got); err != nil {
			t.Fatalf("%v:\n%s", err, b.String())
		}
		if got.Slot != "pgstream" || got.Positions.Durable != "0/1A2B3C8" || got.Server.WALStatus != "reserved" ||
			got.Readiness.Ready || len(got.Readiness.Components) != 1 || got.Readiness.Components[0].Reason != "reconnecting" {
			t.Errorf("JSON lost the daemon's picture:\n%s", b.String())
		}
	})
	t.Run("offline", func(t *testing.T) {
		r := offlineReport(func(r *statusReport) {
			r.Start.Checkpoint.Snapshot = []checkpoint.TableSnapshot{{Schema: "public", Table: "orders", Pages: 40, ChunkPages: 10}}
		})
		var b bytes.Buffer
		if err := writeStatusJSON(&b, r); err != nil {
			t.Fatal(err)
		}
		var got struct {
			pipeline.Status
			Readiness *httpapi.Readiness `json:"readiness"`
			Offline   struct {
				Source     string `json:"source"`
				SlotActive bool   `json:"slot_active"`
				StartFrom  string `json:"start_from"`
				Unfinished []struct {
					Table  string `json:"table"`
					Chunks uint32 `json:"chunks"`
				} `json:"snapshot_unfinished"`
			} `json:"offline"`
		}
		if err := json.Unmarshal(b.Bytes(), &got); err != nil {
			t.Fatalf("%v:\n%s", err, b.String())
		}
		if got.Slot != "pgstream" || got.Lag.Bytes != 56 || got.Readiness != nil || !got.Offline.SlotActive || got.Offline.StartFrom != "0/1A2B3C8" ||
			len(got.Offline.Unfinished) != 1 || got.Offline.Unfinished[0].Table != "public.orders" || got.Offline.Unfinished[0].Chunks != 4 {
			t.Errorf("offline JSON:\n%s", b.String())
		}
	})
	t.Run("no secret", func(t *testing.T) {
		r := offlineReport(func(r *statusReport) { r.Reach = errors.New("connect to postgres://u:hunter2-secret@db/app: refused") })
		var b bytes.Buffer
		if err := writeStatusJSON(&b, r); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(b.String(), "hunter2") || !strings.Contains(b.String(), "u:xxxxx@db") {
			t.Errorf("the password is not redacted:\n%s", b.String())
		}
	})
}

func TestEndpointURL(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:9187":    "http://127.0.0.1:9187",
		":9187":             "http://127.0.0.1:9187",
		"0.0.0.0:9187":      "http://127.0.0.1:9187",
		"[::]:9187":         "http://[::1]:9187",
		"[::1]:9187":        "http://[::1]:9187",
		"ops.internal:9187": "http://ops.internal:9187",
		"10.1.2.3:80":       "http://10.1.2.3:80",
	} {
		if got, err := endpointURL(listen); err != nil || got != want {
			t.Errorf("endpointURL(%q) = %q, %v; want %q", listen, got, err, want)
		}
	}
	if _, err := endpointURL("9187"); err == nil {
		t.Error("endpointURL(\"9187\"): no error")
	}
}

// closedAddr is a local address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestGatherStatus asks a real operations endpoint, and falls back to the server (out of reach
// here) when there is none, it is not pgstream's, or it belongs to another slot.
func TestGatherStatus(t *testing.T) {
	board := health.NewBoard(nil)
	board.Set(pipeline.ComponentSource, true, "")
	board.Set(pipeline.ComponentSlot, false, "wal_status unreserved")
	serve := func(slot string) *httptest.Server {
		st := pipeline.Status{Slot: slot, Publication: "pgstream", Connected: true}
		srv := httptest.NewServer(httpapi.Handler(httpapi.Options{Metrics: metrics.New("test"), Health: board, Liveness: time.Minute,
			Status: func() any { return st }}))
		t.Cleanup(srv.Close)
		return srv
	}
	cfg := func(listen string) *Config {
		c := &Config{}
		c.Source.URL = "postgres://pgstream:hunter2-secret@" + closedAddr(t) + "/app?sslmode=disable"
		c.Source.ConnectTimeout = 5 * time.Second
		c.Checkpoint.Keys = map[string]any{"path": filepath.Join(t.TempDir(), "checkpoint.json")}
		c.HTTP.Listen = listen
		return c
	}
	ctx := context.Background()

	ours := serve(replication.DefaultSlot)
	r := gatherStatus(ctx, cfg(strings.TrimPrefix(ours.URL, "http://")))
	if r.Endpoint != ours.URL || r.Readiness.Ready || len(r.Readiness.Components) != 2 || r.Status.Slot != replication.DefaultSlot {
		t.Fatalf("from the endpoint: %+v", r)
	}
	if v := classify(r, lagLimits{}); v.Code != statusDegraded {
		t.Errorf("a daemon whose slot is not ready: %+v", v)
	}

	notOurs := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notOurs.Close)
	for name, tc := range map[string]struct {
		listen, why string
	}{
		"no endpoint":     {"", "http.listen is not set"},
		"nothing listens": {closedAddr(t), "did not answer"},
		"another program": {strings.TrimPrefix(notOurs.URL, "http://"), "404 Not Found"},
		"another slot":    {strings.TrimPrefix(serve("other").URL, "http://"), "streaming slot other, not pgstream"},
	} {
		t.Run(name, func(t *testing.T) {
			r := gatherStatus(ctx, cfg(tc.listen))
			if r.Endpoint != "" || !strings.Contains(r.Offline, tc.why) || r.Reach == nil {
				t.Fatalf("want the offline picture because %q, got endpoint %q, offline %q, reach %v", tc.why, r.Endpoint, r.Offline, r.Reach)
			}
			v := classify(r, lagLimits{})
			var b bytes.Buffer
			renderStatus(&b, r, v, time.Now())
			if v.Code != statusBroken || !strings.Contains(b.String(), "cannot reach PostgreSQL") || strings.Contains(b.String(), "hunter2") {
				t.Errorf("exit %d:\n%s", v.Code, b.String())
			}
		})
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[float64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", gib: "1.0 GiB", -2 * gib: "-2.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%v) = %q, want %q", n, got, want)
		}
	}
}

// TestStatusStoreSavesNothing: status hands Inspect a store that refuses to save. (That Inspect
// compares the checkpoint with a WAL end read after loading it is TestInspectComparesWithTheWALEnd-
// AfterTheCheckpoint in internal/e2e.)
func TestStatusStoreSavesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoint.json")
	opened, err := (&checkpointSection{Keys: map[string]any{"path": path}}).open(nil)
	if err != nil {
		t.Fatal(err)
	}
	store := readOnlyStore{opened}
	cp := checkpoint.Checkpoint{SystemID: "7301", Timeline: 1, Database: "app", Slot: "pgstream", CommitLSN: 0x2000, FlushLSN: 0x2100}
	if err := store.Save(cp); err == nil {
		t.Error("Save succeeded: status must change nothing")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the checkpoint file exists after a refused Save: %v", err)
	}
}

// With source.failover on, what failover still lacks makes the state degraded, and the findings
// are printed and carried in the JSON, for the daemon's picture and the offline one alike.
func TestStatusFailover(t *testing.T) {
	findings := []inspect.Finding{
		{OK: true, Subject: "failover: primary p:5432", Message: "slot pgstream is a failover slot"},
		{Subject: "failover: standby s:5432", Message: "NOT READY FOR FAILOVER: the standby has no copy of slot pgstream", Fix: "wait"},
	}
	for name, r := range map[string]*statusReport{
		"daemon":  daemonReport(comp("source", true, "")),
		"offline": offlineReport(func(*statusReport) {}),
	} {
		t.Run(name, func(t *testing.T) {
			r.Failover = findings
			r.Status.Server.Failover = new(bool)
			*r.Status.Server.Failover = true
			v := classify(r, lagLimits{})
			if v.Code != statusDegraded || len(v.Reasons) != 1 || !strings.Contains(v.Reasons[0], "standby s:5432: NOT READY FOR FAILOVER") {
				t.Fatalf("verdict = %+v", v)
			}
			var b bytes.Buffer
			renderStatus(&b, r, v, statusNow)
			for _, want := range []string{"failover     ok   failover: primary p:5432: slot pgstream is a failover slot",
				"WARN failover: standby s:5432: NOT READY FOR FAILOVER", "failover true, synchronized_standby_slots (empty)"} {
				if !strings.Contains(b.String(), want) {
					t.Errorf("status does not say %q:\n%s", want, b.String())
				}
			}
			r.rawStatus, _ = json.Marshal(r.Status)
			r.rawReady, _ = json.Marshal(r.Readiness)
			b.Reset()
			if err := writeStatusJSON(&b, r); err != nil {
				t.Fatal(err)
			}
			var got struct {
				Server   inspect.SlotState `json:"server"`
				Failover []findingJSON     `json:"failover"`
			}
			if err := json.Unmarshal(b.Bytes(), &got); err != nil {
				t.Fatalf("%v:\n%s", err, b.String())
			}
			if len(got.Failover) != 2 || got.Failover[1].OK || got.Failover[1].Fix != "wait" || got.Server.Failover == nil || !*got.Server.Failover {
				t.Errorf("JSON:\n%s", b.String())
			}
		})
	}
}
