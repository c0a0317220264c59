package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/pgtest"
)

// opsBinary is the real binary running with http.listen on a cluster of the test's own.
type opsBinary struct {
	t    *testing.T
	p    *proc
	addr string
}

// startOpsBinary runs pgstream with the operations endpoint on a free port of 127.0.0.1. A port
// taken between choosing and binding makes pgstream exit with "address already in use": it is
// started again on another.
func startOpsBinary(t *testing.T, pg *pgtest.Cluster, dir string) *opsBinary {
	return startOpsBinaryWith(t, pg, dir, "ops", "")
}

// startOpsBinaryWith is startOpsBinary on the given slot (publication pgs_<slot>), with extra lines
// for the source section.
func startOpsBinaryWith(t *testing.T, pg *pgtest.Cluster, dir, slot, source string) *opsBinary {
	t.Helper()
	return startOpsBinaryOpts(t, pg, dir, opsOpts{slot: slot, source: source})
}

// opsOpts configure the binary startOpsBinaryOpts runs.
type opsOpts struct {
	slot         string // publication pgs_<slot>
	source       string // extra lines for the source section
	reconnectMax string // pipeline.reconnect_max; 1s when empty
}

// writeOpsConfig writes dir/pgstream.yaml for a binary on pg as o says, with the endpoint on addr,
// and returns its path.
func writeOpsConfig(t *testing.T, pg *pgtest.Cluster, dir, addr string, o opsOpts) string {
	t.Helper()
	if o.reconnectMax == "" {
		o.reconnectMax = "1s"
	}
	return binaryConfig{url: pg.URL("postgres"), slot: o.slot, source: "  status_interval: 200ms\n" + o.source,
		pipeline: "  checkpoint_interval: 50ms\n  reconnect_min: 100ms\n  reconnect_max: " + o.reconnectMax + "\n",
		extra:    "http:\n  listen: " + addr + "\n", jsonFormat: true}.write(t, dir)
}

// startOpsBinaryOpts is startOpsBinary as o says.
func startOpsBinaryOpts(t *testing.T, pg *pgtest.Cluster, dir string, o opsOpts) *opsBinary {
	t.Helper()
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		path := writeOpsConfig(t, pg, dir, addr, o)
		b := &opsBinary{t: t, p: startBinary(t, "run", "--config", path), addr: addr}
		deadline := time.Now().Add(60 * time.Second)
		for {
			select {
			case err := <-b.p.done:
				if strings.Contains(b.p.stderr.String(), "address already in use") && attempt < 5 {
					goto again
				}
				t.Fatalf("pgstream exited: %v\n%s", err, b.p.stderr)
			default:
			}
			if code, _ := b.get("/healthz"); code == http.StatusOK {
				return b
			}
			if time.Now().After(deadline) {
				t.Fatalf("the operations endpoint at %s did not answer within 60s", addr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	again:
	}
}

// runRefused starts the binary with the configuration in dir and the extra flags, expecting it to
// refuse to start: it returns what it printed. The endpoint listens on a port of the system's
// choosing, so that no port taken meanwhile stands in for the refusal.
func runRefused(t *testing.T, dir string, flags ...string) string {
	t.Helper()
	p := startBinary(t, append([]string{"run", "--config", filepath.Join(dir, "pgstream.yaml"), "--http.listen", "127.0.0.1:0"}, flags...)...)
	select {
	case err := <-p.done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("pgstream ended with %v, want exit code 1:\n%s", err, p.stderr)
		}
	case <-time.After(120 * time.Second):
		t.Fatalf("pgstream did not refuse to start within 120s:\n%s", p.stderr)
	}
	return p.stderr.String()
}

// wantAll fails the test unless out holds every string of want.
func wantAll(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

// get returns the status code and body of a GET, or 0 when the endpoint does not answer.
func (b *opsBinary) get(path string) (int, string) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + b.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metric returns the value of the sample named exactly (name and labels as exposed), or -1.
func (b *opsBinary) metric(sample string) float64 {
	b.t.Helper()
	_, body := b.get("/metrics")
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				b.t.Fatalf("metric %s: %v", line, err)
			}
			return v
		}
	}
	return -1
}

