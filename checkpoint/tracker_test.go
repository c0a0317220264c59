package checkpoint

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/pgstream/pgstream/lsn"
)

// step is one operation of a tracker script and what must hold after it.
type step struct {
	add   *Position // Add(*add, bytes)
	bytes int
	ack   [2]int // Ack(ack[0], ack[1]) when add is nil and idle is 0
	idle  lsn.LSN
	// expectations
	seq       uint64 // for Add: the returned sequence number
	err       error  // for Ack: the wanted error (nil: success)
	idleOK    bool   // for AdvanceIdle: the wanted result
	acked     Position
	ackedSeq  uint64 // the sequence number AckedSeq returns
	inFlight  int
	inBytes   int
	signalled bool // Changed has a pending signal after the step (drained by the check)
}

func pos(commit, end lsn.LSN) *Position { return &Position{CommitLSN: commit, EndLSN: end} }

func runScript(t *testing.T, tr *Tracker, steps []step) {
	t.Helper()
	for i, s := range steps {
		switch {
		case s.add != nil:
			if got := tr.Add(*s.add, s.bytes); got != s.seq {
				t.Fatalf("step %d: Add = %d, want %d", i, got, s.seq)
			}
		case s.idle != 0:
			if got := tr.AdvanceIdle(s.idle); got != s.idleOK {
				t.Fatalf("step %d: AdvanceIdle(%s) = %v, want %v", i, s.idle, got, s.idleOK)
			}
		default:
			err := tr.Ack(s.ack[0], uint64(s.ack[1]))
			if s.err == nil && err != nil || s.err != nil && !errors.Is(err, s.err) {
				t.Fatalf("step %d: Ack(%d, %d) = %v, want %v", i, s.ack[0], s.ack[1], err, s.err)
			}
		}
		if got := tr.Acked(); got != s.acked {
			t.Fatalf("step %d: Acked = %+v, want %+v", i, got, s.acked)
		}
		if got, seq := tr.AckedSeq(); got != s.acked || seq != s.ackedSeq {
			t.Fatalf("step %d: AckedSeq = %+v, %d; want %+v, %d", i, got, seq, s.acked, s.ackedSeq)
		}
		if n, b := tr.InFlight(); n != s.inFlight || b != s.inBytes {
			t.Fatalf("step %d: InFlight = %d, %d; want %d, %d", i, n, b, s.inFlight, s.inBytes)
		}
		select {
		case <-tr.Changed():
			if !s.signalled {
				t.Fatalf("step %d: Changed signalled, want no signal", i)
			}
		default:
			if s.signalled {
				t.Fatalf("step %d: Changed not signalled", i)
			}
		}
	}
}

