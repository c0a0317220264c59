package pipeline

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/internal/metrics"
	"github.com/pgstream/pgstream/sinks"
)

// SinkSpec is one configured sink with its optional table filter.
type SinkSpec struct {
	Name   string
	Sink   sinks.Sink
	Filter *Filter
}

// worker feeds one sink. The replication goroutine pushes batches (never blocking); the worker's
// goroutine merges what is queued into one Write, then acknowledges each batch to the tracker in
// order. The queue is bounded by the pipeline's in-flight byte limit, not by its own capacity.
type worker struct {
	idx       int
	spec      SinkSpec
	tracker   *checkpoint.Tracker
	maxEvents int

	mu     sync.Mutex
	queue  []*batch
	closed bool
	wake   chan struct{} // cap 1

	taken   []*batch
	scratch []sinks.Event
	pass    map[[2]string]bool // filter decisions by schema and table
	ops     [256]int           // events of the current write by op, for the metrics

	metrics *metrics.Metrics
	health  *health.Board
	onAck   func()       // after batches were acknowledged; nil: nothing
	writing atomic.Int64 // start of the Write in progress (Unix nanoseconds), 0 when none
}

// newWorker feeds spec's sink, acknowledging to tr; onAck, when set, is called after batches were
// acknowledged.
func newWorker(idx int, spec SinkSpec, tr *checkpoint.Tracker, maxEvents int, obs observers, onAck func()) *worker {
	return &worker{idx: idx, spec: spec, tracker: tr, maxEvents: maxEvents, metrics: obs.metrics, health: obs.health, onAck: onAck,
		wake: make(chan struct{}, 1), pass: map[[2]string]bool{}}
}

// fanout hands every batch to each sink's worker, and times the transactions every sink
// acknowledged. push is called by one goroutine at a time (see push); acked by the workers.
type fanout struct {
	workers []*worker
	tracker *checkpoint.Tracker
	stats   *stats
	commits *commitTimes
	metrics *metrics.Metrics // nil: commits are not timed
	now     func() time.Time
}

func newFanout(specs []SinkSpec, tr *checkpoint.Tracker, maxEvents int, obs observers, st *stats, commits *commitTimes,
	now func() time.Time) *fanout {
	f := &fanout{tracker: tr, stats: st, commits: commits, metrics: obs.metrics, now: now}
	for i, spec := range specs {
		f.workers = append(f.workers, newWorker(i, spec, tr, maxEvents, obs, f.acked))
	}
	return f
}

// push hands b to every sink worker and returns its sequence number. Only one goroutine at a time
// pushes: the snapshot coordinator before streaming starts, the replication goroutine after.
func (f *fanout) push(b *batch) uint64 {
	b.refs.Store(int32(len(f.workers)))
	seq := f.tracker.Add(b.pos, b.bytes)
	b.seq = seq
	if b.numbered != nil {
		b.numbered(seq)
	}
	if f.metrics != nil && !b.commitTime.IsZero() {
		f.commits.add(seq, b.commitTime)
	}
	f.stats.events.Add(uint64(len(b.events)))
	f.stats.bytes.Add(uint64(b.bytes))
	f.stats.batches.Add(1)
	// b belongs to the workers from here on: the last one to finish recycles it.
	for _, w := range f.workers {
		w.push(b)
	}
	return seq
}

// acked is called by a sink worker after it acknowledged batches: what every sink holds now is
// timed.
func (f *fanout) acked() {
	if f.metrics == nil {
		return
	}
	_, seq := f.tracker.AckedSeq()
	f.commits.acked(seq, f.now(), f.metrics.CommitAcked)
}

// finish tells every worker that nothing more comes.
func (f *fanout) finish() {
	for _, w := range f.workers {
		w.finish()
	}
}

func (w *worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// push queues b. Called only by the replication goroutine.
func (w *worker) push(b *batch) {
	w.mu.Lock()
	w.queue = append(w.queue, b)
	w.mu.Unlock()
	w.signal()
}

// finish tells the worker that no more batches come: it drains its queue and returns.
func (w *worker) finish() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.signal()
}

// take waits for queued batches and removes a run of them holding at most maxEvents events
// (always at least one batch). It returns nil when the worker is finished and drained.
func (w *worker) take(ctx context.Context) ([]*batch, error) {
	for {
		w.mu.Lock()
		if len(w.queue) > 0 {
			n, events := 0, 0
			for n < len(w.queue) && (n == 0 || events+len(w.queue[n].events) <= w.maxEvents) {
				events += len(w.queue[n].events)
				n++
			}
			w.taken = append(w.taken[:0], w.queue[:n]...)
			rest := copy(w.queue, w.queue[n:])
			clear(w.queue[rest:])
			w.queue = w.queue[:rest]
			w.mu.Unlock()
			return w.taken, nil
		}
		closed := w.closed
		w.mu.Unlock()
		if closed {
			return nil, nil
		}
		select {
		case <-w.wake:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

func (w *worker) passes(ev *sinks.Event) bool {
	if w.spec.Filter.IsZero() || ev.Table == "" {
		return true
	}
	k := [2]string{ev.Schema, ev.Table}
	ok, seen := w.pass[k]
	if !seen {
		ok = w.spec.Filter.Passes(ev.Schema, ev.Table)
		w.pass[k] = ok
	}
	return ok
}

// run writes batches until finish is called and the queue is empty, or ctx ends, or the sink fails.
func (w *worker) run(ctx context.Context) error {
	for {
		batches, err := w.take(ctx)
		if err != nil || batches == nil {
			return err
		}
		events := w.scratch[:0]
		for _, b := range batches {
			for i := range b.events {
				if w.passes(&b.events[i]) {
					events = append(events, b.events[i])
				}
			}
		}
		if len(events) > 0 {
			if w.metrics != nil {
				w.ops = [256]int{}
				for i := range events {
					w.ops[events[i].Op]++
				}
			}
			start := time.Now()
			w.writing.Store(start.UnixNano())
			err = w.spec.Sink.Write(ctx, &sinks.Batch{Events: events})
			w.writing.Store(0)
			w.metrics.SinkWrite(w.spec.Name, time.Since(start).Seconds(), &w.ops, err != nil)
		}
		clear(events)
		w.scratch = events[:0]
		if err != nil {
			err = fmt.Errorf("sink %s: %w", w.spec.Name, err)
			w.health.SetErr("sink:"+w.spec.Name, err)
			return err
		}
		for i, b := range batches {
			if err := w.tracker.Ack(w.idx, b.seq); err != nil {
				return fmt.Errorf("sink %s: %w", w.spec.Name, err)
			}
			b.release()
			batches[i] = nil
		}
		if w.onAck != nil {
			w.onAck()
		}
	}
}

// state reports whether the sink is ready: not while its own Health says it is failing, nor while
// one Write has run for longer than sinkStallAfter. Safe for concurrent use.
func (w *worker) state(now time.Time) error {
	if start := w.writing.Load(); start != 0 {
		if d := now.Sub(time.Unix(0, start)); d > sinkStallAfter {
			return fmt.Errorf("a write has been running for %s", d.Truncate(time.Second))
		}
	}
	if h, ok := w.spec.Sink.(sinks.Healther); ok {
		return h.Health()
	}
	return nil
}
