package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/internal/events"
	"github.com/pgstream/pgstream/replication"
)

// lazyCatalog answers the encoder's catalog questions over an ordinary connection that it opens on
// first use and opens again after the server went away. Used only by the replication goroutine.
type lazyCatalog struct {
	conn  sqlConn
	inner events.Catalog
}

func newLazyCatalog(src replication.Config) *lazyCatalog {
	return &lazyCatalog{conn: sqlConn{src: src}}
}

var _ events.Catalog = (*lazyCatalog)(nil)

func (c *lazyCatalog) get(ctx context.Context) (events.Catalog, error) {
	if !c.conn.fresh() {
		return c.inner, nil
	}
	conn, err := c.conn.get(ctx)
	if err != nil {
		return nil, fmt.Errorf("open catalog connection: %w", err)
	}
	c.inner = events.NewCatalog(conn)
	return c.inner, nil
}

// pg returns the catalog connection, opening it when needed.
func (c *lazyCatalog) pg(ctx context.Context) (*pgconn.PgConn, error) {
	if _, err := c.get(ctx); err != nil {
		return nil, err
	}
	return c.conn.conn, nil
}

// retry runs f, and once more on a fresh connection when the first connection had died.
func retry[T any](ctx context.Context, c *lazyCatalog, f func(events.Catalog) (T, error)) (T, error) {
	var zero T
	for attempt := 0; ; attempt++ {
		cat, err := c.get(ctx)
		if err != nil {
			return zero, err
		}
		v, err := f(cat)
		if err == nil || attempt > 0 || !c.conn.fresh() {
			return v, err
		}
	}
}

func (c *lazyCatalog) ResolveType(ctx context.Context, oid uint32) (events.TypeInfo, error) {
	return retry(ctx, c, func(cat events.Catalog) (events.TypeInfo, error) { return cat.ResolveType(ctx, oid) })
}

func (c *lazyCatalog) PrimaryKey(ctx context.Context, relationID uint32) ([]string, error) {
	return retry(ctx, c, func(cat events.Catalog) ([]string, error) { return cat.PrimaryKey(ctx, relationID) })
}

// walSenderTimeout reads the server's wal_sender_timeout.
func (c *lazyCatalog) walSenderTimeout(ctx context.Context) (time.Duration, error) {
	if _, err := c.get(ctx); err != nil {
		return 0, err
	}
	res := c.conn.conn.ExecParams(ctx, "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_sender_timeout'", nil, nil, nil, nil).Read()
	if res.Err != nil {
		return 0, res.Err
	}
	if len(res.Rows) != 1 {
		return 0, fmt.Errorf("wal_sender_timeout not found")
	}
	var ms int64
	if _, err := fmt.Sscan(string(res.Rows[0][0]), &ms); err != nil {
		return 0, err
	}
	return time.Duration(ms) * time.Millisecond, nil
}

func (c *lazyCatalog) close() { c.conn.close() }
