package events

import (
	"strconv"

	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
)

// Every event's Value is one JSON object (docs/format.md), and the parts all events share are
// written here and nowhere else:
//
//	{"id":"<id>","op":"<op>",                                      appendHeader
//	<body>                                                         the caller's
//	,"source":{"connector":"pgstream","db":<db>                    newSource / newTableSource
//	  [,"schema":<schema>,"table":<table>],"txId":<xid or null>,
//	  "lsn":"<lsn>","commit_lsn":"<commit_lsn>","ts_ms":<ms>
//	  [,"snapshot":true]},"ts_ms":<emit ms>}                       appendTail
//
// The body is "before" and "after", then "unchanged_toast", "message" or "transaction" when the
// event has one. The id is sinks.Event.AppendID's, so the envelope and the sinks (the NATS
// message id, the Kafka header) always agree on it. Strings are escaped by appendString.

// appendHeader appends the start of ev's envelope: `{"id":"<id>","op":"<op>",`.
func appendHeader(v []byte, ev *sinks.Event) []byte {
	v = append(v, `{"id":"`...)
	v = ev.AppendID(v)
	v = append(v, `","op":"`...)
	v = append(v, byte(ev.Op))
	return append(v, `",`...)
}

// newSource returns the constant start of the source of an event without a table, for a database
// whose name is the JSON string db: `"source":{"connector":"pgstream","db":<db>,"txId":`.
func newSource(db []byte) []byte {
	s := append([]byte(nil), `"source":{"connector":"pgstream","db":`...)
	s = append(s, db...)
	return append(s, `,"txId":`...)
}

// newTableSource is newSource for an event of table schema.table:
// `"source":{"connector":"pgstream","db":<db>,"schema":<schema>,"table":<table>,"txId":`.
func newTableSource(db []byte, schema, table string) []byte {
	s := append([]byte(nil), `"source":{"connector":"pgstream","db":`...)
	s = append(s, db...)
	s = append(s, `,"schema":`...)
	s = appendString(s, []byte(schema))
	s = append(s, `,"table":`...)
	s = appendString(s, []byte(table))
	return append(s, `,"txId":`...)
}

// tail is what an envelope says after its body.
type tail struct {
	source    []byte // from newSource or newTableSource
	xid       uint32
	hasXid    bool // false writes "txId":null
	lsn       lsn.LSN
	commitLSN lsn.LSN
	commitMs  int64 // source.ts_ms
	emitMs    int64 // the top-level ts_ms
	snapshot  bool  // adds "snapshot":true to the source
	// genText, when not nil, is written as both lsn and commit_lsn in place of lsn and commitLSN:
	// the text of a snapshot's generation, which Read formats once for all the rows it reads.
	genText []byte
}

// appendTail appends the end of an envelope after its body:
// `,"source":{…,"txId":…,"lsn":…,"commit_lsn":…,"ts_ms":…[,"snapshot":true]},"ts_ms":…}`.
func appendTail(v []byte, t *tail) []byte {
	v = append(v, ',')
	v = append(v, t.source...)
	if t.hasXid {
		v = strconv.AppendUint(v, uint64(t.xid), 10)
	} else {
		v = append(v, "null"...)
	}
	v = append(v, `,"lsn":"`...)
	if t.genText != nil {
		v = append(v, t.genText...)
		v = append(v, `","commit_lsn":"`...)
		v = append(v, t.genText...)
	} else {
		v = t.lsn.AppendText(v)
		v = append(v, `","commit_lsn":"`...)
		v = t.commitLSN.AppendText(v)
	}
	v = append(v, `","ts_ms":`...)
	v = strconv.AppendInt(v, t.commitMs, 10)
	if t.snapshot {
		v = append(v, `,"snapshot":true`...)
	}
	v = append(v, `},"ts_ms":`...)
	v = strconv.AppendInt(v, t.emitMs, 10)
	return append(v, '}')
}
