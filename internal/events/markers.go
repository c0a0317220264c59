package events

import (
	"strconv"
	"time"

	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
)

// Markers writes the optional transaction begin ("b") and end ("e") marker events
// (docs/format.md, "Transaction markers"). The Value of an event it returns is valid until the next
// call on the Markers. It is not safe for concurrent use.
type Markers struct {
	now    func() time.Time
	source []byte
	buf    []byte
}

// NewMarkers returns a Markers writing source.db and the emit time as opts says.
func NewMarkers(opts Options) *Markers {
	m := &Markers{now: opts.Now, source: newSource(quoted(opts.Database))}
	if m.now == nil {
		m.now = time.Now
	}
	return m
}

// Begin returns the begin marker of tx, whose Begin message is at at.
func (m *Markers) Begin(tx *Tx, at lsn.LSN) sinks.Event {
	ev := sinks.Event{Op: sinks.OpBegin, LSN: at, CommitLSN: tx.CommitLSN, Xid: tx.Xid}
	v := appendHeader(m.buf[:0], &ev)
	v = append(v, `"before":null,"after":null,"transaction":{"id":`...)
	v = strconv.AppendUint(v, uint64(tx.Xid), 10)
	return m.finish(&ev, append(v, '}'), tx)
}

// End returns the end marker of tx, whose Commit message is at at, after count change events.
// The event's Seq is count.
func (m *Markers) End(tx *Tx, at lsn.LSN, count uint32) sinks.Event {
	ev := sinks.Event{Op: sinks.OpEnd, LSN: at, CommitLSN: tx.CommitLSN, Seq: count, Xid: tx.Xid}
	v := appendHeader(m.buf[:0], &ev)
	v = append(v, `"before":null,"after":null,"transaction":{"id":`...)
	v = strconv.AppendUint(v, uint64(tx.Xid), 10)
	v = append(v, `,"event_count":`...)
	v = strconv.AppendUint(v, uint64(count), 10)
	return m.finish(&ev, append(v, '}'), tx)
}

func (m *Markers) finish(ev *sinks.Event, v []byte, tx *Tx) sinks.Event {
	v = appendTail(v, &tail{source: m.source, xid: tx.Xid, hasXid: true, lsn: ev.LSN, commitLSN: ev.CommitLSN,
		commitMs: tx.CommitTime.UnixMilli(), emitMs: m.now().UnixMilli()})
	m.buf = v
	ev.Value = v
	return *ev
}
