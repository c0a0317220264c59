package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/internal/metrics"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestEndpoints(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	board := health.NewBoard(func() time.Time { return now })
	h := Handler(Options{Metrics: metrics.New("test"), Health: board, Liveness: time.Minute,
		Status: func() any { return map[string]string{"slot": "s"} }})

	// Nothing reported yet: not ready (a pipeline reports "source" at once), alive.
	if code, _ := get(t, h, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with no component: %d", code)
	}
	board.Set("source", true, "")
	board.Set("sink:kafka", true, "")
	if code, body := get(t, h, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz all ready: %d %s", code, body)
	}
	board.Set("sink:kafka", false, "failing since …: broker refused")
	code, body := get(t, h, "/readyz")
	var r Readiness
	if code != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &r) != nil || r.Ready ||
		len(r.Components) != 2 || r.Components[0].Name != "sink:kafka" || r.Components[0].OK || !strings.Contains(r.Components[0].Reason, "broker refused") {
		t.Fatalf("/readyz with a failing sink: %d %s", code, body)
	}

	board.Beat("replication")
	if code, body := get(t, h, "/healthz"); code != http.StatusOK || !strings.Contains(body, `"alive": true`) {
		t.Fatalf("/healthz with a fresh beat: %d %s", code, body)
	}
	now = now.Add(2 * time.Minute)
	if code, body := get(t, h, "/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, `"replication"`) {
		t.Fatalf("/healthz with a loop silent for 2m: %d %s", code, body)
	}
	board.Done("replication")
	if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz after the loop ended: %d", code)
	}

	if code, body := get(t, h, "/status"); code != http.StatusOK || !strings.Contains(body, `"slot": "s"`) {
		t.Fatalf("/status: %d %s", code, body)
	}
	if code, body := get(t, h, "/metrics"); code != http.StatusOK || !strings.Contains(body, `pgstream_build_info{goversion=`) {
		t.Fatalf("/metrics: %d %.200s", code, body)
	}
}
