package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/internal/httpapi"
	"github.com/pgstream/pgstream/internal/metrics"
	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
)

// lagProbe scrapes a pipeline's /metrics and reads the server's view of its slot around each scrape.
type lagProbe struct {
	t    *testing.T
	url  string // the endpoint's /metrics
	slot string
}

// scrape returns the value of each sample named in names from one GET of /metrics.
func (p *lagProbe) scrape(names ...string) []float64 {
	p.t.Helper()
	resp, err := http.Get(p.url)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	out := make([]float64, len(names))
	for i, name := range names {
		out[i] = -1
		for _, line := range strings.Split(string(body), "\n") {
			if rest, ok := strings.CutPrefix(line, name+" "); ok {
				if out[i], err = strconv.ParseFloat(strings.TrimSpace(rest), 64); err != nil {
					p.t.Fatalf("%s: %v", line, err)
				}
			}
		}
		if out[i] < 0 {
			p.t.Fatalf("/metrics has no %s:\n%s", name, body)
		}
	}
	return out
}

// serverView is the slot as the server sees it: its WAL position, the position pgstream confirmed,
// and the received position and send time of pgstream's newest status update.
type serverView struct {
	cur, confirmed, written lsn.LSN
	reply                   time.Time
	flushed                 lsn.LSN // the flushed position of that status update
}

func (p *lagProbe) server() serverView {
	p.t.Helper()
	rows, err := cluster.QueryRows("postgres", fmt.Sprintf(`SELECT pg_current_wal_lsn(), s.confirmed_flush_lsn, r.write_lsn, r.flush_lsn,
  (extract(epoch FROM r.reply_time) * 1000000)::bigint
FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = '%s'`, p.slot))
	if err != nil {
		p.t.Fatal(err)
	}
	if len(rows) != 1 {
		p.t.Fatalf("slot %s has no walsender", p.slot)
	}
	var v serverView
	for i, dst := range []*lsn.LSN{&v.cur, &v.confirmed, &v.written, &v.flushed} {
		if *dst, err = lsn.Parse(rows[0][i]); err != nil {
			p.t.Fatalf("%q: %v", rows[0][i], err)
		}
	}
	us, err := strconv.ParseInt(rows[0][4], 10, 64)
	if err != nil {
		p.t.Fatalf("reply_time %q: %v", rows[0][4], err)
	}
	v.reply = time.UnixMicro(us)
	return v
}

// statusAfter waits for a status update from pgstream whose durable position was read after at:
// one sent after at may have read it just before, the one after that did not. It returns that
// update as the server recorded it.
func (p *lagProbe) statusAfter(at time.Time) serverView {
	p.t.Helper()
	var first time.Time
	var v serverView
	waitUntil(p.t, 60*time.Second, "two status updates after the scrape", nil, func() bool {
		v = p.server()
		if first.IsZero() && v.reply.After(at) {
			first = v.reply
		}
		return !first.IsZero() && v.reply.After(first)
	})
	return v
}

// check scrapes pgstream_replication_lag_bytes between two reads of the server and asserts that
// it agrees with the server's own lag, pg_current_wal_lsn() - confirmed_flush_lsn, within the
// WAL written in the status intervals around the scrape:
//
//   - above, by no more than the WAL written during the scrape (the lag pgstream sees is its newest
//     server WAL end, never past the server's, minus its durable position, never behind what it
//     confirmed);
//   - below, by no more than the WAL pgstream had not yet reported receiving before the scrape,
//     plus what the first status update after it confirmed beyond the confirmed position before.
//
// It returns the lag scraped and the server's lag before the scrape.
func (p *lagProbe) check(what string) (scraped, server float64) {
	p.t.Helper()
	before := p.server()
	m := p.scrape("pgstream_replication_lag_bytes")[0]
	scrapedAt := time.Now()
	after := p.server()
	next := p.statusAfter(scrapedAt)
	lag := float64(before.cur) - float64(before.confirmed)
	above := float64(after.cur) - float64(before.cur)
	below := (float64(before.cur) - float64(before.written)) + (float64(next.flushed) - float64(before.confirmed))
	p.t.Logf("%s: lag_bytes %.0f, server lag %.0f (tolerance: %.0f below, %.0f above)", what, m, lag, below, above)
	if m > lag+above || m < lag-below {
		p.t.Fatalf("%s: pgstream_replication_lag_bytes %.0f disagrees with the server's lag %.0f (%s - %s): allowed %.0f to %.0f",
			what, m, lag, before.cur, before.confirmed, lag-below, lag+above)
	}
	return m, lag
}

