package pipeline

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/pgstream/pgstream/internal/events"
	"github.com/pgstream/pgstream/internal/lsn"
	"github.com/pgstream/pgstream/sinks"
)

// markerEncoder writes the optional transaction begin ("b") and end ("e") marker events
// (docs/format.md). Like the events.Encoder, the Value it returns is valid until the next call.
type markerEncoder struct {
	db  []byte // the database name as a JSON string
	buf []byte
	now func() time.Time
}

func newMarkerEncoder(db string, now func() time.Time) *markerEncoder {
	q, _ := json.Marshal(db)
	return &markerEncoder{db: q, now: now}
}

// encode returns the marker of tx. count is the number of change events of the transaction and is
// written only in the end marker.
func (m *markerEncoder) encode(op sinks.Op, tx *events.Tx, at lsn.LSN, count uint32) sinks.Event {
	b := append(m.buf[:0], `{"id":"`...)
	b = tx.CommitLSN.AppendText(b)
	b = append(b, '/', byte(op))
	b = append(b, `","op":"`...)
	b = append(b, byte(op))
	b = append(b, `","before":null,"after":null,"transaction":{"id":`...)
	b = strconv.AppendUint(b, uint64(tx.Xid), 10)
	if op == sinks.OpEnd {
		b = append(b, `,"event_count":`...)
		b = strconv.AppendUint(b, uint64(count), 10)
	}
	b = append(b, `},"source":{"connector":"pgstream","db":`...)
	b = append(b, m.db...)
	b = append(b, `,"txId":`...)
	b = strconv.AppendUint(b, uint64(tx.Xid), 10)
	b = append(b, `,"lsn":"`...)
	b = at.AppendText(b)
	b = append(b, `","commit_lsn":"`...)
	b = tx.CommitLSN.AppendText(b)
	b = append(b, `","ts_ms":`...)
	b = strconv.AppendInt(b, tx.CommitTime.UnixMilli(), 10)
	b = append(b, `},"ts_ms":`...)
	b = strconv.AppendInt(b, m.now().UnixMilli(), 10)
	b = append(b, '}')
	m.buf = b
	seq := uint32(0)
	if op == sinks.OpEnd {
		seq = count
	}
	return sinks.Event{Op: op, LSN: at, CommitLSN: tx.CommitLSN, Seq: seq, Xid: tx.Xid, Value: b}
}
