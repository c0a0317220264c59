package inspect

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/replication"
)

// Problem is one preflight finding with the fix spelled out.
type Problem struct {
	Check   string // what was checked: wal_level, role, slot, publication, table, max_replication_slots
	Message string // what is wrong
	Fix     string // what to do
}

// HasCheck reports whether probs holds a finding of the named check.
func HasCheck(probs []Problem, check string) bool {
	for _, p := range probs {
		if p.Check == check {
			return true
		}
	}
	return false
}

// problemOf returns err as a preflight finding: a *replication.Error with its check, message and
// fix, any other error as a failed query.
func problemOf(err error) Problem {
	var e *replication.Error
	if !errors.As(err, &e) {
		return Problem{Check: "query", Message: err.Error(), Fix: "check the connection and the role's privileges"}
	}
	msg := e.Msg
	if e.Err != nil {
		msg += ": " + replication.RedactURL(e.Err.Error())
	}
	return Problem{Check: e.Check, Message: msg, Fix: e.Fix}
}

// Preflight checks everything replication.Connect cannot: wal_level, the role's REPLICATION
// attribute, the slot (plugin, database, lost, active, free slots), the publication and the
// configured tables; on a standby also the server version, hot_standby_feedback and
// source.primary_url. It reads through conn, which must not be streaming, and changes nothing. It
// returns every problem found, not just the first; nil means ready.
func Preflight(ctx context.Context, conn *replication.Conn) []Problem {
	pg, cfg := conn.PgConn(), conn.Config()
	var probs []Problem
	add := func(err error) { probs = append(probs, problemOf(err)) }
	standby, err := InRecovery(ctx, pg)
	if err != nil {
		add(err)
	} else if standby {
		probs = append(probs, standbyProblems(ctx, pg, cfg)...)
	}
	if level, err := pgsql.Value(ctx, pg, "SHOW wal_level"); err != nil {
		add(err)
	} else if level != "logical" {
		add(&replication.Error{Kind: replication.ErrWALLevel, Check: "wal_level", Msg: "wal_level is " + level + ", logical decoding needs logical",
			Fix: replication.WALLevelFix})
	}
	if err := conn.CheckFailover(ctx); err != nil {
		add(err)
	}
	super := false
	if rows, err := pgsql.Query(ctx, pg, "SELECT rolsuper::text, rolreplication::text, current_user FROM pg_roles WHERE rolname = current_user"); err != nil {
		add(err)
	} else if len(rows) == 1 && len(rows[0]) == 3 {
		super = rows[0][0] == "true"
		if user := rows[0][2]; !super && rows[0][1] != "true" {
			add(&replication.Error{Kind: replication.ErrReplicationRole, Check: "role", Msg: "role " + user + " lacks the REPLICATION attribute",
				Fix: replication.RoleFix(user)})
		}
	}
	probs = append(probs, slotProblems(ctx, conn)...)
	return append(probs, publicationProblems(ctx, conn, standby, super)...)
}

// slotProblems checks the configured slot: when it exists, that it can be streamed from and is
// not active for another process; when it does not, that it may and can be created.
func slotProblems(ctx context.Context, conn *replication.Conn) []Problem {
	pg, cfg := conn.PgConn(), conn.Config()
	si, err := conn.SlotInfo(ctx)
	switch {
	case err != nil:
		return []Problem{problemOf(err)}
	case si.Exists:
		var probs []Problem
		if err := conn.CheckSlot(ctx, si); err != nil {
			probs = append(probs, problemOf(err))
		}
		if si.Active && si.ActivePID != int32(pg.PID()) {
			probs = append(probs, problemOf(replication.SlotActiveError(cfg.Slot, "replication slot check", si.ActivePID, nil)))
		}
		return probs
	case !*cfg.CreateSlot:
		return []Problem{problemOf(conn.SlotMissingError())}
	}
	rows, err := pgsql.Query(ctx, pg, "SELECT count(*), current_setting('max_replication_slots') FROM pg_replication_slots")
	if err != nil {
		return []Problem{problemOf(err)}
	}
	if len(rows) == 1 && len(rows[0]) == 2 {
		used, _ := strconv.Atoi(rows[0][0])
		max, _ := strconv.Atoi(rows[0][1])
		if used >= max {
			return []Problem{problemOf(&replication.Error{Kind: replication.ErrNoFreeSlot, Check: "max_replication_slots",
				Msg: fmt.Sprintf("all %d replication slots are in use, slot %s cannot be created", max, cfg.Slot),
				Fix: "raise max_replication_slots and restart PostgreSQL, or drop an unused slot (SELECT pg_drop_replication_slot(slot_name) for a row of pg_replication_slots)"})}
		}
	}
	return nil
}

// publicationProblems checks the configured tables and what the publication needs
// (replication.Conn.PlanPublication): whether pgstream may and can run it, and where.
func publicationProblems(ctx context.Context, conn *replication.Conn, standby, super bool) []Problem {
	cfg := conn.Config()
	p, err := conn.PlanPublication(ctx)
	if err != nil {
		return []Problem{problemOf(err)}
	}
	var probs []Problem
	for _, t := range p.MissingTables {
		probs = append(probs, problemOf(replication.TableMissingError(t)))
	}
	if p.Stmt == "" {
		return probs
	}
	_, hasPrimary := cfg.Primary()
	// A publication a standby would have to create or extend is created on the primary, when
	// there is one.
	standbyOnly := standby && !hasPrimary
	switch {
	case !*cfg.CreatePublication:
		probs = append(probs, problemOf(p.RefusedError(standby)))
	case !p.Exists && len(cfg.Tables) == 0 && !super:
		probs = append(probs, problemOf(&replication.Error{Kind: replication.ErrPermission, Check: "publication",
			Msg: "publication " + cfg.Publication + " does not exist and only a superuser may create it FOR ALL TABLES",
			Fix: "run " + p.Stmt + " as a superuser" + onPrimary(standby) + ", or list the tables in source.tables (the role must own them)"}))
	case standbyOnly:
		probs = append(probs, standbyPublicationProblem(cfg, p.Stmt))
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
