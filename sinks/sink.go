// Package sinks defines the contract between pgstream's pipeline and the destinations of change
// events, and holds the built-in sinks (stdout, file, kafka, nats in sub-packages).
//
// A Sink receives batches in order and returns from Write only when every event of the batch is
// durable at the destination. Because Write calls are sequential, completion is reported in order;
// the pipeline moves the checkpoint past a batch only once every configured sink has returned nil
// for it. A sink never drops an event: a failure it cannot retry away is returned from Write and
// stops pgstream, and the events are read again from the replication slot on the next start.
package sinks

import (
	"context"
	"strconv"

	"github.com/pgstream/pgstream/lsn"
)

// Op is the kind of change an event carries, as written in the envelope's "op" field.
type Op byte

// The operations.
const (
	OpCreate   Op = 'c' // insert
	OpUpdate   Op = 'u'
	OpDelete   Op = 'd'
	OpTruncate Op = 't'
	OpMessage  Op = 'm' // pg_logical_emit_message
	OpRead     Op = 'r' // snapshot read
	OpBegin    Op = 'b' // transaction begin marker
	OpEnd      Op = 'e' // transaction end marker
)

func (o Op) String() string { return string(rune(o)) }

// Event is one encoded change. It owns no memory of its own: Key and Value point into the batch's
// storage and are valid only until the Write call that received them returns. A sink that needs them
// later must copy them.
type Event struct {
	Op     Op
	Schema string // empty for messages and transaction markers
	Table  string
	// Position of the change and of the commit of its transaction. For a non-transactional message
	// CommitLSN is the message's own LSN.
	LSN       lsn.LSN
	CommitLSN lsn.LSN
	// Seq numbers the events of one transaction from 0; (CommitLSN, Seq) identify an event for good.
	Seq uint32
	// Xid is the transaction id; for a snapshot read (OpRead) it is the row version's xmin.
	Xid uint32
	// Rel and Row are set only for snapshot reads (OpRead): the table's OID and the row version's
	// ctid as block<<16 | offset. CommitLSN is then the snapshot's generation (see AppendID).
	Rel uint32
	Row uint64
	// Key is a JSON object of the row's replica-identity key columns, or nil when the table has none
	// or the event is not a row change.
	Key []byte
	// Value is the JSON envelope described in docs/format.md, without a trailing newline.
	Value []byte
}

// AppendID appends the event's deterministic id to b: "<commit_lsn>/<seq>", or "<commit_lsn>/b" and
// "<commit_lsn>/e" for transaction markers, so that markers never collide with row events. A
// snapshot read is "<generation>/r/<table oid>/<block>.<offset>/<xmin>": the same row version read
// again by the same snapshot (after a crash, or by a re-read of an unfinished chunk) has the same
// id, and any other version or snapshot has another.
//
// This is the only formatter of event ids: the envelope's "id" (package events) and the ids sinks
// send beside it (the NATS message id, the Kafka header) are all written by it.
func (e *Event) AppendID(b []byte) []byte {
	b = e.CommitLSN.AppendText(b)
	b = append(b, '/')
	switch e.Op {
	case OpBegin:
		return append(b, 'b')
	case OpEnd:
		return append(b, 'e')
	case OpRead:
		b = append(b, "r/"...)
		b = strconv.AppendUint(b, uint64(e.Rel), 10)
		b = append(b, '/')
		b = strconv.AppendUint(b, e.Row>>16, 10)
		b = append(b, '.')
		b = strconv.AppendUint(b, e.Row&0xffff, 10)
		b = append(b, '/')
		return strconv.AppendUint(b, uint64(e.Xid), 10)
	}
	return strconv.AppendUint(b, uint64(e.Seq), 10)
}

// ID returns the event's deterministic id (see AppendID).
func (e *Event) ID() string { return string(e.AppendID(make([]byte, 0, 32))) }

// Batch is a run of events in commit order. A batch may be empty: it then only carries progress.
type Batch struct {
	Events []Event
}

// Sink is a destination of change events.
type Sink interface {
	// Write delivers b and returns nil only when every event of b is durable at the destination.
	// It is never called concurrently, and a batch is passed to the next Write only after the
	// previous one returned. A returned error stops the pipeline; the sink is then closed.
	Write(ctx context.Context, b *Batch) error
	// Close releases the sink's resources. Events not yet acknowledged by Write are not delivered.
	Close() error
}

// Pinger is implemented by sinks that can check at start-up that their destination is reachable and
// correctly configured, so that a bad configuration fails before replication starts.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Healther is implemented by sinks that can tell, while a Write is still retrying inside, that
// they are failing (a broker refusing or unreachable). Health returns nil while the sink is
// healthy; its text must hold no secret.
type Healther interface {
	Health() error
}