func TestTracker(t *testing.T) {
	start := Position{CommitLSN: 0x100, EndLSN: 0x110}
	for _, tc := range []struct {
		name  string
		sinks int
		steps []step
	}{
		{
			name:  "one sink",
			sinks: 1,
			steps: []step{
				{add: pos(0x200, 0x210), bytes: 10, seq: 1, ackedSeq: 0, acked: start, inFlight: 1, inBytes: 10, signalled: true},
				{add: pos(0x300, 0x310), bytes: 20, seq: 2, ackedSeq: 0, acked: start, inFlight: 2, inBytes: 30, signalled: true},
				{ack: [2]int{0, 1}, ackedSeq: 1, acked: *pos(0x200, 0x210), inFlight: 1, inBytes: 20, signalled: true},
				{ack: [2]int{0, 2}, ackedSeq: 2, acked: *pos(0x300, 0x310), signalled: true},
			},
		},
		{
			name:  "three sinks interleaved",
			sinks: 3,
			steps: []step{
				{add: pos(0x200, 0x210), bytes: 10, seq: 1, ackedSeq: 0, acked: start, inFlight: 1, inBytes: 10, signalled: true},
				{add: pos(0x300, 0x310), bytes: 20, seq: 2, ackedSeq: 0, acked: start, inFlight: 2, inBytes: 30, signalled: true},
				{add: pos(0x400, 0x410), bytes: 30, seq: 3, ackedSeq: 0, acked: start, inFlight: 3, inBytes: 60, signalled: true},
				// Sink 2 races ahead; nothing is complete until the slowest sink catches up.
				{ack: [2]int{2, 1}, ackedSeq: 0, acked: start, inFlight: 3, inBytes: 60},
				{ack: [2]int{2, 2}, ackedSeq: 0, acked: start, inFlight: 3, inBytes: 60},
				{ack: [2]int{2, 3}, ackedSeq: 0, acked: start, inFlight: 3, inBytes: 60},
				{ack: [2]int{0, 1}, ackedSeq: 0, acked: start, inFlight: 3, inBytes: 60},
				{ack: [2]int{1, 1}, ackedSeq: 1, acked: *pos(0x200, 0x210), inFlight: 2, inBytes: 50, signalled: true},
				{ack: [2]int{1, 2}, ackedSeq: 1, acked: *pos(0x200, 0x210), inFlight: 2, inBytes: 50},
				{ack: [2]int{1, 3}, ackedSeq: 1, acked: *pos(0x200, 0x210), inFlight: 2, inBytes: 50},
				{ack: [2]int{0, 2}, ackedSeq: 2, acked: *pos(0x300, 0x310), inFlight: 1, inBytes: 30, signalled: true},
				{ack: [2]int{0, 3}, ackedSeq: 3, acked: *pos(0x400, 0x410), signalled: true},
			},
		},
		{
			name:  "empty batches carry no position",
			sinks: 2,
			steps: []step{
				{add: &Position{}, bytes: 5, seq: 1, ackedSeq: 0, acked: start, inFlight: 1, inBytes: 5, signalled: true},
				{add: pos(0x200, 0x210), bytes: 7, seq: 2, ackedSeq: 0, acked: start, inFlight: 2, inBytes: 12, signalled: true},
				{add: &Position{}, bytes: 0, seq: 3, ackedSeq: 0, acked: start, inFlight: 3, inBytes: 12, signalled: true},
				{ack: [2]int{0, 1}, ackedSeq: 0, acked: start, inFlight: 3, inBytes: 12},
				{ack: [2]int{1, 1}, ackedSeq: 1, acked: start, inFlight: 2, inBytes: 7, signalled: true},
				{ack: [2]int{0, 2}, ackedSeq: 1, acked: start, inFlight: 2, inBytes: 7},
				{ack: [2]int{1, 2}, ackedSeq: 2, acked: *pos(0x200, 0x210), inFlight: 1, signalled: true},
				{ack: [2]int{1, 3}, ackedSeq: 2, acked: *pos(0x200, 0x210), inFlight: 1},
				{ack: [2]int{0, 3}, ackedSeq: 3, acked: *pos(0x200, 0x210), signalled: true},
			},
		},
		{
			name:  "advance idle only when nothing is in flight",
			sinks: 2,
			steps: []step{
				{idle: 0x120, idleOK: true, ackedSeq: 0, acked: *pos(0x100, 0x120), signalled: true},
				{idle: 0x118, idleOK: false, ackedSeq: 0, acked: *pos(0x100, 0x120)}, // never backwards
				{idle: 0x120, idleOK: false, ackedSeq: 0, acked: *pos(0x100, 0x120)},
				{add: pos(0x200, 0x210), bytes: 1, seq: 1, ackedSeq: 0, acked: *pos(0x100, 0x120), inFlight: 1, inBytes: 1, signalled: true},
				{idle: 0x500, idleOK: false, ackedSeq: 0, acked: *pos(0x100, 0x120), inFlight: 1, inBytes: 1},
				{ack: [2]int{0, 1}, ackedSeq: 0, acked: *pos(0x100, 0x120), inFlight: 1, inBytes: 1},
				{idle: 0x500, idleOK: false, ackedSeq: 0, acked: *pos(0x100, 0x120), inFlight: 1, inBytes: 1},
				{ack: [2]int{1, 1}, ackedSeq: 1, acked: *pos(0x200, 0x210), signalled: true},
				{idle: 0x500, idleOK: true, ackedSeq: 1, acked: *pos(0x200, 0x500), signalled: true},
				// A later transaction below the idle end moves CommitLSN but not EndLSN back.
				{add: pos(0x300, 0x310), seq: 2, ackedSeq: 1, acked: *pos(0x200, 0x500), inFlight: 1, signalled: true},
				{ack: [2]int{0, 2}, ackedSeq: 1, acked: *pos(0x200, 0x500), inFlight: 1},
				{ack: [2]int{1, 2}, ackedSeq: 2, acked: *pos(0x300, 0x500), signalled: true},
			},
		},
		{
			name:  "bad acknowledgements change nothing",
			sinks: 2,
			steps: []step{
				{ack: [2]int{0, 1}, err: ErrAckOrder, ackedSeq: 0, acked: start}, // nothing registered
				{add: pos(0x200, 0x210), bytes: 3, seq: 1, ackedSeq: 0, acked: start, inFlight: 1, inBytes: 3, signalled: true},
				{add: pos(0x300, 0x310), bytes: 4, seq: 2, ackedSeq: 0, acked: start, inFlight: 2, inBytes: 7, signalled: true},
				{ack: [2]int{0, 2}, err: ErrAckOrder, ackedSeq: 0, acked: start, inFlight: 2, inBytes: 7}, // skips 1
				{ack: [2]int{0, 0}, err: ErrAckOrder, ackedSeq: 0, acked: start, inFlight: 2, inBytes: 7},
				{ack: [2]int{2, 1}, err: ErrUnknownSink, ackedSeq: 0, acked: start, inFlight: 2, inBytes: 7},
				{ack: [2]int{-1, 1}, err: ErrUnknownSink, ackedSeq: 0, acked: start, inFlight: 2, inBytes: 7},
				{ack: [2]int{0, 1}, ackedSeq: 0, acked: start, inFlight: 2, inBytes: 7},
				{ack: [2]int{0, 1}, err: ErrAckOrder, ackedSeq: 0, acked: start, inFlight: 2, inBytes: 7}, // twice
				{ack: [2]int{0, 3}, err: ErrAckOrder, ackedSeq: 0, acked: start, inFlight: 2, inBytes: 7}, // not registered
				{ack: [2]int{1, 1}, ackedSeq: 1, acked: *pos(0x200, 0x210), inFlight: 1, inBytes: 4, signalled: true},
			},
		},
		{
			name:  "two sinks in order",
			sinks: 2,
			steps: []step{
				{add: pos(0x200, 0x210), bytes: 1, seq: 1, acked: start, inFlight: 1, inBytes: 1, signalled: true},
				{add: pos(0x300, 0x310), bytes: 2, seq: 2, acked: start, inFlight: 2, inBytes: 3, signalled: true},
				{add: pos(0x400, 0x410), bytes: 4, seq: 3, acked: start, inFlight: 3, inBytes: 7, signalled: true},
				{ack: [2]int{0, 1}, acked: start, inFlight: 3, inBytes: 7},
				{ack: [2]int{1, 1}, ackedSeq: 1, acked: *pos(0x200, 0x210), inFlight: 2, inBytes: 6, signalled: true},
				{ack: [2]int{0, 2}, ackedSeq: 1, acked: *pos(0x200, 0x210), inFlight: 2, inBytes: 6},
				{ack: [2]int{1, 2}, ackedSeq: 2, acked: *pos(0x300, 0x310), inFlight: 1, inBytes: 4, signalled: true},
				{ack: [2]int{0, 3}, ackedSeq: 2, acked: *pos(0x300, 0x310), inFlight: 1, inBytes: 4},
				{ack: [2]int{1, 3}, ackedSeq: 3, acked: *pos(0x400, 0x410), signalled: true},
			},
		},
		{
			name:  "partial acks",
			sinks: 2,
			steps: []step{
				{add: pos(0x200, 0x210), seq: 1, acked: start, inFlight: 1, signalled: true},
				{add: &Position{}, seq: 2, acked: start, inFlight: 2, signalled: true},
				{add: pos(0x400, 0x410), seq: 3, acked: start, inFlight: 3, signalled: true},
				// Sink 0 holds everything, sink 1 nothing: no batch is complete.
				{ack: [2]int{0, 1}, acked: start, inFlight: 3},
				{ack: [2]int{0, 2}, acked: start, inFlight: 3},
				{ack: [2]int{0, 3}, acked: start, inFlight: 3},
				{ack: [2]int{1, 1}, ackedSeq: 1, acked: *pos(0x200, 0x210), inFlight: 2, signalled: true},
				{add: pos(0x500, 0x510), seq: 4, ackedSeq: 1, acked: *pos(0x200, 0x210), inFlight: 3, signalled: true},
				// A batch without a position still moves the sequence number.
				{ack: [2]int{1, 2}, ackedSeq: 2, acked: *pos(0x200, 0x210), inFlight: 2, signalled: true},
				{ack: [2]int{1, 3}, ackedSeq: 3, acked: *pos(0x400, 0x410), inFlight: 1, signalled: true},
				{ack: [2]int{1, 4}, ackedSeq: 3, acked: *pos(0x400, 0x410), inFlight: 1},
				{ack: [2]int{0, 4}, ackedSeq: 4, acked: *pos(0x500, 0x510), signalled: true},
			},
		},
		{
			name:  "no sinks, every batch complete at once",
			sinks: 0,
			steps: []step{
				{idle: 0x120, idleOK: true, acked: *pos(0x100, 0x120), signalled: true},
				{add: &Position{}, seq: 1, ackedSeq: 1, acked: *pos(0x100, 0x120), signalled: true},
				{add: &Position{}, seq: 2, ackedSeq: 2, acked: *pos(0x100, 0x120), signalled: true},
				{add: pos(0x200, 0x210), seq: 3, ackedSeq: 3, acked: *pos(0x200, 0x210), signalled: true},
				{idle: 0x300, idleOK: true, ackedSeq: 3, acked: *pos(0x200, 0x300), signalled: true},
				{add: pos(0x280, 0x290), seq: 4, ackedSeq: 4, acked: *pos(0x280, 0x300), signalled: true},
			},
		},
		{
			name:  "no sinks",
			sinks: 0,
			steps: []step{
				{add: pos(0x200, 0x210), bytes: 3, seq: 1, ackedSeq: 1, acked: *pos(0x200, 0x210), signalled: true},
				{add: &Position{}, bytes: 3, seq: 2, ackedSeq: 2, acked: *pos(0x200, 0x210), signalled: true}, // complete at once
				{ack: [2]int{0, 1}, err: ErrUnknownSink, ackedSeq: 2, acked: *pos(0x200, 0x210)},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runScript(t, NewTracker(tc.sinks, start), tc.steps)
		})
	}
}

