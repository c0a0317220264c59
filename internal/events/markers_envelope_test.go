package events

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/walparse"
)

// TestMarkerEnvelopes pins the exact bytes and fields of the begin and end markers
// (docs/format.md, "Transaction markers"), including a database name that needs escaping and
// positions at the ends of their ranges, and that each marker reads the clock once.
func TestMarkerEnvelopes(t *testing.T) {
	var clock int64 = 1700000000123
	m := newTestMarkers("shop \"main\"\\é\t\x01\x7f\xff/", func() time.Time { clock++; return time.UnixMilli(clock) })
	const db = `"shop \"main\"\\é\t\u0001` + "\x7f" + `\ufffd/"`
	tx := &Tx{Xid: 731, CommitLSN: 0x1A2B3C8, CommitTime: walparse.TimestampFromTime(time.UnixMilli(1700000000000)), Seq: 3}
	last := &Tx{Xid: 1<<32 - 1, CommitLSN: lsn.LSN(1<<64 - 1), CommitTime: walparse.TimestampFromTime(time.UnixMilli(-1))}
	for _, tc := range []struct {
		op    sinks.Op
		tx    *Tx
		at    lsn.LSN
		count uint32
		want  string
		meta  sinks.Event
	}{
		{
			op: sinks.OpBegin, tx: tx, at: 0x1A2B300, count: 99, // the count is not part of a begin marker
			want: `{"id":"0/1A2B3C8/b","op":"b","before":null,"after":null,"transaction":{"id":731},"source":{"connector":"pgstream","db":` + db + `,"txId":731,"lsn":"0/1A2B300","commit_lsn":"0/1A2B3C8","ts_ms":1700000000000},"ts_ms":1700000000124}`,
			meta: sinks.Event{Op: sinks.OpBegin, LSN: 0x1A2B300, CommitLSN: 0x1A2B3C8, Seq: 0, Xid: 731},
		},
		{
			op: sinks.OpEnd, tx: tx, at: 0x1A2B3C8, count: 3,
			want: `{"id":"0/1A2B3C8/e","op":"e","before":null,"after":null,"transaction":{"id":731,"event_count":3},"source":{"connector":"pgstream","db":` + db + `,"txId":731,"lsn":"0/1A2B3C8","commit_lsn":"0/1A2B3C8","ts_ms":1700000000000},"ts_ms":1700000000125}`,
			meta: sinks.Event{Op: sinks.OpEnd, LSN: 0x1A2B3C8, CommitLSN: 0x1A2B3C8, Seq: 3, Xid: 731},
		},
		{
			op: sinks.OpEnd, tx: tx, at: 0x1A2B3C8, count: 0,
			want: `{"id":"0/1A2B3C8/e","op":"e","before":null,"after":null,"transaction":{"id":731,"event_count":0},"source":{"connector":"pgstream","db":` + db + `,"txId":731,"lsn":"0/1A2B3C8","commit_lsn":"0/1A2B3C8","ts_ms":1700000000000},"ts_ms":1700000000126}`,
			meta: sinks.Event{Op: sinks.OpEnd, LSN: 0x1A2B3C8, CommitLSN: 0x1A2B3C8, Seq: 0, Xid: 731},
		},
		{
			op: sinks.OpBegin, tx: last, at: 0,
			want: `{"id":"FFFFFFFF/FFFFFFFF/b","op":"b","before":null,"after":null,"transaction":{"id":4294967295},"source":{"connector":"pgstream","db":` + db + `,"txId":4294967295,"lsn":"0/0","commit_lsn":"FFFFFFFF/FFFFFFFF","ts_ms":-1},"ts_ms":1700000000127}`,
			meta: sinks.Event{Op: sinks.OpBegin, LSN: 0, CommitLSN: lsn.LSN(1<<64 - 1), Seq: 0, Xid: 1<<32 - 1},
		},
		{
			op: sinks.OpEnd, tx: last, at: lsn.LSN(1<<64 - 1), count: 1<<32 - 1,
			want: `{"id":"FFFFFFFF/FFFFFFFF/e","op":"e","before":null,"after":null,"transaction":{"id":4294967295,"event_count":4294967295},"source":{"connector":"pgstream","db":` + db + `,"txId":4294967295,"lsn":"FFFFFFFF/FFFFFFFF","commit_lsn":"FFFFFFFF/FFFFFFFF","ts_ms":-1},"ts_ms":1700000000128}`,
			meta: sinks.Event{Op: sinks.OpEnd, LSN: lsn.LSN(1<<64 - 1), CommitLSN: lsn.LSN(1<<64 - 1), Seq: 1<<32 - 1, Xid: 1<<32 - 1},
		},
	} {
		ev := encodeMarker(m, tc.op, tc.tx, tc.at, tc.count)
		if string(ev.Value) != tc.want {
			t.Errorf("%c marker\n got %s\nwant %s", tc.op, ev.Value, tc.want)
		}
		if !json.Valid(ev.Value) {
			t.Errorf("invalid JSON: %s", ev.Value)
		}
		if ev.Key != nil || ev.Schema != "" || ev.Table != "" || ev.Rel != 0 || ev.Row != 0 {
			t.Errorf("%c marker has a key or a table: %+v", tc.op, ev)
		}
		got := ev
		got.Value = nil
		if !reflect.DeepEqual(got, tc.meta) {
			t.Errorf("%c marker event\n got %+v\nwant %+v", tc.op, got, tc.meta)
		}
		if id := ev.ID(); string(ev.Value[7:7+len(id)]) != id {
			t.Errorf("envelope id %s, Event.ID() %s", ev.Value, id)
		}
	}
	if tx.Seq != 3 || last.Seq != 0 {
		t.Errorf("markers changed the transaction's seq: %d, %d", tx.Seq, last.Seq)
	}
}

func newTestMarkers(db string, now func() time.Time) *Markers {
	return NewMarkers(Options{Database: db, Now: now})
}

// encodeMarker returns the marker of tx: op is sinks.OpBegin or sinks.OpEnd.
func encodeMarker(m *Markers, op sinks.Op, tx *Tx, at lsn.LSN, count uint32) sinks.Event {
	if op == sinks.OpEnd {
		return m.End(tx, at, count)
	}
	return m.Begin(tx, at)
}
