// Package checkpoint keeps pgstream's durable progress: which transactions every sink holds, which
// WAL position may be confirmed to the server, and how far each unfinished table snapshot got.
//
// It has four parts:
//
//   - Store is where the checkpoint lives: Load, an atomic and durable Save, and Reconcile and Handed
//     naming the store. Store types register themselves (Register, Lookup) as sink types do, and the
//     checkpoint section's store key picks one; package checkpoint/file is the file store, and
//     checkpoint/storetest the contract every store passes.
//   - TableSnapshot records a table snapshot's progress: the table is split into chunks of heap pages
//     by ctid, and the checkpoint lists the chunks every sink holds, so that a restart reads only the
//     others again.
//   - Tracker follows batches from the moment the producer hands them to the sinks until every sink has
//     acknowledged them, and yields the low watermark: the newest Position whose batch and every
//     earlier batch are acknowledged by every sink. AckedSeq also names that batch, so that the
//     snapshot chunks it and the earlier batches carried are known to be held too.
//   - Reconcile compares a loaded Checkpoint with the state of the replication slot on the server and
//     decides where replication resumes, refusing every case where changes would be silently skipped.
//
// The positions follow the streaming replication protocol's standby status update
// (https://www.postgresql.org/docs/current/protocol-replication.html): the flush position confirmed to
// the server is the end LSN of the newest transaction every sink holds, or, when the stream is idle
// and nothing is in flight, a keepalive's WAL end.
package checkpoint
