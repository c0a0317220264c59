// Package pipeline joins pgstream's stages into the one path a change takes:
//
//	replication connection → frames → walparse.Decoder → events.Encoder → batches
//	  → one worker per sink → checkpoint.Tracker (low watermark over sinks)
//	  → checkpoint store (durable) → standby status update to the server
//
// One goroutine (the one calling Run) owns the replication connection: it receives, decodes and
// encodes, copies each encoded event once into a batch, and hands batches to the sink workers. It
// never blocks on a sink: when the bytes in flight reach Config.MaxInFlightBytes it stops reading
// the connection but keeps sending status updates on time, so a slow sink cannot let
// wal_sender_timeout end the session. The server is only ever told a position (flushed and applied)
// that the checkpoint store already holds durably, and that is a transaction every sink acknowledged.
package pipeline
