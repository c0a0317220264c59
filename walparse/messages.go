package walparse

import (
	"time"

	"github.com/pgstream/pgstream/lsn"
)

// MessageType is the first byte of a pgoutput message.
type MessageType byte

// The pgoutput message types ("Logical Replication Message Formats").
const (
	TypeBegin            MessageType = 'B'
	TypeMessage          MessageType = 'M'
	TypeCommit           MessageType = 'C'
	TypeOrigin           MessageType = 'O'
	TypeRelation         MessageType = 'R'
	TypeType             MessageType = 'Y'
	TypeInsert           MessageType = 'I'
	TypeUpdate           MessageType = 'U'
	TypeDelete           MessageType = 'D'
	TypeTruncate         MessageType = 'T'
	TypeStreamStart      MessageType = 'S'
	TypeStreamStop       MessageType = 'E'
	TypeStreamCommit     MessageType = 'c'
	TypeStreamAbort      MessageType = 'A'
	TypeBeginPrepare     MessageType = 'b'
	TypePrepare          MessageType = 'P'
	TypeCommitPrepared   MessageType = 'K'
	TypeRollbackPrepared MessageType = 'r'
	TypeStreamPrepare    MessageType = 'p'
)

func (t MessageType) String() string {
	switch t {
	case TypeBegin:
		return "Begin"
	case TypeMessage:
		return "Message"
	case TypeCommit:
		return "Commit"
	case TypeOrigin:
		return "Origin"
	case TypeRelation:
		return "Relation"
	case TypeType:
		return "Type"
	case TypeInsert:
		return "Insert"
	case TypeUpdate:
		return "Update"
	case TypeDelete:
		return "Delete"
	case TypeTruncate:
		return "Truncate"
	case TypeStreamStart:
		return "StreamStart"
	case TypeStreamStop:
		return "StreamStop"
	case TypeStreamCommit:
		return "StreamCommit"
	case TypeStreamAbort:
		return "StreamAbort"
	case TypeBeginPrepare:
		return "BeginPrepare"
	case TypePrepare:
		return "Prepare"
	case TypeCommitPrepared:
		return "CommitPrepared"
	case TypeRollbackPrepared:
		return "RollbackPrepared"
	case TypeStreamPrepare:
		return "StreamPrepare"
	}
	return "Unknown(" + string(rune(t)) + ")"
}

// Message is one decoded pgoutput message. The concrete types are the pointer types below.
type Message interface {
	Type() MessageType
}

// Timestamp is a PostgreSQL TimestampTz as sent on the wire: microseconds since 2000-01-01 00:00:00 UTC.
type Timestamp int64

// pgEpochUnixMicros is 2000-01-01 00:00:00 UTC in Unix microseconds.
const pgEpochUnixMicros = 946684800 * 1_000_000

// Time converts t to a time.Time in UTC.
func (t Timestamp) Time() time.Time { return time.UnixMicro(int64(t) + pgEpochUnixMicros).UTC() }

// UnixMilli returns t as milliseconds since the Unix epoch.
func (t Timestamp) UnixMilli() int64 { return (int64(t) + pgEpochUnixMicros) / 1000 }

// TimestampFromTime converts a time.Time to the wire representation.
func TimestampFromTime(t time.Time) Timestamp { return Timestamp(t.UnixMicro() - pgEpochUnixMicros) }

// Begin opens a transaction.
type Begin struct {
	FinalLSN   lsn.LSN // LSN of the commit record
	CommitTime Timestamp
	Xid        uint32
}

// Commit closes the transaction opened by the preceding Begin.
type Commit struct {
	Flags      uint8
	CommitLSN  lsn.LSN // LSN of the commit record (equals Begin.FinalLSN)
	EndLSN     lsn.LSN // end of the commit record: the position to confirm once the transaction is durable
	CommitTime Timestamp
}

// Origin names the replication origin a transaction came from.
type Origin struct {
	CommitLSN lsn.LSN
	Name      string
}

// Replica identity settings carried by Relation.ReplicaIdentity (pg_class.relreplident).
const (
	ReplicaIdentityDefault byte = 'd'
	ReplicaIdentityNothing byte = 'n'
	ReplicaIdentityFull    byte = 'f'
	ReplicaIdentityIndex   byte = 'i'
)

// ColumnFlagKey marks a column that is part of the replica identity (with FULL, every column).
const ColumnFlagKey uint8 = 1

// RelationColumn describes one column of a Relation.
type RelationColumn struct {
	Flags   uint8
	Name    string
	TypeOID uint32
	TypeMod int32
}

// IsKey reports whether the column is part of the replica identity.
func (c RelationColumn) IsKey() bool { return c.Flags&ColumnFlagKey != 0 }

// Relation describes a table's columns. A Relation returned by the Decoder is freshly allocated and
// owns all of its data: callers may keep it for as long as they like.
type Relation struct {
	Xid             uint32 // transaction id when sent inside a streamed transaction, else 0
	RelationID      uint32
	Namespace       string
	Name            string
	ReplicaIdentity byte
	Columns         []RelationColumn
}

// TypeMsg describes a non-builtin data type used by a later Relation. Like Relation it owns its data.
type TypeMsg struct {
	Xid       uint32
	TypeOID   uint32
	Namespace string
	Name      string
}

// The kinds of a tuple column.
const (
	TupleNull           byte = 'n'
	TupleUnchangedToast byte = 'u'
	TupleText           byte = 't'
	TupleBinary         byte = 'b'
)

