// Package walparse decodes the messages of PostgreSQL's pgoutput logical replication plugin,
// protocol versions 1 to 4, as described in "Logical Replication Message Formats"
// (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html) and written by
// src/backend/replication/logical/proto.c.
//
// The package is pure: bytes in, messages out. It does no I/O, logs nothing and starts no goroutines.
// A Decoder takes the payload of one XLogData message at a time and returns one of the message types
// of messages.go, or a *DecodeError naming the message type, the offset in the frame and a cause that
// callers test with errors.Is (ErrShortMessage, ErrTrailingBytes, ErrUnknownMessage, ErrMalformed,
// ErrTxState, ErrInvalidOptions). It never panics on any input.
//
// Beyond the wire format the Decoder validates the transaction state the messages imply: Begin and
// Commit pair up with matching LSNs, changes arrive only inside a transaction or a stream block,
// stream blocks neither nest nor overlap a transaction, Stream Commit/Abort/Prepare name a transaction
// that was streamed, and Prepare closes the Begin Prepare with the same xid and prepare LSN. Inside a
// stream block (protocol 2 and later) change, Relation, Type and Message messages carry a leading
// xid; the Decoder tracks the block itself.
//
// Values are reported as sent: tuple columns stay in the text or binary form the server chose, and an
// empty Relation or Type Namespace means pg_catalog (the server abbreviates it that way).
//
// Buffer lifetimes: the Decoder reuses one value per message type. A returned message, and every
// []byte in it (tuple column Data, LogicalMessage Prefix and Content), aliases the frame passed to
// Decode and is valid only until the next call to Decode; copy what must outlive it. *Relation and
// *TypeMsg are the exception: they are freshly allocated and own their data. Decoding Begin, Commit,
// Insert, Update, Delete, Truncate and Message allocates nothing once the reused slices have grown.
//
// A Decoder is not safe for concurrent use; use one per replication stream.
package walparse
