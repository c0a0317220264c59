// Package metrics defines pgstream's Prometheus metrics (docs/operations.md lists them). The names
// are a contract with dashboards and alert rules: change them only with those.
//
// The parts of the pipeline update the counters and histograms where their state lives (per batch,
// never per event, on the hot path); gauges that a part already holds as a number are read at
// scrape time through the Source the pipeline gives Register. A nil *Metrics is valid: every method
// then does nothing, so code paths need no checks.
package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Source is what the pipeline reports at scrape time. Every method must be safe for concurrent
// use and cheap.
type Source interface {
	// LagBytes is the newest server WAL position heard of minus the durable position (0 when
	// nothing is known yet).
	LagBytes() float64
	// LagSeconds is the age of the oldest committed transaction received but not yet held by every
	// sink; 0 when nothing is pending.
	LagSeconds() float64
	// InFlightBytes is the encoded bytes handed to sinks and not yet acknowledged.
	InFlightBytes() float64
	// DurableLSN is the checkpoint's flush position.
	DurableLSN() float64
	// Connected is 1 while the replication connection streams, else 0.
	Connected() float64
	// Transactions, ReceivedBytes and Reconnects are counters the pipeline keeps.
	Transactions() float64
	ReceivedBytes() float64
	Reconnects() float64
	// SnapshotChunksRemaining is the number of snapshot chunks not yet acknowledged.
	SnapshotChunksRemaining() float64
}

// Metrics holds pgstream's metrics and the registry they are exposed from.
type Metrics struct {
	Registry *prometheus.Registry

	commitToAck  prometheus.Histogram
	events       *prometheus.CounterVec
	writeSeconds *prometheus.HistogramVec
	sinkErrors   *prometheus.CounterVec
	snapshotRows *prometheus.CounterVec
	guardSwitch  prometheus.Counter

	slotRetained  prometheus.Gauge
	slotSafe      prometheus.Gauge
	slotSafeKnown bool
	slotStatus    *prometheus.GaugeVec
	heartbeatRTT  prometheus.Gauge
}

// New returns the metrics on a new registry that also holds the Go runtime and process collectors
// and pgstream_build_info.
func New(version string) *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		commitToAck: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pgstream_commit_to_ack_seconds",
			Help:    "Commit time of a transaction to its durable acknowledgement by every sink.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgstream_events_total",
			Help: "Events acknowledged by a sink, by sink and envelope op (c, u, d, t, m, r, b, e).",
		}, []string{"sink", "op"}),
		writeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pgstream_sink_write_duration_seconds",
			Help:    "Duration of one sink Write (one or more merged batches).",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"sink"}),
		sinkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgstream_sink_errors_total",
			Help: "Failed sink writes.",
		}, []string{"sink"}),
		snapshotRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgstream_snapshot_rows_total",
			Help: "Snapshot rows handed to the sinks, by table.",
		}, []string{"table"}),
		guardSwitch: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgstream_snapshot_guard_switches_total",
			Help: "Initial snapshots that stopped reading inside the slot's exported snapshot because the slot's WAL was in danger, and read the rest while streaming.",
		}),
		slotRetained: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgstream_slot_retained_wal_bytes",
			Help: "WAL the slot holds back: pg_current_wal_lsn() - restart_lsn (polled).",
		}),
		slotSafe: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgstream_slot_safe_wal_bytes",
			Help: "The slot's safe_wal_size: WAL that can still be written before the slot is in danger (absent when unlimited).",
		}),
		slotStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pgstream_slot_wal_status",
			Help: "1 for the slot's current wal_status (reserved, extended, unreserved, lost).",
		}, []string{"status"}),
		heartbeatRTT: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgstream_heartbeat_round_trip_seconds",
			Help: "Time from writing the last heartbeat to receiving it through the slot, on the server's clock.",
		}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pgstream_build_info",
		Help: "1, labelled with the build's version and Go version.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		build, m.commitToAck, m.events, m.writeSeconds, m.sinkErrors, m.snapshotRows, m.guardSwitch, m.slotRetained, m.slotStatus, m.heartbeatRTT)
	return m
}

