package inspect

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/replication"
)

// MinStandbyMajor is the oldest PostgreSQL major version on which a hot standby can decode: logical
// decoding on a standby came with PostgreSQL 16.
const MinStandbyMajor = 16

// InRecovery reports whether the server pg is connected to is a standby (pg_is_in_recovery()).
func InRecovery(ctx context.Context, pg *pgconn.PgConn) (bool, error) {
	v, err := pgsql.Value(ctx, pg, "SELECT pg_is_in_recovery()::text")
	if err != nil {
		return false, fmt.Errorf("read pg_is_in_recovery(): %w", err)
	}
	return v == "true", nil
}

// standbyProblems checks the standby source pg is connected to: its version, hot_standby_feedback,
// and, when cfg sets source.primary_url, that it names this standby's primary.
func standbyProblems(ctx context.Context, pg *pgconn.PgConn, cfg replication.Config) []Problem {
	var probs []Problem
	if v := pgsql.ServerMajor(pg); v < MinStandbyMajor {
		probs = append(probs, Problem{Check: "standby",
			Message: fmt.Sprintf("the server is a standby running PostgreSQL %d; logical decoding on a standby needs PostgreSQL %d or newer", v, MinStandbyMajor),
			Fix:     fmt.Sprintf("point source.url at the primary, or upgrade to PostgreSQL %d or newer", MinStandbyMajor)})
		return probs
	}
	feedback, err := pgsql.Value(ctx, pg, "SHOW hot_standby_feedback")
	switch {
	case err != nil:
		probs = append(probs, Problem{Check: "hot_standby_feedback", Message: "read hot_standby_feedback: " + replication.RedactURL(err.Error()),
			Fix: "check the connection and the role's privileges"})
	case feedback != "on":
		probs = append(probs, Problem{Check: "hot_standby_feedback",
			Message: "hot_standby_feedback is off on the standby: without it the primary's vacuum removes catalog rows the slot still needs, " +
				"and the standby then invalidates the slot (rows_removed), losing the changes not yet delivered",
			Fix: "on the standby run ALTER SYSTEM SET hot_standby_feedback = on; SELECT pg_reload_conf(); and let it stream from the primary " +
				"through a physical slot (primary_slot_name), so that the primary keeps the rows while the standby is disconnected"})
	}
	if pc, ok := cfg.Primary(); ok {
		probs = append(probs, checkPrimary(ctx, pg, pc)...)
	}
	return probs
}

// checkPrimary checks that pc names the primary of the standby pg is connected to: reachable, the
// same system identifier, not itself in recovery, and with wal_level logical.
func checkPrimary(ctx context.Context, pg *pgconn.PgConn, pc replication.Config) []Problem {
	const check = "primary"
	fix := "set source.primary_url to the primary this standby replicates from (its primary_conninfo)"
	mine, err := pgsql.Value(ctx, pg, "SELECT system_identifier::text FROM pg_control_system()")
	if err != nil {
		return []Problem{{Check: check, Message: "read the standby's system identifier: " + replication.RedactURL(err.Error()), Fix: "check the role's privileges"}}
	}
	primary, err := replication.NewSQLConn(ctx, pc)
	if err != nil {
		return []Problem{{Check: check, Message: "connect to source.primary_url: " + replication.RedactURL(err.Error()), Fix: fix + ", and check that it accepts pgstream's role"}}
	}
	defer primary.Close(context.Background())
	v, err := pgsql.Value(ctx, primary, "SELECT system_identifier::text || ' ' || pg_is_in_recovery()::text || ' ' || current_setting('wal_level') FROM pg_control_system()")
	if err != nil {
		return []Problem{{Check: check, Message: "query source.primary_url: " + replication.RedactURL(err.Error()), Fix: fix}}
	}
	f := strings.Fields(v)
	if len(f) != 3 {
		return []Problem{{Check: check, Message: fmt.Sprintf("query source.primary_url: unexpected answer %q", v), Fix: fix}}
	}
	var probs []Problem
	if f[0] != mine {
		probs = append(probs, Problem{Check: check,
			Message: fmt.Sprintf("source.primary_url is another cluster (system identifier %s), not the primary of the standby (system identifier %s)", f[0], mine),
			Fix:     fix})
	}
	if f[1] == "true" {
		probs = append(probs, Problem{Check: check, Message: "source.primary_url is a standby too, where nothing can be written",
			Fix: "point source.primary_url at the primary at the top of the replication chain"})
	}
	if f[2] != "logical" {
		probs = append(probs, Problem{Check: "wal_level", Message: "wal_level is " + f[2] + " on the primary; decoding on a standby needs logical there",
			Fix: replication.WALLevelFix + " (on the primary)"})
	}
	return probs
}

// standbyPublicationProblem is the finding for a publication a standby cannot create or extend
// itself: stmt is the statement that would, run on the primary.
func standbyPublicationProblem(cfg replication.Config, stmt string) Problem {
	return Problem{Check: "publication",
		Message: "publication " + cfg.Publication + " needs " + stmt + ", which a standby cannot run",
		Fix:     "set source.primary_url (pgstream runs it on the primary), or run it on the primary yourself"}
}
