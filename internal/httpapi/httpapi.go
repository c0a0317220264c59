// Package httpapi serves pgstream's operations endpoint: GET /metrics (Prometheus text), /healthz
// (liveness), /readyz (readiness) and /status (JSON for people and scripts). docs/operations.md
// describes each. Nothing it serves holds a secret: URLs are redacted before they reach it.
package httpapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/internal/metrics"
)

// Options are what the endpoint serves.
type Options struct {
	Metrics *metrics.Metrics
	Health  *health.Board
	// Status returns the value /status serves as JSON. Called for each request; must be safe for
	// concurrent use.
	Status func() any
	// Liveness is how long a loop may go without a beat before /healthz answers 503.
	Liveness time.Duration
}

// Readiness is the body of /readyz.
type Readiness struct {
	Ready      bool            `json:"ready"`
	Components []health.Status `json:"components"`
}

// Handler returns the endpoint's handler.
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		wedged := o.Health.Wedged(o.Liveness)
		body := map[string]any{"alive": len(wedged) == 0}
		code := http.StatusOK
		if len(wedged) > 0 {
			body["wedged"] = wedged
			body["reason"] = "no progress for more than " + o.Liveness.String()
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, body)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ready, comps := o.Health.Ready()
		code := http.StatusOK
		if !ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, Readiness{Ready: ready, Components: comps})
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, o.Status())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
