package pipeline

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/sinks"
)

const arenaChunk = 64 << 10

// batch is a run of events with the storage their bytes live in. It is built by the replication
// goroutine, then read concurrently by the sink workers, and recycled when the last one is done.
type batch struct {
	seq uint64
	pos checkpoint.Position // zero when the batch completes no transaction
	// commitTime is the commit time of the transaction the batch completes; zero when none.
	commitTime time.Time
	events     []sinks.Event
	// chunks hold the events' bytes. A chunk never moves once written, so events may point into
	// it; chunks[fill] is the one being filled, the ones after it are empty and kept for reuse.
	chunks [][]byte
	fill   int
	bytes  int
	refs   atomic.Int32
	// numbered, when set, is called with the batch's sequence number once the tracker has given it
	// one and before any sink sees the batch, so that what it records for the batch is in place
	// before the batch can be acknowledged and a checkpoint saved past it.
	numbered func(seq uint64)
}

var batchPool = sync.Pool{New: func() any { return &batch{} }}

func newBatch() *batch {
	return batchPool.Get().(*batch)
}

// add copies ev's key and value into the batch's storage and appends it. This is the one copy an
// event's bytes make between the decoder's frame and the sinks.
func (b *batch) add(ev sinks.Event) {
	n := len(ev.Key) + len(ev.Value)
	buf := b.alloc(n)
	kn := copy(buf, ev.Key)
	copy(buf[kn:], ev.Value)
	if ev.Key != nil {
		ev.Key = buf[:kn:kn]
	}
	ev.Value = buf[kn:n:n]
	b.events = append(b.events, ev)
	b.bytes += n
}

// alloc returns n bytes of storage that stay valid until the batch is recycled.
func (b *batch) alloc(n int) []byte {
	for ; b.fill < len(b.chunks); b.fill++ {
		c := b.chunks[b.fill]
		if cap(c)-len(c) >= n {
			b.chunks[b.fill] = c[:len(c)+n]
			return c[len(c) : len(c)+n : len(c)+n]
		}
	}
	size := max(arenaChunk, n)
	c := make([]byte, n, size)
	b.chunks = append(b.chunks, c)
	b.fill = len(b.chunks) - 1
	return c[:n:n]
}

// release drops one reference; the last one recycles the batch.
func (b *batch) release() {
	if b.refs.Add(-1) != 0 {
		return
	}
	b.reset()
	batchPool.Put(b)
}

// reset empties the batch for reuse. Regular chunks are kept (a batch holds at most about
// MaxBatchBytes of them); an oversized chunk made for one large event is dropped so that it does
// not pin memory.
func (b *batch) reset() {
	clear(b.events)
	b.events = b.events[:0]
	kept := b.chunks[:0]
	for _, c := range b.chunks {
		if cap(c) == arenaChunk {
			kept = append(kept, c[:0])
		}
	}
	clear(b.chunks[len(kept):])
	b.chunks = kept
	b.fill = 0
	b.bytes = 0
	b.seq = 0
	b.pos = checkpoint.Position{}
	b.commitTime = time.Time{}
	b.numbered = nil
}
