// Package stdout is the sink that writes change events to an io.Writer, os.Stdout in production, as
// JSON Lines: one event's envelope per line, each line ended by '\n'.
//
// Write returns once the batch's bytes were handed to the writer; there is no stronger durability to
// wait for on a stream, so a consumer reading pgstream's output through a pipe may see a batch again
// after a restart.
package stdout