// TestTrackerRingWraps drives the ring buffer through growth and wrap-around with the in-flight
// window sliding, and checks that memory stays bounded by the window.
func TestTrackerRingWraps(t *testing.T) {
	const sinks, window, total = 2, 37, 5000
	tr := NewTracker(sinks, Position{})
	var acked uint64
	for seq := uint64(1); seq <= total; seq++ {
		if got := tr.Add(Position{CommitLSN: lsn.LSN(seq * 10), EndLSN: lsn.LSN(seq*10 + 1)}, int(seq)); got != seq {
			t.Fatalf("Add = %d, want %d", got, seq)
		}
		for seq-acked >= window {
			acked++
			for s := range sinks {
				if err := tr.Ack(s, acked); err != nil {
					t.Fatal(err)
				}
			}
			if got := tr.Acked(); got.CommitLSN != lsn.LSN(acked*10) || got.EndLSN != lsn.LSN(acked*10+1) {
				t.Fatalf("after ack %d: Acked = %+v", acked, got)
			}
		}
		n, b := tr.InFlight()
		wantBytes := 0
		for k := acked + 1; k <= seq; k++ {
			wantBytes += int(k)
		}
		if n != int(seq-acked) || b != wantBytes {
			t.Fatalf("after add %d: InFlight = %d, %d; want %d, %d", seq, n, b, seq-acked, wantBytes)
		}
	}
	if c := cap(tr.queue.buf); c > 2*window {
		t.Fatalf("ring capacity %d for a window of %d", c, window)
	}
}