// Register exposes the gauges and counters src holds, read at scrape time.
func (m *Metrics) Register(src Source) {
	if m == nil {
		return
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	m.Registry.MustRegister(
		gauge("pgstream_replication_lag_bytes", "Newest server WAL position heard of (XLogData or keepalive WAL end) minus the durable position.", src.LagBytes),
		gauge("pgstream_replication_lag_seconds", "Age of the oldest committed transaction received but not yet held by every sink; 0 when nothing is pending.", src.LagSeconds),
		gauge("pgstream_in_flight_bytes", "Encoded bytes handed to sinks and not yet acknowledged.", src.InFlightBytes),
		gauge("pgstream_durable_lsn", "The checkpoint's flush position, as a number.", src.DurableLSN),
		gauge("pgstream_connected", "1 while the replication connection streams.", src.Connected),
		gauge("pgstream_snapshot_chunks_remaining", "Snapshot chunks not yet acknowledged.", src.SnapshotChunksRemaining),
		counter("pgstream_transactions_total", "Transactions received and handed to the sinks.", src.Transactions),
		counter("pgstream_received_bytes_total", "Replication bytes received.", src.ReceivedBytes),
		counter("pgstream_reconnects_total", "Replication reconnects.", src.Reconnects),
	)
}

// EventOps are the envelope ops that label pgstream_events_total.
const EventOps = "cudtmrbe"

// Sinks exports the series of each named sink at zero: pgstream_events_total for every op,
// pgstream_sink_write_duration_seconds and pgstream_sink_errors_total. A dashboard or an alert on
// them then sees 0 from the first scrape, not nothing until the first event or failure.
func (m *Metrics) Sinks(names ...string) {
	if m == nil {
		return
	}
	for _, sink := range names {
		m.writeSeconds.WithLabelValues(sink)
		m.sinkErrors.WithLabelValues(sink)
		for _, op := range EventOps {
			m.events.WithLabelValues(sink, string(op))
		}
	}
}

// CommitAcked observes the time from a transaction's commit to its durable acknowledgement.
func (m *Metrics) CommitAcked(seconds float64) {
	if m != nil {
		m.commitToAck.Observe(max(seconds, 0))
	}
}

// SinkWrite records one sink Write: its duration, its events by op (ops[i] events of op byte i),
// and whether it failed.
func (m *Metrics) SinkWrite(sink string, seconds float64, ops *[256]int, failed bool) {
	if m == nil {
		return
	}
	m.writeSeconds.WithLabelValues(sink).Observe(seconds)
	if failed {
		m.sinkErrors.WithLabelValues(sink).Inc()
		return
	}
	for op, n := range ops {
		if n > 0 {
			m.events.WithLabelValues(sink, string(rune(op))).Add(float64(n))
		}
	}
}

// SnapshotRows counts snapshot rows of a table handed to the sinks.
func (m *Metrics) SnapshotRows(table string, n int) {
	if m != nil && n > 0 {
		m.snapshotRows.WithLabelValues(table).Add(float64(n))
	}
}

// SnapshotGuardSwitch counts an initial snapshot that gave way to streaming because the slot's WAL
// was in danger.
func (m *Metrics) SnapshotGuardSwitch() {
	if m != nil {
		m.guardSwitch.Inc()
	}
}

// Slot records the polled state of the replication slot. safe is nil when safe_wal_size is NULL
// (no max_slot_wal_keep_size): the metric is then absent.
func (m *Metrics) Slot(retained float64, safe *float64, walStatus string) {
	if m == nil {
		return
	}
	m.slotRetained.Set(retained)
	switch {
	case safe != nil && !m.slotSafeKnown:
		m.Registry.MustRegister(m.slotSafe)
		m.slotSafeKnown = true
	case safe == nil && m.slotSafeKnown:
		m.Registry.Unregister(m.slotSafe)
		m.slotSafeKnown = false
	}
	if safe != nil {
		m.slotSafe.Set(*safe)
	}
	for _, s := range []string{"reserved", "extended", "unreserved", "lost"} {
		v := 0.0
		if s == walStatus {
			v = 1
		}
		m.slotStatus.WithLabelValues(s).Set(v)
	}
}

// HeartbeatRoundTrip records the round trip of the newest heartbeat.
func (m *Metrics) HeartbeatRoundTrip(seconds float64) {
	if m != nil {
		m.heartbeatRTT.Set(seconds)
	}
}
