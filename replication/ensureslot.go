package replication

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/lsn"
)

// SlotInfo reads the configured slot from pg_replication_slots. A missing slot is not an error:
// Exists is false. The row is read whole (SlotRowSQL), so every column the server's version has
// is seen and none it lacks is asked for.
func (c *Conn) SlotInfo(ctx context.Context) (SlotInfo, error) {
	rows, err := c.query(ctx, "SELECT "+SlotRowSQL+" FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = "+pgsql.QuoteLiteral(c.cfg.Slot))
	if err != nil {
		return SlotInfo{}, fmt.Errorf("read slot %s: %w", c.cfg.Slot, err)
	}
	if len(rows) == 0 {
		return SlotInfo{Name: c.cfg.Slot}, nil
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return SlotInfo{}, fmt.Errorf("read slot %s: %w: %d rows", c.cfg.Slot, ErrProtocol, len(rows))
	}
	si, err := ParseSlotRow([]byte(rows[0][0]))
	if err != nil {
		return SlotInfo{}, fmt.Errorf("read slot %s: %w", c.cfg.Slot, err)
	}
	return si, nil
}

// FailoverMinVersion is the first server_version_num with failover slots (PostgreSQL 17).
const FailoverMinVersion = 170000

// serverVersionNum returns the server's server_version_num (150004 for 15.4), read once per
// connection.
func (c *Conn) serverVersionNum(ctx context.Context) (int, error) {
	if c.versionNum != 0 {
		return c.versionNum, nil
	}
	v, err := c.queryValue(ctx, "SHOW server_version_num")
	if err != nil {
		return 0, fmt.Errorf("read server_version_num: %w", err)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("read server_version_num: %w: %q", ErrProtocol, v)
	}
	c.versionNum = n
	return n, nil
}

// CheckFailover refuses source.failover on a server without failover slots.
func (c *Conn) CheckFailover(ctx context.Context) error {
	if !c.cfg.Failover {
		return nil
	}
	n, err := c.serverVersionNum(ctx)
	if err != nil {
		return err
	}
	if n >= FailoverMinVersion {
		return nil
	}
	return &Error{Kind: ErrFailoverUnsupported, Check: "failover",
		Msg: fmt.Sprintf("source.failover needs PostgreSQL 17 or newer (failover slots), the server runs PostgreSQL %s (server_version_num %d, at least %d needed)",
			c.pg.ParameterStatus("server_version"), n, FailoverMinVersion),
		Fix: "upgrade the server to PostgreSQL 17 or newer, or set source.failover: false (a promoted standby then has no copy of the slot, and pgstream refuses to resume on it)"}
}

// EnsureFailover makes the existing slot si a failover slot when source.failover asks for one
// and it is not one yet (ALTER_REPLICATION_SLOT name (FAILOVER true)), and returns the slot as it
// is then. Without source.failover, or for a failover slot already, it changes nothing.
func (c *Conn) EnsureFailover(ctx context.Context, si SlotInfo) (SlotInfo, error) {
	if !c.cfg.Failover || !si.Exists || si.Failover {
		return si, nil
	}
	if err := c.CheckFailover(ctx); err != nil {
		return si, err
	}
	what := "ALTER_REPLICATION_SLOT " + pgsql.QuoteIdent(c.cfg.Slot) + " (FAILOVER true)"
	if _, err := c.query(ctx, what); err != nil {
		return si, c.classifyCommand(ctx, what, err)
	}
	after, err := c.SlotInfo(ctx)
	if err != nil {
		return si, err
	}
	if !after.Failover {
		return si, fmt.Errorf("%s: %w: the slot's failover column is still false", what, ErrProtocol)
	}
	after.Created = si.Created
	return after, nil
}

// currentDB is the database this connection is attached to.
func (c *Conn) currentDB(ctx context.Context) (string, error) {
	if c.db != "" {
		return c.db, nil
	}
	db, err := c.queryValue(ctx, "SELECT current_database()")
	if err != nil {
		return "", err
	}
	c.db = db
	return db, nil
}

// EnsureSlot checks the configured slot and creates it when it is missing and create_slot allows
// (CREATE_REPLICATION_SLOT … LOGICAL pgoutput NOEXPORT_SNAPSHOT). After a creation Created is
// true and ConfirmedFlush is the consistent point. An existing slot must use pgoutput, belong to
// this database and not be lost.
func (c *Conn) EnsureSlot(ctx context.Context) (SlotInfo, error) {
	si, _, err := c.ensureSlot(ctx, false)
	return si, err
}

// EnsureSlotExport is EnsureSlot, except that a slot it creates exports its snapshot
// (CREATE_REPLICATION_SLOT … LOGICAL pgoutput EXPORT_SNAPSHOT): the database exactly as of the
// slot's consistent point, so that reading the tables in it and streaming from the consistent point
// sees every row once. snapshot is the name to pass to SET TRANSACTION SNAPSHOT on ordinary
// connections; it stays importable only until the next command on c (or c closes), so every reader
// must import it first. snapshot is "" when the slot existed already.
func (c *Conn) EnsureSlotExport(ctx context.Context) (si SlotInfo, snapshot string, err error) {
	return c.ensureSlot(ctx, true)
}

func (c *Conn) ensureSlot(ctx context.Context, export bool) (SlotInfo, string, error) {
	si, err := c.ensureSlotInner(ctx, export)
	return si, c.exported, err
}

