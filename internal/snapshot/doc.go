// Package snapshot reads the rows of published tables as snapshot events: op "r" events in the
// envelope, value mapping and key of streamed inserts (package events), so that a consumer cannot
// tell a row read by a snapshot from one that arrived through replication, except by its op and id.
//
// ListTables and LookupTables find the tables of a publication with their size, column list and row
// filter; Plan splits each into chunks of heap pages (checkpoint.TableSnapshot); LoadRelation
// describes a table as pgoutput's Relation message would ("Logical Replication Message Formats",
// https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html); a Reader reads
// one chunk at a time with COPY (SELECT ctid, xmin, … WHERE ctid range) TO STDOUT in text format
// (https://www.postgresql.org/docs/current/sql-copy.html) inside the caller's transaction, and parses
// its rows into walparse tuples holding the same output-function text pgoutput sends.
//
// A row's event id names the row version (generation, table OID, ctid, xmin; see
// sinks.Event.AppendID), so a chunk read again after a crash yields the same ids. The per-row path
// allocates nothing: rows are parsed in place in the COPY payloads, and only a row split across
// payloads is copied.
package snapshot
