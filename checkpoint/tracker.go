package checkpoint

import (
	"fmt"
	"sync"

	"github.com/pgstream/pgstream/lsn"
)

// Tracker follows batches from the moment they are handed to the sinks until every sink has
// acknowledged them, and yields the newest Position that is safe to checkpoint and confirm.
//
// Batches are numbered from 1 in the order Add registers them. Each sink acknowledges its batches in
// that order. A batch is complete once every sink acknowledged it; the acknowledged Position moves to
// the Position of the newest complete batch that has every earlier batch complete too.
//
// A Tracker is safe for concurrent use: typically one producer goroutine calls Add and AdvanceIdle,
// one goroutine per sink calls Ack, and another reads Acked (or AckedSeq) and InFlight when Changed
// signals. Memory is proportional to the batches in flight, and every call is O(1) (amortized for
// Add).
type Tracker struct {
	mu      sync.Mutex
	sinks   int
	next    uint64   // sequence number of the next batch Add registers
	acked   []uint64 // per sink: sequence number of its newest acknowledged batch
	queue   ring     // batches registered and not yet complete, oldest first; queue.at(0) is batch head
	head    uint64   // sequence number of queue.at(0)
	pos     Position // newest safe position
	bytes   int      // encoded bytes in flight
	changed chan struct{}
}

type pending struct {
	pos   Position
	bytes int
	acks  int // sinks that acknowledged the batch
}

// NewTracker returns a Tracker for the given number of sinks whose acknowledged Position starts at
// start (the position the stream resumes from). With no sinks (sinks <= 0) every batch is complete
// as soon as it is added.
func NewTracker(sinks int, start Position) *Tracker {
	if sinks < 0 {
		sinks = 0
	}
	return &Tracker{
		sinks:   sinks,
		next:    1,
		head:    1,
		acked:   make([]uint64, sinks),
		pos:     start,
		changed: make(chan struct{}, 1),
	}
}

// Add registers the next batch, of the given encoded size, and the Position that becomes safe once
// the batch and every earlier one are acknowledged by every sink. The zero Position means the batch
// completes no transaction. A Position is never allowed to move the acknowledged one backwards: each
// of its fields only ever grows. Add returns the batch's sequence number, to be passed to Ack.
func (t *Tracker) Add(pos Position, bytes int) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	seq := t.next
	t.next++
	if t.sinks == 0 {
		// Complete at once: AckedSeq moves even when the position does not.
		t.head = t.next
		t.advance(pos)
		t.signal()
		return seq
	}
	t.queue.push(pending{pos: pos, bytes: bytes})
	t.bytes += bytes
	t.signal()
	return seq
}

// Ack records that sink (0 ≤ sink < sinks) holds batch seq durably. Each sink must acknowledge its
// batches one after the other in the order Add registered them; anything else returns an error
// wrapping ErrAckOrder (or ErrUnknownSink) and changes nothing.
func (t *Tracker) Ack(sink int, seq uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if sink < 0 || sink >= t.sinks {
		return fmt.Errorf("%w: %d of %d", ErrUnknownSink, sink, t.sinks)
	}
	if want := t.acked[sink] + 1; seq != want || seq >= t.next {
		if seq >= t.next {
			return fmt.Errorf("%w: sink %d acknowledged batch %d, newest registered is %d", ErrAckOrder, sink, seq, t.next-1)
		}
		return fmt.Errorf("%w: sink %d acknowledged batch %d, expected %d", ErrAckOrder, sink, seq, want)
	}
	t.acked[sink] = seq
	// Every batch before head is complete, so seq >= head here.
	p := t.queue.ref(int(seq - t.head))
	p.acks++
	if seq != t.head || p.acks < t.sinks {
		return nil
	}
	for t.queue.len() > 0 && t.queue.ref(0).acks == t.sinks {
		done := t.queue.pop()
		t.head++
		t.bytes -= done.bytes
		t.advance(done.pos)
	}
	t.signal()
	return nil
}

// advance moves the acknowledged position forward to p, field by field, and reports whether it moved.
func (t *Tracker) advance(p Position) bool {
	moved := false
	if p.CommitLSN > t.pos.CommitLSN {
		t.pos.CommitLSN = p.CommitLSN
		moved = true
	}
	if p.EndLSN > t.pos.EndLSN {
		t.pos.EndLSN = p.EndLSN
		moved = true
	}
	return moved
}

// Acked returns the newest safe position: the low watermark over every sink.
func (t *Tracker) Acked() Position {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pos
}

// AckedSeq returns, consistently with each other, the newest safe position (as Acked does) and the
// sequence number of the newest batch that is complete together with every earlier batch, or 0 when
// there is none. Every batch up to that number is held by every sink, and the position covers them.
func (t *Tracker) AckedSeq() (Position, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pos, t.head - 1
}

// InFlight returns the number and encoded size of the batches registered but not yet acknowledged by
// every sink.
func (t *Tracker) InFlight() (batches int, bytes int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.queue.len(), t.bytes
}

// Changed returns a channel that receives a value whenever Acked, AckedSeq or InFlight changes. It has
// a buffer of one and is never closed: several changes between two receives are reported once, so a
// receiver reads them afresh after each signal.
func (t *Tracker) Changed() <-chan struct{} { return t.changed }

// AdvanceIdle moves the acknowledged EndLSN (never CommitLSN) forward to end when nothing is in
// flight, and reports whether it did. The caller passes a keepalive's WAL end only when no transaction
// is open either: otherwise a commit still to come could lie below end.
func (t *Tracker) AdvanceIdle(end lsn.LSN) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.queue.len() > 0 || end <= t.pos.EndLSN {
		return false
	}
	t.pos.EndLSN = end
	t.signal()
	return true
}

// signal notifies Changed without blocking. The caller holds mu.
func (t *Tracker) signal() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// ring is a FIFO queue of pending batches in a circular buffer that grows by doubling. Its capacity
// is bounded by the largest number of batches in flight at once.
type ring struct {
	buf  []pending
	head int
	n    int
}

func (r *ring) len() int { return r.n }

func (r *ring) push(p pending) {
	if r.n == len(r.buf) {
		size := 2 * len(r.buf)
		if size == 0 {
			size = 16
		}
		buf := make([]pending, size)
		k := copy(buf, r.buf[r.head:])
		copy(buf[k:], r.buf[:r.head])
		r.buf, r.head = buf, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = p
	r.n++
}

// ref returns the i-th oldest element; 0 ≤ i < len().
func (r *ring) ref(i int) *pending { return &r.buf[(r.head+i)%len(r.buf)] }

func (r *ring) pop() pending {
	p := r.buf[r.head]
	r.buf[r.head] = pending{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return p
}