func (c *Conn) ensureSlotInner(ctx context.Context, export bool) (SlotInfo, error) {
	c.exported = ""
	si, err := c.SlotInfo(ctx)
	if err != nil {
		return si, err
	}
	if si.Exists {
		if err := c.CheckSlot(ctx, si); err != nil {
			return si, err
		}
		return c.EnsureFailover(ctx, si)
	}
	if !*c.cfg.CreateSlot {
		return si, c.SlotMissingError()
	}
	what := "create replication slot " + c.cfg.Slot
	if err := c.CheckFailover(ctx); err != nil {
		return si, err
	}
	rows, err := c.query(ctx, c.createSlotCommand(export))
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42710" { // created concurrently
			si, err := c.SlotInfo(ctx)
			if err != nil {
				return si, err
			}
			if err := c.CheckSlot(ctx, si); err != nil {
				return si, err
			}
			return c.EnsureFailover(ctx, si)
		}
		return si, c.classifyCommand(ctx, what, err)
	}
	if len(rows) != 1 || len(rows[0]) < 2 {
		return si, fmt.Errorf("%s: %w: want 1 row, got %d", what, ErrProtocol, len(rows))
	}
	cp, err := lsn.Parse(rows[0][1])
	if err != nil {
		return si, fmt.Errorf("%s: %w: consistent_point: %v", what, ErrProtocol, err)
	}
	if export {
		if len(rows[0]) < 3 || rows[0][2] == "" {
			return si, fmt.Errorf("%s: %w: no snapshot_name", what, ErrProtocol)
		}
		// The slot's row is read on another connection: a command here would end the export.
		si.Exists, si.Created, si.ConfirmedFlush, si.Plugin = true, true, cp, "pgoutput"
		c.exported = rows[0][2]
		return si, nil
	}
	if si, err = c.SlotInfo(ctx); err != nil {
		return si, err
	}
	si.Created = true
	si.ConfirmedFlush = cp
	return si, nil
}

// createSlotCommand is the CREATE_REPLICATION_SLOT command for the configured slot. A failover
// slot needs the option list of PostgreSQL 15 and newer, where FAILOVER is an option (17+); the
// snapshot keywords are its SNAPSHOT option there.
func (c *Conn) createSlotCommand(export bool) string {
	head := "CREATE_REPLICATION_SLOT " + pgsql.QuoteIdent(c.cfg.Slot) + " LOGICAL pgoutput"
	if c.cfg.Failover {
		snap := "'nothing'"
		if export {
			snap = "'export'"
		}
		return head + " (SNAPSHOT " + snap + ", FAILOVER true)"
	}
	if export {
		return head + " EXPORT_SNAPSHOT"
	}
	return head + " NOEXPORT_SNAPSHOT"
}

// CheckSlot checks that an existing slot (as SlotInfo read it) can be streamed from: it uses
// pgoutput, belongs to the connection's database and is not lost. It changes nothing.
func (c *Conn) CheckSlot(ctx context.Context, si SlotInfo) error {
	db, err := c.currentDB(ctx)
	if err != nil {
		return fmt.Errorf("read current database: %w", err)
	}
	drop := fmt.Sprintf("drop it if nothing else uses it (SELECT pg_drop_replication_slot(%s)) or choose another source.slot", pgsql.QuoteLiteral(si.Name))
	if si.Plugin != "pgoutput" {
		plugin := si.Plugin
		if plugin == "" {
			plugin = "none (a physical slot)"
		}
		return &Error{Kind: ErrSlotMismatch, Check: "slot",
			Msg: fmt.Sprintf("replication slot %s uses plugin %s, pgstream needs pgoutput", si.Name, plugin), Fix: drop}
	}
	if si.Database != db {
		return &Error{Kind: ErrSlotMismatch, Check: "slot",
			Msg: fmt.Sprintf("replication slot %s belongs to database %s, pgstream streams database %s", si.Name, si.Database, db),
			Fix: drop + " (a slot is dropped from its own database or with the function above)"}
	}
	if si.Invalidated() != "" {
		return c.slotLostError(si, nil)
	}
	return nil
}

// slotLostError refuses a slot the server invalidated, naming why and the way out.
func (c *Conn) slotLostError(si SlotInfo, cause error) error {
	reason := si.Invalidated()
	what, avoid := Invalidation(reason)
	return &Error{Kind: ErrSlotLost, Check: "slot", Err: cause,
		Msg: fmt.Sprintf("replication slot %s is lost (invalidated: %s): %s, so the changes since %s are gone from it", si.Name, reason, what, si.ConfirmedFlush),
		Fix: fmt.Sprintf("drop the slot (SELECT pg_drop_replication_slot(%s)), delete the checkpoint, re-snapshot the tables into the sinks and start again (a new slot is created); to avoid it: %s", pgsql.QuoteLiteral(si.Name), avoid)}
}

// SlotActiveError is the error for slot, active for the process pid (0 when unknown), found by
// what; cause may be nil.
func SlotActiveError(slot, what string, pid int32, cause error) *Error {
	who := "another process"
	if pid != 0 {
		who = fmt.Sprintf("PID %d", pid)
	}
	return &Error{Kind: ErrSlotActive, Check: "slot", Err: cause,
		Msg: fmt.Sprintf("%s: slot %s is active for %s", what, slot, who),
		Fix: "stop the other consumer or choose another source.slot"}
}

// SlotMissingError is the error for the configured slot, missing while source.create_slot is
// false.
func (c *Conn) SlotMissingError() *Error {
	return &Error{Kind: ErrSlotMissing, Check: "slot", Msg: "replication slot " + c.cfg.Slot + " does not exist and source.create_slot is false",
		Fix: c.createSlotFix()}
}

// createSlotFix is the fix for a missing slot: create it by hand, or let pgstream.
func (c *Conn) createSlotFix() string {
	db := c.db
	if db == "" {
		db = "the source database"
	}
	return fmt.Sprintf("run SELECT pg_create_logical_replication_slot(%s, 'pgoutput') in %s, or set source.create_slot: true", pgsql.QuoteLiteral(c.cfg.Slot), db)
}
