package pipeline

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/replication"
)

// sqlConn is an ordinary connection to a server of the source (source.url, or source.primary_url)
// that is opened on first use and opened again after the server went away. Every part that runs
// SQL on a connection of its own holds one. It is used by one goroutine at a time.
type sqlConn struct {
	src  replication.Config
	conn *pgconn.PgConn
}

// get returns the connection, opening it when there is none or the last one is closed.
func (c *sqlConn) get(ctx context.Context) (*pgconn.PgConn, error) {
	if c.conn != nil && !c.conn.IsClosed() {
		return c.conn, nil
	}
	conn, err := replication.NewSQLConn(ctx, c.src)
	if err != nil {
		return nil, err
	}
	c.conn = conn
	return conn, nil
}

// fresh reports whether the connection get returns next is a new one.
func (c *sqlConn) fresh() bool { return c.conn == nil || c.conn.IsClosed() }

// close closes the connection, if open.
func (c *sqlConn) close() {
	closeSQL(c.conn)
	c.conn = nil
}

// closeSQL closes an ordinary connection (nil is fine), waiting at most 5s for a polite goodbye.
func closeSQL(conn *pgconn.PgConn) {
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
