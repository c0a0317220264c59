package metrics_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgstream/pgstream/internal/metrics"
)

// monitoring is docs/monitoring, seen from this package's directory (go test runs there).
var monitoring = filepath.Join("..", "..", "docs", "monitoring")

// contract is every pgstream metric that dashboards and alert rules may rely on. A rename in
// metrics.go fails TestExpositionHoldsTheContract until this list, docs/operations.md and
// docs/monitoring agree with it.
var contract = []string{
	"pgstream_replication_lag_bytes",
	"pgstream_replication_lag_seconds",
	"pgstream_commit_to_ack_seconds",
	"pgstream_events_total",
	"pgstream_transactions_total",
	"pgstream_received_bytes_total",
	"pgstream_sink_write_duration_seconds",
	"pgstream_sink_errors_total",
	"pgstream_in_flight_bytes",
	"pgstream_durable_lsn",
	"pgstream_connected",
	"pgstream_reconnects_total",
	"pgstream_slot_retained_wal_bytes",
	"pgstream_slot_safe_wal_bytes",
	"pgstream_slot_wal_status",
	"pgstream_snapshot_rows_total",
	"pgstream_snapshot_chunks_remaining",
	"pgstream_snapshot_guard_switches_total",
	"pgstream_heartbeat_round_trip_seconds",
	"pgstream_build_info",
}

// fakeSource is a pipeline with some traffic behind it.
type fakeSource struct{}

func (fakeSource) LagBytes() float64                { return 4096 }
func (fakeSource) LagSeconds() float64              { return 0.25 }
func (fakeSource) InFlightBytes() float64           { return 65536 }
func (fakeSource) DurableLSN() float64              { return 0x1A2B3C8 }
func (fakeSource) Connected() float64               { return 1 }
func (fakeSource) Transactions() float64            { return 120 }
func (fakeSource) ReceivedBytes() float64           { return 1 << 20 }
func (fakeSource) Reconnects() float64              { return 2 }
func (fakeSource) SnapshotChunksRemaining() float64 { return 7 }

// exposition returns what GET /metrics serves for a registry on which every pgstream metric has
// a series: a registered Source and one observation of each kind.
func exposition(t *testing.T) string {
	t.Helper()
	m := metrics.New("test")
	m.Register(fakeSource{})
	m.CommitAcked(0.012)
	var ops [256]int
	ops['c'], ops['u'], ops['d'] = 10, 4, 1
	m.SinkWrite("kafka", 0.003, &ops, false)
	m.SinkWrite("kafka", 0.5, &ops, true)
	m.SinkWrite("nats", 0.002, &ops, false)
	m.SnapshotRows("public.orders", 5000)
	m.SnapshotGuardSwitch()
	safe := float64(3 << 30)
	m.Slot(1<<30, &safe, "extended")
	m.HeartbeatRoundTrip(0.08)

	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q, want the text format", ct)
	}
	return rec.Body.String()
}

var typeLine = regexp.MustCompile(`(?m)^# TYPE (\S+) (\S+)$`)

// families returns the metric families of a text exposition with their types.
func families(t *testing.T, text string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range typeLine.FindAllStringSubmatch(text, -1) {
		out[m[1]] = m[2]
	}
	if len(out) == 0 {
		t.Fatalf("no # TYPE lines in the exposition:\n%s", text)
	}
	return out
}

func TestExpositionHoldsTheContract(t *testing.T) {
	fams := families(t, exposition(t))
	for _, name := range contract {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s is not exposed (metrics.go renamed or dropped it?)", name)
		}
	}
	for name := range fams {
		if strings.HasPrefix(name, "pgstream_") && !slices.Contains(contract, name) {
			t.Errorf("%s is exposed but not in the contract list: add it here, to docs/operations.md and, where useful, to docs/monitoring", name)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s missing: the Go runtime and process collectors are not registered", name)
		}
	}
}

// promtool returns the path of promtool, or skips the test when it is not installed.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found on PATH: run `make setup` (scripts/setup.sh installs Debian's prometheus package, which holds it)")
	}
	return path
}

// runPromtool runs promtool with args and stdin; a non-zero exit fails the test with its output.
func runPromtool(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = monitoring
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// The text GET /metrics serves passes promtool's lint (naming, units, _total on counters, help).
func TestExpositionPassesPromtoolLint(t *testing.T) {
	text := exposition(t)
	out := runPromtool(t, text, "check", "metrics")
	if strings.TrimSpace(out) != "" {
		t.Fatalf("promtool check metrics:\n%s", out)
	}
}

func TestAlertRulesPassPromtool(t *testing.T) {
	promtool(t)
	t.Run("check rules", func(t *testing.T) { runPromtool(t, "", "check", "rules", "alerts.yml") })
	t.Run("test rules", func(t *testing.T) { runPromtool(t, "", "test", "rules", "alerts_test.yml") })
	t.Run("check config", func(t *testing.T) { runPromtool(t, "", "check", "config", "prometheus.yml") })
}

// The series of each configured sink are exported at 0 before its first write: an alert such as
// rate(pgstream_sink_errors_total[5m]) > 0 or a dashboard panel of events by op sees 0, not nothing.
func TestSinkSeriesExistFromTheFirstScrape(t *testing.T) {
	m := metrics.New("test")
	m.Sinks("kafka", "audit")
	var buf bytes.Buffer
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	buf.Write(rec.Body.Bytes())
	text := buf.String()
	var missing []string
	for _, sink := range []string{"kafka", "audit"} {
		want := []string{
			fmt.Sprintf(`pgstream_sink_errors_total{sink=%q} 0`, sink),
			fmt.Sprintf(`pgstream_sink_write_duration_seconds_count{sink=%q} 0`, sink),
		}
		for _, op := range metrics.EventOps {
			want = append(want, fmt.Sprintf(`pgstream_events_total{op=%q,sink=%q} 0`, string(op), sink))
		}
		for _, w := range want {
			if !strings.Contains(text, w+"\n") {
				missing = append(missing, w)
			}
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing from the first scrape:\n%s\n\nexposition:\n%s", strings.Join(missing, "\n"), text)
	}
}
