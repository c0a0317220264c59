package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/internal/pgsql"
)

// publicationSQL is the statement creating the configured publication.
func (c *Conn) publicationSQL() string {
	if len(c.cfg.Tables) == 0 {
		return "CREATE PUBLICATION " + pgsql.QuoteIdent(c.cfg.Publication) + " FOR ALL TABLES"
	}
	return "CREATE PUBLICATION " + pgsql.QuoteIdent(c.cfg.Publication) + " FOR TABLE " + tableList(c.cfg.Tables)
}

// tableList is the quoted, comma-separated list of configured table names.
func tableList(tables []string) string {
	q := make([]string, len(tables))
	for i, t := range tables {
		q[i] = qualified(t)
	}
	return strings.Join(q, ", ")
}

// qualified returns the quoted schema.table for a configured table name.
func qualified(t string) string {
	schema, table, _ := SplitTable(t)
	return pgsql.Qualified(schema, table)
}

// PublicationPlan is what the configured publication and tables need before streaming, as
// PlanPublication found them: nothing (Stmt ""), the publication's creation, or the configured
// tables it lacks added to it.
type PublicationPlan struct {
	Name string // the configured publication
	// MissingTables lists the configured tables that do not exist: no statement can cover them.
	MissingTables []string
	Exists        bool     // the publication exists
	Lacks         []string // configured tables the existing publication does not cover
	// Stmt is CREATE PUBLICATION … when the publication does not exist, ALTER PUBLICATION … ADD
	// TABLE … when it lacks tables, "" when it is ready.
	Stmt string
}

// PlanPublication reads the configured tables and the publication and decides what EnsurePublication
// runs. It changes nothing.
func (c *Conn) PlanPublication(ctx context.Context) (PublicationPlan, error) {
	p := PublicationPlan{Name: c.cfg.Publication}
	for _, t := range c.cfg.Tables {
		v, err := c.queryValue(ctx, "SELECT (to_regclass("+pgsql.QuoteLiteral(qualified(t))+") IS NOT NULL)::text")
		if err != nil {
			return p, fmt.Errorf("look up table %s: %w", t, err)
		}
		if v != "true" {
			p.MissingTables = append(p.MissingTables, t)
		}
	}
	all, err := c.query(ctx, "SELECT puballtables::text FROM pg_publication WHERE pubname = "+pgsql.QuoteLiteral(c.cfg.Publication))
	if err != nil {
		return p, fmt.Errorf("read publication %s: %w", c.cfg.Publication, err)
	}
	if len(all) == 0 {
		p.Stmt = c.publicationSQL()
		return p, nil
	}
	p.Exists = true
	if all[0][0] == "true" || len(c.cfg.Tables) == 0 {
		return p, nil
	}
	rows, err := c.query(ctx, "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = "+pgsql.QuoteLiteral(c.cfg.Publication))
	if err != nil {
		return p, fmt.Errorf("read publication %s: %w", c.cfg.Publication, err)
	}
	have := make(map[string]bool, len(rows))
	for _, r := range rows {
		have[r[0]] = true
	}
	for _, t := range c.cfg.Tables {
		s, n, _ := SplitTable(t)
		if !have[s+"."+n] {
			p.Lacks = append(p.Lacks, t)
		}
	}
	if len(p.Lacks) > 0 {
		p.Stmt = "ALTER PUBLICATION " + pgsql.QuoteIdent(c.cfg.Publication) + " ADD TABLE " + tableList(p.Lacks)
	}
	return p, nil
}

// RefusedError is the error for a plan that source.create_publication=false forbids running:
// it names the statement to run by hand, on the primary when the source is a standby.
func (p PublicationPlan) RefusedError(standby bool) *Error {
	where := " in the source database"
	if standby {
		where += " on the primary"
	}
	msg := "publication " + p.Name + " does not exist and source.create_publication is false"
	if p.Exists {
		msg = "publication " + p.Name + " lacks " + strings.Join(p.Lacks, ", ") + " and source.create_publication is false"
	}
	return &Error{Kind: ErrPublication, Check: "publication", Msg: msg, Fix: "run " + p.Stmt + where}
}

// TableMissingError is the error for configured tables (t, comma-separated) that do not exist.
func TableMissingError(t string) *Error {
	return &Error{Kind: ErrTableMissing, Check: "table", Msg: "configured table " + t + " does not exist",
		Fix: "create it or remove it from source.tables (names are schema.table, case-sensitive, schema public when omitted)"}
}

// EnsurePublication creates the publication when it is missing (FOR ALL TABLES, or FOR TABLE the
// configured tables) and adds configured tables an existing publication lacks, when
// create_publication allows; otherwise the error names the statement to run.
func (c *Conn) EnsurePublication(ctx context.Context) error {
	p, err := c.PlanPublication(ctx)
	if err != nil {
		return err
	}
	if len(p.MissingTables) > 0 {
		return TableMissingError(strings.Join(p.MissingTables, ", "))
	}
	stmt := p.Stmt
	if stmt == "" {
		return nil
	}
	if !*c.cfg.CreatePublication {
		return p.RefusedError(false)
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
