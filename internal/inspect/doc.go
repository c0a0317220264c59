// Package inspect reads a PostgreSQL server's state and reports what pgstream finds there, each
// finding with its fix: Preflight lists every problem a run would refuse to start on (wal_level,
// the role, the slot, the publication and its tables, free slots, and on a standby its version,
// hot_standby_feedback and source.primary_url), InRecovery says whether the source is a standby,
// PollSlot reads the slot and the settings that decide whether it is safe (SlotState), and
// Failover reads, server by server, what a failover of the source needs (Findings).
//
// It changes nothing on any server: creating the slot and the publication and streaming belong to
// package replication, whose connection and configuration it reads through; running SQL and
// quoting belong to package pgsql. Neither imports it.
//
// Its functions are safe for concurrent use on different connections; a connection passed to one
// is used by that call alone until it returns.
package inspect