// positionThrough is the acknowledged position once batches 1 to seq of TestTrackerConcurrent are
// complete: that of the newest batch not a multiple of 3, which carry none.
func positionThrough(seq uint64) Position {
	for seq%3 == 0 && seq > 0 {
		seq--
	}
	if seq == 0 {
		return Position{}
	}
	return Position{CommitLSN: lsn.LSN(seq * 100), EndLSN: lsn.LSN(seq*100 + 8)}
}

// TestTrackerConcurrent runs a producer and three sinks acknowledging at their own pace, with a watcher
// following Changed; run it with -race.
func TestTrackerConcurrent(t *testing.T) {
	const sinks, total = 3, 3000
	tr := NewTracker(sinks, Position{})
	queues := make([]chan uint64, sinks)
	for i := range queues {
		queues[i] = make(chan uint64, 1)
	}
	var wg sync.WaitGroup
	for i := range sinks {
		wg.Go(func() {
			for seq := range queues[i] {
				if err := tr.Ack(i, seq); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	watched := make(chan error, 1)
	go func() {
		var last Position
		var lastSeq uint64
		var err error
		for {
			select {
			case <-tr.Changed():
				p, seq := tr.AckedSeq()
				if err == nil && (p.CommitLSN < last.CommitLSN || p.EndLSN < last.EndLSN || seq < lastSeq) {
					err = errors.New("acknowledged position moved backwards")
				}
				if err == nil && p != positionThrough(seq) {
					err = fmt.Errorf("AckedSeq = %+v, %d: position does not match the batches", p, seq)
				}
				last, lastSeq = p, seq
			case <-done:
				watched <- err
				return
			}
		}
	}()
	for seq := uint64(1); seq <= total; seq++ {
		var p Position
		if seq%3 != 0 { // every third batch completes no transaction
			p = positionThrough(seq)
		}
		if got := tr.Add(p, 100); got != seq {
			t.Fatalf("Add = %d, want %d", got, seq)
		}
		for _, q := range queues {
			q <- seq
		}
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	close(done)
	if err := <-watched; err != nil {
		t.Fatal(err)
	}
	if got, seq := tr.AckedSeq(); got != positionThrough(total) || seq != total {
		t.Fatalf("AckedSeq = %+v, %d", got, seq)
	}
	if n, b := tr.InFlight(); n != 0 || b != 0 {
		t.Fatalf("InFlight = %d, %d", n, b)
	}
}