// TupleColumn is one column value. Data aliases the frame passed to Decode and is valid only until
// the next call to Decode.
type TupleColumn struct {
	Kind byte
	Data []byte
}

// Tuple is a row image. Its Columns slice is reused by the Decoder between calls.
type Tuple struct {
	Columns []TupleColumn
}

// Old tuple kinds of Update and Delete.
const (
	OldNone byte = 0   // no old tuple was sent
	OldKey  byte = 'K' // only the replica-identity key columns are set; others are null
	OldFull byte = 'O' // the full old row (REPLICA IDENTITY FULL)
)

// Insert is a new row.
type Insert struct {
	Xid        uint32
	RelationID uint32
	New        Tuple
}

// Update is a changed row. Old is set when OldKind is OldKey or OldFull.
type Update struct {
	Xid        uint32
	RelationID uint32
	OldKind    byte
	Old        Tuple
	New        Tuple
}

// Delete is a removed row. Old holds the key (OldKey) or the full row (OldFull).
type Delete struct {
	Xid        uint32
	RelationID uint32
	OldKind    byte
	Old        Tuple
}

// Truncate options.
const (
	TruncateCascade         uint8 = 1
	TruncateRestartIdentity uint8 = 2
)

// Truncate empties one or more tables. RelationIDs is reused by the Decoder between calls.
type Truncate struct {
	Xid         uint32
	Options     uint8
	RelationIDs []uint32
}

// MessageFlagTransactional marks a logical decoding message written inside a transaction.
const MessageFlagTransactional uint8 = 1

// LogicalMessage is the content of pg_logical_emit_message. Prefix and Content alias the frame and
// are valid only until the next call to Decode.
type LogicalMessage struct {
	Xid     uint32
	Flags   uint8
	LSN     lsn.LSN
	Prefix  []byte
	Content []byte
}

// Transactional reports whether the message was emitted inside a transaction.
func (m *LogicalMessage) Transactional() bool { return m.Flags&MessageFlagTransactional != 0 }

// StreamStart opens a block of changes of an in-progress transaction (protocol 2+).
type StreamStart struct {
	Xid          uint32
	FirstSegment bool
}

// StreamStop closes the current stream block.
type StreamStop struct{}

// StreamCommit commits a streamed transaction.
type StreamCommit struct {
	Xid        uint32
	Flags      uint8
	CommitLSN  lsn.LSN
	EndLSN     lsn.LSN
	CommitTime Timestamp
}

// StreamAbort aborts a streamed (sub)transaction. AbortLSN and AbortTime are sent only with protocol 4
// and streaming = parallel; otherwise they are zero.
type StreamAbort struct {
	Xid       uint32
	SubXid    uint32
	AbortLSN  lsn.LSN
	AbortTime Timestamp
}

// BeginPrepare opens a transaction prepared for two-phase commit (protocol 3+).
type BeginPrepare struct {
	PrepareLSN  lsn.LSN
	EndLSN      lsn.LSN
	PrepareTime Timestamp
	Xid         uint32
	GID         string
}

// Prepare ends the changes of a prepared transaction.
type Prepare struct {
	Flags       uint8
	PrepareLSN  lsn.LSN
	EndLSN      lsn.LSN
	PrepareTime Timestamp
	Xid         uint32
	GID         string
}

// CommitPrepared is COMMIT PREPARED of an earlier prepared transaction.
type CommitPrepared struct {
	Flags      uint8
	CommitLSN  lsn.LSN
	EndLSN     lsn.LSN
	CommitTime Timestamp
	Xid        uint32
	GID        string
}

// RollbackPrepared is ROLLBACK PREPARED of an earlier prepared transaction.
type RollbackPrepared struct {
	Flags          uint8
	PrepareEndLSN  lsn.LSN
	RollbackEndLSN lsn.LSN
	PrepareTime    Timestamp
	RollbackTime   Timestamp
	Xid            uint32
	GID            string
}

// StreamPrepare prepares a streamed transaction.
type StreamPrepare struct {
	Flags       uint8
	PrepareLSN  lsn.LSN
	EndLSN      lsn.LSN
	PrepareTime Timestamp
	Xid         uint32
	GID         string
}

func (*Begin) Type() MessageType            { return TypeBegin }
func (*Commit) Type() MessageType           { return TypeCommit }
func (*Origin) Type() MessageType           { return TypeOrigin }
func (*Relation) Type() MessageType         { return TypeRelation }
func (*TypeMsg) Type() MessageType          { return TypeType }
func (*Insert) Type() MessageType           { return TypeInsert }
func (*Update) Type() MessageType           { return TypeUpdate }
func (*Delete) Type() MessageType           { return TypeDelete }
func (*Truncate) Type() MessageType         { return TypeTruncate }
func (*LogicalMessage) Type() MessageType   { return TypeMessage }
func (*StreamStart) Type() MessageType      { return TypeStreamStart }
func (*StreamStop) Type() MessageType       { return TypeStreamStop }
func (*StreamCommit) Type() MessageType     { return TypeStreamCommit }
func (*StreamAbort) Type() MessageType      { return TypeStreamAbort }
func (*BeginPrepare) Type() MessageType     { return TypeBeginPrepare }
func (*Prepare) Type() MessageType          { return TypePrepare }
func (*CommitPrepared) Type() MessageType   { return TypeCommitPrepared }
func (*RollbackPrepared) Type() MessageType { return TypeRollbackPrepared }
func (*StreamPrepare) Type() MessageType    { return TypeStreamPrepare }
