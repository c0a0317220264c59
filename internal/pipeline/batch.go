package pipeline

import (
	"sync"
	"sync/atomic"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/sinks"
)

const arenaChunk = 64 << 10

// batch is a run of events with the storage their bytes live in. It is built by the replication
// goroutine, then read concurrently by the sink workers, and recycled when the last one is done.
type batch struct {
	seq    uint64
	pos    checkpoint.Position // zero when the batch completes no transaction
	events []sinks.Event
	chunks [][]byte // event bytes; a chunk never moves once written, so events may point into it
	bytes  int
	refs   atomic.Int32
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
	if len(b.chunks) > 0 {
		last := b.chunks[len(b.chunks)-1]
		if cap(last)-len(last) >= n {
			b.chunks[len(b.chunks)-1] = last[:len(last)+n]
			return last[len(last) : len(last)+n : len(last)+n]
		}
	}
	size := arenaChunk
	if n > size {
		size = n
	}
	c := make([]byte, n, size)
	b.chunks = append(b.chunks, c)
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

func (b *batch) reset() {
	clear(b.events)
	b.events = b.events[:0]
	// Keep the first regular-sized chunk for reuse, drop the rest so a huge event does not pin memory.
	var keep []byte
	for _, c := range b.chunks {
		if cap(c) == arenaChunk {
			keep = c[:0]
			break
		}
	}
	clear(b.chunks)
	b.chunks = b.chunks[:0]
	if keep != nil {
		b.chunks = append(b.chunks, keep)
	}
	b.bytes = 0
	b.seq = 0
	b.pos = checkpoint.Position{}
}
