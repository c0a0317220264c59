package pipeline

import (
	"context"
	"fmt"
	"sync"

	"github.com/pgstream/pgstream/checkpoint"
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
}

func newWorker(idx int, spec SinkSpec, tr *checkpoint.Tracker, maxEvents int) *worker {
	return &worker{idx: idx, spec: spec, tracker: tr, maxEvents: maxEvents,
		wake: make(chan struct{}, 1), pass: map[[2]string]bool{}}
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
			err = w.spec.Sink.Write(ctx, &sinks.Batch{Events: events})
		}
		clear(events)
		w.scratch = events[:0]
		if err != nil {
			return fmt.Errorf("sink %s: %w", w.spec.Name, err)
		}
		for i, b := range batches {
			if err := w.tracker.Ack(w.idx, b.seq); err != nil {
				return fmt.Errorf("sink %s: %w", w.spec.Name, err)
			}
			b.release()
			batches[i] = nil
		}
	}
}
