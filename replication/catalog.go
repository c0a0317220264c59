package replication

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

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

// Problem is one preflight finding with the fix spelled out.
type Problem struct {
	Check   string // what was checked: wal_level, role, slot, publication, table, max_replication_slots
	Message string // what is wrong
	Fix     string // what to do
}

// SlotInfo reads the configured slot from pg_replication_slots. A missing slot is not an error:
// Exists is false. The row is read whole (SlotRowSQL), so every column the server's version has
// is seen and none it lacks is asked for.
func (c *Conn) SlotInfo(ctx context.Context) (SlotInfo, error) {
	rows, err := c.query(ctx, "SELECT "+SlotRowSQL+" FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = "+quoteLiteral(c.cfg.Slot))
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

// ServerMajor returns the major version of the server pg is connected to, from the server_version
// it reported at startup: 15 for "15.4 (Debian 15.4-1)", 17 for "17beta1", 9 for "9.6.2"; 0 if it
// reported none.
func ServerMajor(pg *pgconn.PgConn) int { return parseMajor(pg.ParameterStatus("server_version")) }

// parseMajor returns the leading number of a server_version, 0 if there is none.
func parseMajor(v string) int {
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(v[:end])
	return n
}

// FailoverMinVersion is the first server_version_num with failover slots (PostgreSQL 17).
const FailoverMinVersion = 170000

// ServerVersionNum returns the server's server_version_num (150004 for 15.4), read once per
// connection.
func (c *Conn) ServerVersionNum(ctx context.Context) (int, error) {
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

// checkFailover refuses source.failover on a server without failover slots.
func (c *Conn) checkFailover(ctx context.Context) error {
	if !c.cfg.Failover {
		return nil
	}
	n, err := c.ServerVersionNum(ctx)
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
	if err := c.checkFailover(ctx); err != nil {
		return si, err
	}
	what := "ALTER_REPLICATION_SLOT " + quoteIdent(c.cfg.Slot) + " (FAILOVER true)"
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
		return si, &Error{Kind: ErrSlotMissing, Check: "slot", Msg: "replication slot " + c.cfg.Slot + " does not exist and source.create_slot is false",
			Fix: c.createSlotFix()}
	}
	what := "create replication slot " + c.cfg.Slot
	if err := c.checkFailover(ctx); err != nil {
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
	head := "CREATE_REPLICATION_SLOT " + quoteIdent(c.cfg.Slot) + " LOGICAL pgoutput"
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
	drop := fmt.Sprintf("drop it if nothing else uses it (SELECT pg_drop_replication_slot(%s)) or choose another source.slot", quoteLiteral(si.Name))
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
		Fix: fmt.Sprintf("drop the slot (SELECT pg_drop_replication_slot(%s)), delete the checkpoint, re-snapshot the tables into the sinks and start again (a new slot is created); to avoid it: %s", quoteLiteral(si.Name), avoid)}
}

func (c *Conn) slotActiveError(what string, pid int32, cause error) error {
	who := "another process"
	if pid != 0 {
		who = fmt.Sprintf("PID %d", pid)
	}
	return &Error{Kind: ErrSlotActive, Check: "slot", Err: cause,
		Msg: fmt.Sprintf("%s: slot %s is active for %s", what, c.cfg.Slot, who),
		Fix: "stop the other consumer or choose another source.slot"}
}

func (c *Conn) createSlotFix() string {
	db := c.db
	if db == "" {
		db = "the source database"
	}
	return fmt.Sprintf("run SELECT pg_create_logical_replication_slot(%s, 'pgoutput') in %s, or set source.create_slot: true", quoteLiteral(c.cfg.Slot), db)
}

// publicationSQL is the statement creating the configured publication.
func (c *Conn) publicationSQL() string {
	if len(c.cfg.Tables) == 0 {
		return "CREATE PUBLICATION " + quoteIdent(c.cfg.Publication) + " FOR ALL TABLES"
	}
	return "CREATE PUBLICATION " + quoteIdent(c.cfg.Publication) + " FOR TABLE " + tableList(c.cfg.Tables)
}

func tableList(tables []string) string {
	q := make([]string, len(tables))
	for i, t := range tables {
		q[i] = qualified(t)
	}
	return strings.Join(q, ", ")
}

type publication struct {
	exists    bool
	allTables bool
	missing   []string // configured tables not in the publication
}

func (c *Conn) readPublication(ctx context.Context) (publication, error) {
	all, err := c.query(ctx, "SELECT puballtables::text FROM pg_publication WHERE pubname = "+quoteLiteral(c.cfg.Publication))
	if err != nil {
		return publication{}, fmt.Errorf("read publication %s: %w", c.cfg.Publication, err)
	}
	if len(all) == 0 {
		return publication{}, nil
	}
	p := publication{exists: true, allTables: all[0][0] == "true"}
	if p.allTables || len(c.cfg.Tables) == 0 {
		return p, nil
	}
	rows, err := c.query(ctx, "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = "+quoteLiteral(c.cfg.Publication))
	if err != nil {
		return publication{}, fmt.Errorf("read publication %s: %w", c.cfg.Publication, err)
	}
	have := make(map[string]bool, len(rows))
	for _, r := range rows {
		have[r[0]] = true
	}
	for _, t := range c.cfg.Tables {
		s, n, _ := SplitTable(t)
		if !have[s+"."+n] {
			p.missing = append(p.missing, t)
		}
	}
	return p, nil
}

// missingTables returns the configured tables that do not exist.
func (c *Conn) missingTables(ctx context.Context) ([]string, error) {
	var missing []string
	for _, t := range c.cfg.Tables {
		v, err := c.queryValue(ctx, "SELECT (to_regclass("+quoteLiteral(qualified(t))+") IS NOT NULL)::text")
		if err != nil {
			return nil, fmt.Errorf("look up table %s: %w", t, err)
		}
		if v != "true" {
			missing = append(missing, t)
		}
	}
	return missing, nil
}

func tableMissingError(t string) *Error {
	return &Error{Kind: ErrTableMissing, Check: "table", Msg: "configured table " + t + " does not exist",
		Fix: "create it or remove it from source.tables (names are schema.table, case-sensitive, schema public when omitted)"}
}

// EnsurePublication creates the publication when it is missing (FOR ALL TABLES, or FOR TABLE the
// configured tables) and adds configured tables an existing publication lacks, when
// create_publication allows; otherwise the error names the statement to run.
func (c *Conn) EnsurePublication(ctx context.Context) error {
	missing, err := c.missingTables(ctx)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return tableMissingError(strings.Join(missing, ", "))
	}
	p, err := c.readPublication(ctx)
	if err != nil {
		return err
	}
	var stmt string
	switch {
	case !p.exists:
		stmt = c.publicationSQL()
		if !*c.cfg.CreatePublication {
			return &Error{Kind: ErrPublication, Check: "publication", Msg: "publication " + c.cfg.Publication + " does not exist and source.create_publication is false",
				Fix: "run " + stmt + " in the source database"}
		}
	case len(p.missing) > 0:
		stmt = "ALTER PUBLICATION " + quoteIdent(c.cfg.Publication) + " ADD TABLE " + tableList(p.missing)
		if !*c.cfg.CreatePublication {
			return &Error{Kind: ErrPublication, Check: "publication",
				Msg: "publication " + c.cfg.Publication + " lacks " + strings.Join(p.missing, ", ") + " and source.create_publication is false",
				Fix: "run " + stmt + " in the source database"}
		}
	default:
		return nil
	}
	if _, err := c.query(ctx, stmt); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			switch pgErr.Code {
			case "42710": // created concurrently
				return nil
			case "42501":
				fix := "run " + stmt + " as the owner of the tables (or a superuser), or grant " + c.user + " ownership"
				if len(c.cfg.Tables) == 0 {
					fix = "run " + stmt + " as a superuser, or list the tables in source.tables (the role must own them)"
				}
				return &Error{Kind: ErrPermission, Check: "publication", Msg: "role " + c.user + " may not run " + stmt, Err: err, Fix: fix}
			}
		}
		return fmt.Errorf("run %s: %w", stmt, err)
	}
	return nil
}

