// Package file is the sink that appends change events to a local file as JSON Lines: one event's
// envelope per line, each line ended by '\n'.
//
// Write returns only after the batch's bytes are fsynced, so an acknowledged event survives a crash
// of pgstream or of the machine. A crash in the middle of a Write can leave a partial last line; Open
// cuts such a torn tail back to the last complete line before appending, so every line of the file
// is a complete event. Events of a batch not yet acknowledged may already be in the file when
// pgstream stops; they are written again after the restart, so readers should treat the event id
// ("<commit_lsn>/<seq>") as the key for de-duplication.
//
// The sink must be the file's only writer and the file must stay at its path. Before each batch
// the open file's size is compared with what the sink wrote, and after the fsync the size again and
// the path's identity (device and inode): a file deleted, moved, replaced, truncated or appended to
// by someone else fails the Write with ErrFatal instead of acknowledging changes nobody can read.
package file
