package pipeline

import (
	"time"

	"github.com/pgstream/pgstream/internal/events"
	"github.com/pgstream/pgstream/internal/lsn"
	"github.com/pgstream/pgstream/sinks"
)

// markerEncoder writes the optional transaction begin ("b") and end ("e") marker events
// (docs/format.md) with events.Markers. Like the events.Encoder, the Value it returns is valid until
// the next call.
type markerEncoder struct {
	m *events.Markers
}

func newMarkerEncoder(db string, now func() time.Time) *markerEncoder {
	return &markerEncoder{m: events.NewMarkers(events.Options{Database: db, Now: now})}
}

// encode returns the marker of tx: op is sinks.OpBegin or sinks.OpEnd. count is the number of change
// events of the transaction and is written only in the end marker.
func (m *markerEncoder) encode(op sinks.Op, tx *events.Tx, at lsn.LSN, count uint32) sinks.Event {
	if op == sinks.OpEnd {
		return m.m.End(tx, at, count)
	}
	return m.m.Begin(tx, at)
}