// Preflight checks everything Connect cannot: wal_level, the role's REPLICATION attribute, the
// slot (plugin, database, lost, active, free slots), the publication and the configured tables;
// on a standby also the server version, hot_standby_feedback and source.primary_url. It returns
// every problem found, not just the first; nil means ready.
func (c *Conn) Preflight(ctx context.Context) []Problem {
	var probs []Problem
	add := func(err error) {
		var e *Error
		if errors.As(err, &e) {
			probs = append(probs, e.Problem())
			return
		}
		probs = append(probs, Problem{Check: "query", Message: err.Error(), Fix: "check the connection and the role's privileges"})
	}
	standby, err := c.InRecovery(ctx)
	if err != nil {
		add(err)
	} else if standby {
		probs = append(probs, c.standbyProblems(ctx)...)
	}
	_, hasPrimary := c.cfg.Primary()
	// A publication a standby would have to create or extend is created on the primary, when
	// there is one.
	standbyOnly := standby && !hasPrimary
	if level, err := c.queryValue(ctx, "SHOW wal_level"); err != nil {
		add(err)
	} else if level != "logical" {
		add(&Error{Kind: ErrWALLevel, Check: "wal_level", Msg: "wal_level is " + level + ", logical decoding needs logical", Fix: walLevelFix})
	}
	if err := c.checkFailover(ctx); err != nil {
		add(err)
	}
	super := false
	if rows, err := c.query(ctx, "SELECT rolsuper::text, rolreplication::text FROM pg_roles WHERE rolname = current_user"); err != nil {
		add(err)
	} else if len(rows) == 1 && len(rows[0]) == 2 {
		super = rows[0][0] == "true"
		if !super && rows[0][1] != "true" {
			add(&Error{Kind: ErrReplicationRole, Check: "role", Msg: "role " + c.user + " lacks the REPLICATION attribute", Fix: roleFix(c.user)})
		}
	}
	if si, err := c.SlotInfo(ctx); err != nil {
		add(err)
	} else if si.Exists {
		if err := c.CheckSlot(ctx, si); err != nil {
			add(err)
		}
		if si.Active && si.ActivePID != int32(c.pg.PID()) {
			add(c.slotActiveError("replication slot check", si.ActivePID, nil))
		}
	} else if !*c.cfg.CreateSlot {
		add(&Error{Kind: ErrSlotMissing, Check: "slot", Msg: "replication slot " + c.cfg.Slot + " does not exist and source.create_slot is false", Fix: c.createSlotFix()})
	} else if rows, err := c.query(ctx, "SELECT count(*), current_setting('max_replication_slots') FROM pg_replication_slots"); err != nil {
		add(err)
	} else if len(rows) == 1 && len(rows[0]) == 2 {
		used, _ := strconv.Atoi(rows[0][0])
		max, _ := strconv.Atoi(rows[0][1])
		if used >= max {
			add(&Error{Kind: ErrNoFreeSlot, Check: "max_replication_slots",
				Msg: fmt.Sprintf("all %d replication slots are in use, slot %s cannot be created", max, c.cfg.Slot),
				Fix: "raise max_replication_slots and restart PostgreSQL, or drop an unused slot (SELECT pg_drop_replication_slot(slot_name) for a row of pg_replication_slots)"})
		}
	}
	missing, err := c.missingTables(ctx)
	if err != nil {
		add(err)
	}
	for _, t := range missing {
		add(tableMissingError(t))
	}
	if p, err := c.readPublication(ctx); err != nil {
		add(err)
	} else if !p.exists {
		stmt := c.publicationSQL()
		switch {
		case !*c.cfg.CreatePublication:
			add(&Error{Kind: ErrPublication, Check: "publication", Msg: "publication " + c.cfg.Publication + " does not exist and source.create_publication is false",
				Fix: "run " + stmt + " in the source database" + onPrimary(standby)})
		case len(c.cfg.Tables) == 0 && !super:
			add(&Error{Kind: ErrPermission, Check: "publication", Msg: "publication " + c.cfg.Publication + " does not exist and only a superuser may create it FOR ALL TABLES",
				Fix: "run " + stmt + " as a superuser" + onPrimary(standby) + ", or list the tables in source.tables (the role must own them)"})
		case standbyOnly:
			probs = append(probs, c.standbyPublicationProblem(stmt))
		}
	} else if len(p.missing) > 0 {
		stmt := "ALTER PUBLICATION " + quoteIdent(c.cfg.Publication) + " ADD TABLE " + tableList(p.missing)
		switch {
		case !*c.cfg.CreatePublication:
			add(&Error{Kind: ErrPublication, Check: "publication",
				Msg: "publication " + c.cfg.Publication + " lacks " + strings.Join(p.missing, ", ") + " and source.create_publication is false",
				Fix: "run " + stmt + " in the source database" + onPrimary(standby)})
		case standbyOnly:
			probs = append(probs, c.standbyPublicationProblem(stmt))
		}
	}
	return probs
}

// onPrimary is the place a statement is run, said in a fix: on the primary when the source is a
// standby.
func onPrimary(standby bool) string {
	if standby {
		return " on the primary"
	}
	return ""
}
