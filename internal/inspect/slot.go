package inspect

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/replication"
)

// SlotState is the replication slot and the server settings that decide whether it is safe, as
// last polled. A field of a column or setting the server's version lacks stays zero (and out of
// the JSON where marked omitempty).
type SlotState struct {
	Polled             time.Time `json:"polled"`
	WALStatus          string    `json:"wal_status"`              // reserved, extended, unreserved, lost
	SafeWALSize        *int64    `json:"safe_wal_size,omitempty"` // nil: unlimited
	RetainedWAL        int64     `json:"retained_wal_bytes"`      // current WAL position - restart_lsn
	ServerVersion      string    `json:"server_version"`
	WalSenderTimeout   string    `json:"wal_sender_timeout"`
	MaxSlotWALKeepSize string    `json:"max_slot_wal_keep_size"`
	// MaxSlotWALKeepBytes is max_slot_wal_keep_size in bytes; -1: unlimited.
	MaxSlotWALKeepBytes int64 `json:"max_slot_wal_keep_bytes"`
	InRecovery          bool  `json:"in_recovery"`
	// Failover reports whether the slot is a failover slot; nil before PostgreSQL 17, which has none.
	Failover *bool `json:"failover,omitempty"`
	// SynchronizedStandbySlots is the server's synchronized_standby_slots (PostgreSQL 17+): the
	// physical slots of the standbys that receive WAL before pgstream does.
	SynchronizedStandbySlots string `json:"synchronized_standby_slots,omitempty"`
	// Conflicting (PostgreSQL 16 and later; nil before): the server invalidated the slot for a
	// conflict with recovery.
	Conflicting *bool `json:"conflicting,omitempty"`
	// InactiveSince (PostgreSQL 17 and later) is when the slot was last released by its consumer;
	// nil while one streams from it, and before 17.
	InactiveSince *time.Time `json:"inactive_since,omitempty"`
	// InvalidationReason (PostgreSQL 17 and later) is why the server invalidated the slot:
	// wal_removed, rows_removed, wal_level_insufficient, idle_timeout; "" while it is valid.
	InvalidationReason string `json:"invalidation_reason,omitempty"`
	// IdleReplicationSlotTimeout is the setting as the server shows it (PostgreSQL 18 and later;
	// "" before), IdleTimeoutSeconds the same in seconds; 0 disables it.
	IdleReplicationSlotTimeout string `json:"idle_replication_slot_timeout,omitempty"`
	IdleTimeoutSeconds         int64  `json:"idle_replication_slot_timeout_seconds,omitempty"`
	restartNull                bool   // restart_lsn is null: the server removed the slot's WAL
}

// Invalidated returns why the server invalidated the slot, "" while it is usable
// (replication.InvalidationCause).
func (st SlotState) Invalidated() string {
	return replication.InvalidationCause(st.WALStatus, st.InvalidationReason, st.Conflicting != nil && *st.Conflicting, st.restartNull)
}

// IdleTimeout is idle_replication_slot_timeout; 0 when disabled or unknown to the server.
func (st SlotState) IdleTimeout() time.Duration {
	return time.Duration(st.IdleTimeoutSeconds) * time.Second
}

// pollSlotSQL reads the slot (whole, so that the columns of every server version are seen) and the
// settings that matter for it. current_setting(…, true) is NULL for a setting the server lacks.
const pollSlotSQL = `SELECT ` + replication.SlotRowSQL + `,
  coalesce((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END - s.restart_lsn)::bigint::text, '0'),
  current_setting('server_version'), current_setting('wal_sender_timeout'), current_setting('max_slot_wal_keep_size'),
  pg_is_in_recovery()::text,
  (SELECT CASE WHEN setting::bigint < 0 THEN -1 ELSE setting::bigint * 1024 * 1024 END FROM pg_settings WHERE name = 'max_slot_wal_keep_size')::text,
  coalesce(current_setting('idle_replication_slot_timeout', true), ''),
  coalesce((SELECT setting || ' ' || coalesce(unit, '') FROM pg_settings WHERE name = 'idle_replication_slot_timeout'), ''),
  coalesce(current_setting('synchronized_standby_slots', true), '')
FROM pg_replication_slots s WHERE s.slot_name = $1`

// PollSlot reads the slot and the settings that matter for it on conn, an ordinary connection.
func PollSlot(ctx context.Context, conn *pgconn.PgConn, slot string) (SlotState, error) {
	res := conn.ExecParams(ctx, pollSlotSQL, [][]byte{[]byte(slot)}, nil, nil, nil).Read()
	if res.Err != nil {
		return SlotState{}, res.Err
	}
	if len(res.Rows) == 0 {
		return SlotState{}, fmt.Errorf("slot %s does not exist", slot)
	}
	st, err := parseSlotPoll(res.Rows[0])
	if err != nil {
		return SlotState{}, fmt.Errorf("slot %s: %w", slot, err)
	}
	st.Polled = time.Now()
	return st, nil
}

// parseSlotPoll decodes a row of pollSlotSQL.
func parseSlotPoll(r [][]byte) (SlotState, error) {
	if len(r) != 10 {
		return SlotState{}, fmt.Errorf("%d columns, want 10", len(r))
	}
	si, err := replication.ParseSlotRow(r[0])
	if err != nil {
		return SlotState{}, err
	}
	st := SlotState{WALStatus: si.WALStatus, SafeWALSize: si.SafeWALSize, Conflicting: si.Conflicting, InvalidationReason: si.InvalidationReason,
		ServerVersion: string(r[2]), WalSenderTimeout: string(r[3]), MaxSlotWALKeepSize: string(r[4]), InRecovery: string(r[5]) == "true",
		IdleReplicationSlotTimeout: string(r[7]), SynchronizedStandbySlots: string(r[9]), restartNull: si.RestartLSN == 0}
	var failover struct {
		Failover *bool `json:"failover"` // the column exists from PostgreSQL 17 on
	}
	if err := json.Unmarshal(r[0], &failover); err == nil {
		st.Failover = failover.Failover
	}
	if !si.InactiveSince.IsZero() {
		since := si.InactiveSince
		st.InactiveSince = &since
	}
	if st.RetainedWAL, err = strconv.ParseInt(string(r[1]), 10, 64); err != nil {
		return SlotState{}, fmt.Errorf("retained WAL %q: %w", r[1], err)
	}
	if st.MaxSlotWALKeepBytes, err = strconv.ParseInt(string(r[6]), 10, 64); err != nil {
		return SlotState{}, fmt.Errorf("max_slot_wal_keep_size %q: %w", r[6], err)
	}
	if len(r[8]) > 0 {
		d, err := settingDuration(string(r[8]))
		if err != nil {
			return SlotState{}, fmt.Errorf("idle_replication_slot_timeout: %w", err)
		}
		st.IdleTimeoutSeconds = int64(d / time.Second)
	}
	return st, nil
}

// settingDuration reads a time setting from pg_settings' "setting unit" (for example "60 s",
// "5 min", "200 ms"); a setting without a unit is in seconds.
func settingDuration(v string) (time.Duration, error) {
	num, unit, _ := strings.Cut(v, " ")
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("setting %q: %w", v, err)
	}
	per := map[string]time.Duration{"": time.Second, "us": time.Microsecond, "ms": time.Millisecond, "s": time.Second,
		"min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	d, ok := per[unit]
	if !ok {
		return 0, fmt.Errorf("setting %q: unknown unit %q", v, unit)
	}
	return time.Duration(n) * d, nil
}
