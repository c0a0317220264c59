// Package events turns decoded pgoutput row messages (walparse) into pgstream's JSON change events
// (sinks.Event): the envelope with op, before, after, source and timestamps, and the key object.
// It is the one writer of the envelope (docs/format.md): the Encoder's change, message and
// snapshot read events and the transaction markers (Markers) all go through envelope.go, their id
// is sinks.Event.AppendID's, and every JSON string is escaped by appendString (jsonstr.go).
//
// Values arrive in PostgreSQL's text output format ("Logical Streaming Replication Protocol",
// https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html, TupleData with
// kind 't'); the replication session is expected to set DateStyle=ISO, TimeZone=UTC,
// IntervalStyle=postgres, extra_float_digits=1 and bytea_output=hex. Each column's type is resolved
// once, when its Relation message arrives: builtin types from a table generated from a real server
// (builtin_types.go), other types through a Catalog (domains to their base type, arrays to their
// element type and delimiter, enums and everything else to strings). The per-row path is then a loop
// over precomputed per-column writers.
//
// An Encoder is not safe for concurrent use. The Key and Value of an event it returns alias buffers
// owned by the Encoder and stay valid only until the next call on it; the caller copies them.
package events
