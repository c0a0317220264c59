package pipeline

import (
	"sync"
	"time"

	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/internal/metrics"
	"github.com/pgstream/pgstream/lsn"
)

// Readiness components the pipeline reports (health.Board names); a sink's is "sink:" + its name.
const (
	ComponentSource = "source"
	ComponentSlot   = "slot"
)

// Liveness loops the pipeline reports (health.Board.Beat).
const (
	LoopReplication  = "replication"
	LoopCheckpointer = "checkpointer"
	LoopSnapshot     = "snapshot"
)

// sinkStallAfter is how long one Write may run before its sink counts as not ready.
const sinkStallAfter = 30 * time.Second

// Observe makes the pipeline report its metrics to m and its readiness and liveness to h. Either
// may be nil. Call it before Run.
func (p *Pipeline) Observe(m *metrics.Metrics, h *health.Board) {
	p.metrics, p.health = m, h
	p.sess.health, p.ck.health = h, h
	h.Set(ComponentSource, false, "starting")
	m.Register(p)
	for _, s := range p.specs {
		m.Sinks(s.Name)
	}
}

// commitTimes holds the commit time of every transaction handed to the sinks and not yet
// acknowledged by all of them, by the sequence number of the batch that completes it. The oldest
// gives the lag in seconds; each acknowledgement gives a commit-to-acknowledgement time. Safe for
// concurrent use: the replication goroutine adds, the sink workers acknowledge, scrapes read.
type commitTimes struct {
	mu sync.Mutex
	q  []commitAt // ascending seq
}

type commitAt struct {
	seq uint64
	at  time.Time
}

func (c *commitTimes) add(seq uint64, at time.Time) {
	c.mu.Lock()
	c.q = append(c.q, commitAt{seq, at})
	c.mu.Unlock()
}

// acked drops the transactions of the batches up to seq, calling observe with each one's age.
func (c *commitTimes) acked(seq uint64, now time.Time, observe func(seconds float64)) {
	c.mu.Lock()
	n := 0
	for n < len(c.q) && c.q[n].seq <= seq {
		observe(now.Sub(c.q[n].at).Seconds())
		n++
	}
	if n > 0 {
		c.q = append(c.q[:0], c.q[n:]...)
	}
	c.mu.Unlock()
}

// oldest returns the commit time of the oldest transaction not yet acknowledged.
func (c *commitTimes) oldest() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.q) == 0 {
		return time.Time{}, false
	}
	return c.q[0].at, true
}

// acked is called by a sink worker after it acknowledged batches: what every sink holds now is
// timed.
func (p *Pipeline) acked() {
	if p.metrics == nil {
		return
	}
	_, seq := p.tracker.AckedSeq()
	p.commits.acked(seq, p.now(), p.metrics.CommitAcked)
}

// The metrics.Source the pipeline is; every method is safe for concurrent use.

func (p *Pipeline) LagBytes() float64 {
	heard, durable := p.sess.heardEnd.Load(), uint64(p.Durable().EndLSN)
	if heard <= durable {
		return 0
	}
	return float64(heard - durable)
}

func (p *Pipeline) LagSeconds() float64 {
	at, ok := p.commits.oldest()
	if !ok {
		return 0
	}
	return max(p.now().Sub(at).Seconds(), 0)
}

func (p *Pipeline) InFlightBytes() float64 {
	if tr := p.trackerRef.Load(); tr != nil {
		_, b := tr.InFlight()
		return float64(b)
	}
	return 0
}

func (p *Pipeline) DurableLSN() float64 { return float64(p.Durable().EndLSN) }

func (p *Pipeline) Connected() float64 {
	if p.sess.connected.Load() {
		return 1
	}
	return 0
}

func (p *Pipeline) Transactions() float64  { return float64(p.stats.txs.Load()) }
func (p *Pipeline) ReceivedBytes() float64 { return float64(p.sess.receivedPub.Load()) }
func (p *Pipeline) Reconnects() float64    { return float64(p.sess.reconnects.Load()) }

func (p *Pipeline) SnapshotChunksRemaining() float64 {
	pr := p.SnapshotProgress()
	return float64(max(pr.Chunks-pr.ChunksDone, 0))
}

// watchSinks reports each sink's readiness every second until stop is closed: not ready while its
// own Health says so, or while one Write has run for longer than sinkStallAfter.
func (p *Pipeline) watchSinks(stop <-chan struct{}) {
	if p.health == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		for _, w := range p.workers {
			p.health.SetErr("sink:"+w.spec.Name, w.state(p.now()))
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// Status is where the pipeline stands, as GET /status and pgstream status show it.
type Status struct {
	Slot        string `json:"slot"`
	Publication string `json:"publication"`
	Connected   bool   `json:"connected"`
	Reconnects  uint64 `json:"reconnects"`
	// LastError is why the replication connection was lost last ("" when it never was).
	LastError string `json:"last_error,omitempty"`
	Positions struct {
		ServerWALEnd  string `json:"server_wal_end"` // the newest server WAL end heard of
		Durable       string `json:"durable"`        // the checkpoint's flush position
		DurableCommit string `json:"durable_commit"` // the newest transaction every sink holds
		Confirmed     string `json:"confirmed"`      // the flush position of the newest status update
	} `json:"positions"`
	Lag struct {
		Bytes   float64 `json:"bytes"`
		Seconds float64 `json:"seconds"`
	} `json:"lag"`
	InFlightBytes float64          `json:"in_flight_bytes"`
	Transactions  uint64           `json:"transactions"`
	Events        uint64           `json:"events"`
	Snapshot      SnapshotProgress `json:"snapshot"`
	// Server is the slot and the server's settings as last polled (zero before the first poll).
	Server SlotState `json:"server"`
}

// Status returns where the pipeline stands. Safe for concurrent use.
func (p *Pipeline) Status() Status {
	var st Status
	st.Slot, st.Publication = p.src.Slot, p.src.Publication
	st.Connected = p.sess.connected.Load()
	st.Reconnects = p.sess.reconnects.Load()
	if e := p.sess.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	d := p.Durable()
	st.Positions.ServerWALEnd = lsn.LSN(p.sess.heardEnd.Load()).String()
	st.Positions.Durable, st.Positions.DurableCommit = d.EndLSN.String(), d.CommitLSN.String()
	st.Positions.Confirmed = lsn.LSN(p.sess.confirmed.Load()).String()
	st.Lag.Bytes, st.Lag.Seconds = p.LagBytes(), p.LagSeconds()
	st.InFlightBytes = p.InFlightBytes()
	st.Transactions, st.Events = p.stats.txs.Load(), p.stats.events.Load()
	st.Snapshot = p.SnapshotProgress()
	st.Server = p.slots.last()
	return st
}