// TestLagBytesAgreesWithTheServer runs a workload through a pipeline whose sink holds every write,
// then lets the sink go: during and after the workload, pgstream_replication_lag_bytes agrees with
// the server's pg_current_wal_lsn() - confirmed_flush_lsn within the WAL written in the status
// intervals around each scrape; with the sink held and everything received, the two are the same
// figure (megabytes here), and after the workload both fall back.
func TestLagBytesAgreesWithTheServer(t *testing.T) {
	db := newDB(t)
	exec1(t, db, `CREATE TABLE t (id int PRIMARY KEY, pad text)`)
	gate := newGateSink()
	m := metrics.New("test")
	board := health.NewBoard(nil)
	r := startPipeline(t, db, runOpts{wrap: func(s sinks.Sink) sinks.Sink { gate.inner = s; return gate }, metrics: m, health: board,
		// No backpressure: pgstream receives the whole workload while the sink holds it. No
		// heartbeats: the WAL is the workload's.
		pcfg: pipeline.Config{MaxInFlightBytes: 256 << 20, Heartbeat: pipeline.HeartbeatConfig{Interval: -time.Second}}})
	t.Cleanup(gate.open)
	srv := httptest.NewServer(httpapi.Handler(httpapi.Options{Metrics: m, Health: board, Status: func() any { return r.p.Status() }}))
	t.Cleanup(srv.Close)
	p := &lagProbe{t: t, url: srv.URL + "/metrics", slot: r.slot}
	r.waitStreaming()

	insert := func(i int) {
		exec1(t, db, fmt.Sprintf(`INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(%d, %d) g`, i*500+1, (i+1)*500))
	}
	insert(0)
	select {
	case <-gate.entered:
	case <-time.After(60 * time.Second):
		t.Fatal("the sink was not written to within 60s")
	}
	var durable lsn.LSN
	waitUntil(t, 60*time.Second, "the server confirmed the durable position", r.finished, func() bool {
		durable = lsn.LSN(p.scrape("pgstream_durable_lsn")[0])
		return p.server().confirmed == durable
	})

	const txs = 10
	for i := 1; i <= txs; i++ {
		insert(i)
		p.check(fmt.Sprintf("during the workload, after transaction %d", i))
	}
	// Everything received, nothing delivered: once pgstream reported receiving the server's WAL
	// end, its lag is the server's, to the byte but for WAL written meanwhile.
	end := p.server().cur
	waitUntil(t, 60*time.Second, "pgstream reported receiving everything", r.finished, func() bool { return p.server().written >= end })
	// While the sink holds the first transaction, the durable position may move on through WAL
	// before that transaction's commit record (a checkpoint save in progress, a keepalive's WAL end
	// confirmed while nothing was in flight yet), never past the record's start: the server would
	// then skip the transaction on the next start.
	if durable = lsn.LSN(p.scrape("pgstream_durable_lsn")[0]); durable > gate.first {
		t.Fatalf("the durable position %s moved past the commit %s of the transaction the sink holds", durable, gate.first)
	}
	scraped, server := p.check("the workload received, the sink holding it")
	if server < float64(end-durable) || scraped < float64(end-durable) || end-durable < 1<<20 {
		t.Fatalf("lag_bytes %.0f, server lag %.0f: want both at least the %d bytes of WAL the sink holds", scraped, server, end-durable)
	}

	gate.open()
	waitUntil(t, 120*time.Second, "the sink acknowledged the workload", r.finished, func() bool {
		v := p.scrape("pgstream_in_flight_bytes", "pgstream_durable_lsn")
		return v[0] == 0 && lsn.LSN(v[1]) >= end
	})
	for i := 0; i < 3; i++ {
		p.check(fmt.Sprintf("after the workload, check %d", i+1))
	}
	waitUntil(t, 120*time.Second, "both lags back under 1 MiB", r.finished, func() bool {
		scraped, server := p.check("after the workload, falling back")
		return scraped < 1<<20 && server < 1<<20
	})
}

// finished reports, with a message, that the pipeline has ended.
func (r *runner) finished() (string, bool) {
	select {
	case err := <-r.done:
		r.ended, r.result = true, err
		return fmt.Sprintf("the pipeline ended: %v", err), true
	default:
		if r.ended {
			return fmt.Sprintf("the pipeline ended: %v", r.result), true
		}
		return "", false
	}
}
