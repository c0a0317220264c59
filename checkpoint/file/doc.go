// Package file is the checkpoint store of type "file": one Checkpoint in one JSON file, saved
// atomically (a temporary file, fsync, rename, fsync of the directory). The file carries a format
// version and a CRC-32C of its payload, so a damaged file is reported (checkpoint.ErrCorrupt)
// rather than mistaken for a missing one. A failed fsync is fatal: see checkpoint.ErrFatal. Save
// writes format version 2; Load also reads version 1, which has no snapshot progress.
//
// All file access goes through the small FS interface, so that tests can inject faults.
//
// A blank import registers the type with package checkpoint; the checkpoint section's path key
// is Config.Path.
package file
