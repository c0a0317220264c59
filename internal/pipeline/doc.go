// Package pipeline joins pgstream's stages into the one path a change takes:
//
//	replication connection → frames → walparse.Decoder → events.Encoder → batches
//	  → one worker per sink → checkpoint.Tracker (low watermark over sinks)
//	  → checkpoint store (durable) → standby status update to the server
//
// Pipeline is the wiring: New builds the parts, open decides where to start (Inspect) and Run owns
// their goroutines and the shutdown order. Each part owns its state:
//
//   - session (session.go) owns the replication connection: receive loop, status updates,
//     reconnects. One goroutine, the one calling Run, runs it.
//   - applier (apply.go) turns decoded messages into batches on that goroutine; its txState pairs
//     Begin with Commit and drops what a reconnect re-sends.
//   - snapshotter (snapshot.go) reads table snapshots with its own worker goroutines and learns
//     from the stream through the streamHooks the applier calls.
//   - worker (fanout.go), one per sink and goroutine, writes batches and acknowledges them in order.
//   - checkpointer (checkpointer.go) saves what every sink acknowledged, on its own goroutine.
//
// The replication goroutine never blocks on a sink: when the bytes in flight reach
// Config.MaxInFlightBytes it stops reading the connection but keeps sending status updates on time,
// so a slow sink cannot let wal_sender_timeout end the session. The server is only ever told a
// position (flushed and applied) that the checkpoint store already holds durably, and that is a
// transaction every sink acknowledged.
package pipeline
