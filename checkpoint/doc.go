// Package checkpoint keeps pgstream's durable progress: which transactions every sink holds, and which
// WAL position may be confirmed to the server.
//
// It has three parts:
//
//   - FileStore saves and loads a Checkpoint atomically (a temporary file, fsync, rename, fsync of the
//     directory). The file is JSON carrying a format version and a CRC-32C of its payload, so a damaged
//     file is reported rather than mistaken for a missing one. A failed fsync is fatal: see ErrFatal.
//   - Tracker follows batches from the moment the producer hands them to the sinks until every sink has
//     acknowledged them, and yields the low watermark: the newest Position whose batch and every
//     earlier batch are acknowledged by every sink.
//   - Reconcile compares a loaded Checkpoint with the state of the replication slot on the server and
//     decides where replication resumes, refusing every case where changes would be silently skipped.
//
// The positions follow the streaming replication protocol's standby status update
// (https://www.postgresql.org/docs/current/protocol-replication.html): the flush position confirmed to
// the server is the end LSN of the newest transaction every sink holds, or, when the stream is idle
// and nothing is in flight, a keepalive's WAL end.
package checkpoint
