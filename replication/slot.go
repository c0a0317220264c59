package replication

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/pgstream/pgstream/lsn"
)

// SlotInfo describes the configured replication slot as pg_replication_slots shows it. A column the
// server's version lacks is left zero: conflicting before PostgreSQL 16, inactive_since and
// invalidation_reason before 17.
type SlotInfo struct {
	Name, Plugin, Database string
	Exists, Active         bool
	ActivePID              int32   // 0 when not active
	ConfirmedFlush         lsn.LSN // after creation: the consistent point
	RestartLSN             lsn.LSN
	WALStatus              string // reserved, extended, unreserved, lost
	// SafeWALSize is how much more WAL the server can write before the slot is in danger of being
	// lost; nil when max_slot_wal_keep_size is -1 (unlimited) and for a lost slot.
	SafeWALSize *int64
	// Conflicting reports, from PostgreSQL 16 on, whether the server invalidated the slot for a
	// conflict with recovery (rows_removed, wal_level_insufficient); nil before 16.
	Conflicting *bool
	// InvalidationReason is why the server invalidated the slot (PostgreSQL 17 and later):
	// wal_removed, rows_removed, wal_level_insufficient or, from 18 on, idle_timeout; "" while the
	// slot is valid. Invalidated derives it for older servers.
	InvalidationReason string
	// InactiveSince is when the slot was last released by its consumer (PostgreSQL 17 and later);
	// zero while a consumer streams from it, and before 17.
	InactiveSince time.Time
	// Failover reports a failover slot, one that standbys with sync_replication_slots keep a copy
	// of (the failover column, PostgreSQL 17 and newer; false before).
	Failover bool
	Created  bool // EnsureSlot created it just now
}

// SlotRowSQL selects a row of pg_replication_slots (aliased s) as one JSON object, for
// ParseSlotRow. Every server version renders the columns it has and no others, so the columns
// added over the versions (conflicting in PostgreSQL 16, inactive_since, invalidation_reason and
// failover in 17) are read where they exist, without asking for the version.
const SlotRowSQL = "to_jsonb(s)::text"

// slotRow is a row of pg_replication_slots as to_jsonb renders it: a column the server lacks is
// absent, a NULL is null.
type slotRow struct {
	SlotName           string    `json:"slot_name"`
	Plugin             string    `json:"plugin"`
	Database           string    `json:"database"`
	Active             bool      `json:"active"`
	ActivePID          int32     `json:"active_pid"`
	ConfirmedFlush     string    `json:"confirmed_flush_lsn"`
	RestartLSN         string    `json:"restart_lsn"`
	WALStatus          string    `json:"wal_status"`
	SafeWALSize        *int64    `json:"safe_wal_size"`
	Conflicting        *bool     `json:"conflicting"`
	InvalidationReason string    `json:"invalidation_reason"`
	InactiveSince      time.Time `json:"inactive_since"`
	Failover           bool      `json:"failover"`
}

// ParseSlotRow decodes a row of pg_replication_slots that SlotRowSQL selected. Columns the
// server's version lacks are left zero (SlotInfo says which).
func ParseSlotRow(data []byte) (SlotInfo, error) {
	var r slotRow
	if err := json.Unmarshal(data, &r); err != nil {
		return SlotInfo{}, fmt.Errorf("%w: pg_replication_slots row %.200q: %v", ErrProtocol, data, err)
	}
	if r.SlotName == "" {
		return SlotInfo{}, fmt.Errorf("%w: pg_replication_slots row without slot_name: %.200q", ErrProtocol, data)
	}
	si := SlotInfo{Name: r.SlotName, Exists: true, Plugin: r.Plugin, Database: r.Database, Active: r.Active, ActivePID: r.ActivePID,
		WALStatus: r.WALStatus, SafeWALSize: r.SafeWALSize, Conflicting: r.Conflicting, InvalidationReason: r.InvalidationReason,
		InactiveSince: r.InactiveSince, Failover: r.Failover}
	var err error
	if r.ConfirmedFlush != "" {
		if si.ConfirmedFlush, err = lsn.Parse(r.ConfirmedFlush); err != nil {
			return SlotInfo{}, fmt.Errorf("%w: confirmed_flush_lsn: %v", ErrProtocol, err)
		}
	}
	if r.RestartLSN != "" {
		if si.RestartLSN, err = lsn.Parse(r.RestartLSN); err != nil {
			return SlotInfo{}, fmt.Errorf("%w: restart_lsn: %v", ErrProtocol, err)
		}
	}
	return si, nil
}

// Invalidated returns why the server invalidated the slot, "" while the slot is usable
// (InvalidationCause).
func (si SlotInfo) Invalidated() string {
	return InvalidationCause(si.WALStatus, si.InvalidationReason, si.Conflicting != nil && *si.Conflicting, si.RestartLSN == 0)
}

// InvalidationCause returns why the server invalidated a slot, "" while it is usable, from its
// wal_status, invalidation_reason, conflicting and whether its restart_lsn is null ("" and false
// where the server lacks a column). PostgreSQL 17 and later name the cause in invalidation_reason.
// Before, it follows from what each version can invalidate a slot for: 14 and 15 only for removed
// WAL (wal_status lost), and 16 also for a conflict with recovery. 16 sets conflicting for either
// cause, but removing the WAL also clears restart_lsn.
func InvalidationCause(walStatus, reason string, conflicting, restartNull bool) string {
	switch {
	case reason != "":
		return reason
	case walStatus == "lost" && restartNull:
		return "wal_removed"
	case conflicting:
		return "rows_removed or wal_level_insufficient"
	case walStatus == "lost":
		return "wal_removed"
	}
	return ""
}

// Invalidation says what an invalidation cause (InvalidationCause) means and how to keep it from
// happening again.
func Invalidation(cause string) (what, avoid string) {
	switch cause {
	case "wal_removed":
		return "the server removed WAL the slot still needed, because the slot retained more than max_slot_wal_keep_size",
			"raise max_slot_wal_keep_size (or set it to -1) to cover the longest time pgstream may be stopped or behind at the peak WAL rate"
	case "idle_timeout":
		return "no consumer streamed from it for longer than idle_replication_slot_timeout",
			"raise idle_replication_slot_timeout above the longest time pgstream may be stopped or disconnected (its initial snapshot included), or set it to 0"
	case "rows_removed":
		return "the primary removed catalog rows the slot still needed (a conflict with recovery on this standby)",
			"turn hot_standby_feedback on and give the standby a physical replication slot on its primary"
	case "wal_level_insufficient":
		return "the primary no longer runs with wal_level = logical (a conflict with recovery on this standby)",
			"keep wal_level = logical on the primary"
	case "rows_removed or wal_level_insufficient":
		return "it conflicted with recovery on this standby: the primary removed catalog rows it needed, or no longer runs with wal_level = logical",
			"turn hot_standby_feedback on, give the standby a physical replication slot on its primary, and keep wal_level = logical there"
	}
	return "the server invalidated it", "find the cause in the server's log"
}