// waitFor polls cond every 50ms for at most timeout.
func (b *opsBinary) waitFor(what string, timeout time.Duration, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case err := <-b.p.done:
			b.t.Fatalf("pgstream exited while waiting for %s: %v\n%s", what, err, b.p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			_, ready := b.get("/readyz")
			_, status := b.get("/status")
			b.t.Fatalf("timed out after %s waiting for %s\nreadyz: %s\nstatus: %s", timeout, what, ready, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOperationsEndpoint runs the binary with http.listen through a workload and a server restart:
// the counters equal the workload's counts, lag comes back to nothing pending, readiness says why
// it is not ready while the server is down and recovers after, and /metrics passes promtool's lint.
func TestOperationsEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("stops and starts a cluster")
	}
	pg := pgtest.New(t, pgtest.Options{Settings: map[string]string{"wal_sender_timeout": "'5s'"}})
	pg.MustExec(t, "postgres", "CREATE TABLE t (id int PRIMARY KEY, v int)")
	b := startOpsBinary(t, pg, t.TempDir())
	b.waitFor("readiness", 60*time.Second, func() bool { code, _ := b.get("/readyz"); return code == http.StatusOK })
	// Before the first change, the sink's series are there at 0.
	for _, sample := range []string{`pgstream_events_total{op="d",sink="file#0"}`, `pgstream_sink_errors_total{sink="file#0"}`,
		`pgstream_sink_write_duration_seconds_count{sink="file#0"}`} {
		if got := b.metric(sample); got != 0 {
			t.Fatalf("%s is %v before any change, want 0", sample, got)
		}
	}

	const txs, rows = 200, 5
	for i := 0; i < txs; i++ {
		pg.MustExec(t, "postgres", fmt.Sprintf("INSERT INTO t SELECT g, 0 FROM generate_series(%d, %d) g", i*rows+1, (i+1)*rows))
	}
	b.waitFor("every insert acknowledged by the file sink", 60*time.Second, func() bool {
		return b.metric(`pgstream_events_total{op="c",sink="file#0"}`) == txs*rows
	})
	if got := b.metric("pgstream_transactions_total"); got < txs {
		t.Fatalf("pgstream_transactions_total %v after %d transactions", got, txs)
	}
	if got := b.metric("pgstream_commit_to_ack_seconds_count"); got < txs {
		t.Fatalf("pgstream_commit_to_ack_seconds_count %v after %d transactions", got, txs)
	}
	b.waitFor("lag back to nothing pending", 60*time.Second, func() bool {
		return b.metric("pgstream_replication_lag_seconds") == 0 && b.metric("pgstream_in_flight_bytes") == 0 &&
			b.metric("pgstream_replication_lag_bytes") < 1<<20
	})
	if b.metric("pgstream_connected") != 1 || b.metric(`pgstream_sink_errors_total{sink="file#0"}`) > 0 {
		t.Fatalf("connected %v, sink errors %v", b.metric("pgstream_connected"), b.metric(`pgstream_sink_errors_total{sink="file#0"}`))
	}
	b.waitFor("the slot's first poll", 60*time.Second, func() bool {
		return b.metric(`pgstream_slot_wal_status{status="reserved"}`) == 1
	})
	var st struct {
		Slot      string `json:"slot"`
		Connected bool   `json:"connected"`
		Positions struct {
			Durable string `json:"durable"`
		} `json:"positions"`
		Server struct {
			WalSenderTimeout string `json:"wal_sender_timeout"`
		} `json:"server"`
	}
	if code, body := b.get("/status"); code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil ||
		st.Slot != "ops" || !st.Connected || st.Positions.Durable == "0/0" || st.Server.WalSenderTimeout != "5s" {
		t.Fatalf("/status (%d): %s", code, body)
	}
	lintMetrics(t, b)

	// The server goes away: readiness names the source; it comes back: ready again, one reconnect.
	if err := pg.Stop("fast"); err != nil {
		t.Fatal(err)
	}
	b.waitFor("readiness to name the source", 60*time.Second, func() bool {
		code, body := b.get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"name": "source"`) && strings.Contains(body, "reconnecting")
	})
	if got := b.metric("pgstream_connected"); got != 0 {
		t.Fatalf("pgstream_connected %v while the server is down", got)
	}
	if code, body := b.get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d while reconnecting: %s", code, body)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	b.waitFor("readiness after the server came back", 60*time.Second, func() bool {
		code, _ := b.get("/readyz")
		return code == http.StatusOK
	})
	if got := b.metric("pgstream_reconnects_total"); got < 1 {
		t.Fatalf("pgstream_reconnects_total %v after a server restart", got)
	}
	stopBinary(t, b.p)
}

// lintMetrics runs promtool check metrics on the live exposition, where promtool is installed
// (scripts/setup.sh installs it).
func lintMetrics(t *testing.T, b *opsBinary) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not found (make setup installs it): the exposition was not linted")
		return
	}
	_, body := b.get("/metrics")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
}

// TestHeartbeats leaves the published tables idle: heartbeats are written, come back through the
// slot (their round trip is measured), keep the component ready and never reach the sink. With a
// heartbeat_query that writes a table outside the publication nothing comes back, and readiness
// names the heartbeat.
func TestHeartbeats(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a heartbeat to be overdue")
	}
	pg := pgtest.New(t, pgtest.Options{})
	pg.MustExec(t, "postgres", "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE outside (at timestamptz)")
	dir := t.TempDir()
	b := startOpsBinaryWith(t, pg, dir, "hb", "  heartbeat_interval: 1s\n")
	b.waitFor("a heartbeat's round trip", 60*time.Second, func() bool {
		return b.metric("pgstream_heartbeat_round_trip_seconds") > 0
	})
	if code, body := b.get("/readyz"); code != http.StatusOK || !strings.Contains(body, `"name": "heartbeat"`) {
		t.Fatalf("/readyz %d with heartbeats coming back: %s", code, body)
	}
	stopBinary(t, b.p)
	for _, e := range readEvents(t, filepath.Join(dir, "changes.jsonl")) {
		t.Fatalf("the sink got an event although the tables were idle and heartbeat_to_sinks is off: %s", e.Raw)
	}

	if pg.Version < 15 {
		// Before 15, pgoutput sends the empty BEGIN/COMMIT of a transaction that changed no
		// published table, so such a heartbeat does come back.
		t.Logf("PostgreSQL %d sends empty transactions: the heartbeat into an unpublished table comes back", pg.Version)
		return
	}
	dir = t.TempDir()
	b = startOpsBinaryWith(t, pg, dir, "hb_outside", "  tables: [public.t]\n"+
		"  heartbeat_interval: 1s\n  heartbeat_query: INSERT INTO outside VALUES (now())\n")
	b.waitFor("readiness to name the heartbeat that does not come back", 90*time.Second, func() bool {
		code, body := b.get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "has not come back through the slot")
	})
	pg.MustExec(t, "postgres", "INSERT INTO t VALUES (1)")
	b.waitFor("readiness once a transaction came through", 60*time.Second, func() bool {
		code, _ := b.get("/readyz")
		return code == http.StatusOK
	})
	stopBinary(t, b.p)
}

// TestIdleSlotReleasesWAL leaves the published tables idle while another database of the cluster
// writes 256 MiB of WAL: pgstream confirms the keepalives' positions while nothing is open or in
// flight, so the WAL its slot holds back falls under 64 MiB again. Heartbeats are off: they would
// move the slot too, and this guards the keepalive path on its own.
func TestIdleSlotReleasesWAL(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 256 MiB of WAL")
	}
	pg := pgtest.New(t, pgtest.Options{Settings: map[string]string{"max_wal_size": "'2GB'"}})
	pg.MustExec(t, "postgres", "CREATE TABLE t (id int PRIMARY KEY)")
	pg.MustExec(t, "postgres", "CREATE DATABASE other")
	b := startOpsBinaryWith(t, pg, t.TempDir(), "idle", "  heartbeat_interval: -1s\n")
	b.waitFor("readiness", 60*time.Second, func() bool { code, _ := b.get("/readyz"); return code == http.StatusOK })
	retained := func() int64 {
		v, err := pg.Query("postgres", "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = 'idle'")
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("retained WAL %q: %v", v, err)
		}
		return n
	}
	pg.MustExec(t, "other", "CREATE TABLE filler (v text)")
	start, _ := pg.Query("postgres", "SELECT pg_current_wal_lsn()")
	for {
		pg.MustExec(t, "other", "INSERT INTO filler SELECT repeat(md5(g::text), 32) FROM generate_series(1, 20000) g")
		written, err := pg.Query("postgres", "SELECT (pg_current_wal_lsn() - '"+start+"')::bigint")
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := strconv.ParseInt(written, 10, 64); n >= 256<<20 {
			break
		}
	}
	b.waitFor("the slot's retained WAL under 64 MiB", 120*time.Second, func() bool { return retained() < 64<<20 })
	t.Logf("retained WAL after 256 MiB written elsewhere: %d bytes", retained())
	stopBinary(t, b.p)
}
