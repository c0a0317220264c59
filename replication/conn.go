package replication

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/lsn"
)

// state of a Conn.
type state int

const (
	stateIdle      state = iota // command mode: queries and replication commands allowed
	stateStreaming              // inside CopyBoth
	stateEnded                  // the server ended CopyBoth; Close still has to answer it
	stateBroken                 // a read or write failed; only Close is useful
)

// Conn is one replication connection (replication=database mode). It is not safe for concurrent
// use: one goroutine owns it.
type Conn struct {
	pg    *pgconn.PgConn
	cfg   Config
	user  string
	db    string
	state state

	status   [34]byte          // reused Standby status update
	copyData pgproto3.CopyData // reused wrapper of status
	deadline time.Time         // the read deadline last set on the socket
	exported string            // snapshot exported by the slot creation, until the next command
	// versionNum is the server's server_version_num once read (serverVersionNum).
	versionNum int
}

// Connect opens a replication connection described by cfg, with its defaults applied (WithDefaults)
// and checked (Validate). The session settings pgoutput formats values with (DateStyle=ISO,
// TimeZone=UTC, IntervalStyle=postgres, extra_float_digits=1, bytea_output=hex,
// client_encoding=UTF8) are sent in the startup packet; application_name is pgstream unless the URL
// names another. TCP keepalives are on. Failures are *Error values naming the address and the fix.
func Connect(ctx context.Context, cfg Config) (*Conn, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc, err := cfg.pgConfig(true)
	if err != nil {
		return nil, err
	}
	pg, err := dial(ctx, pc)
	if err != nil {
		return nil, err
	}
	return &Conn{pg: pg, cfg: cfg, user: pc.User, db: pc.Database}, nil
}

// dial connects as pc says and refuses a server older than MinServerMajor. Its errors name the
// address and the fix.
func dial(ctx context.Context, pc *pgconn.Config) (*pgconn.PgConn, error) {
	pg, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, connectErr(pc, err)
	}
	if err := checkServerVersion(pg); err != nil {
		pg.Close(ctx)
		return nil, err
	}
	return pg, nil
}

// MinServerMajor is the oldest PostgreSQL major version pgstream runs against.
const MinServerMajor = 14

// checkServerVersion refuses a server older than MinServerMajor, from the version it reported at
// startup, before anything deeper fails in a way that does not say why.
func checkServerVersion(pg *pgconn.PgConn) error {
	v := pg.ParameterStatus("server_version")
	if major := pgsql.ServerMajor(pg); major < MinServerMajor {
		return &Error{Kind: ErrServerVersion, Check: "server_version",
			Msg: fmt.Sprintf("the server at %s runs PostgreSQL %s; pgstream needs PostgreSQL %d or newer", pg.Conn().RemoteAddr(), v, MinServerMajor),
			Fix: fmt.Sprintf("upgrade the server to PostgreSQL %d or newer (every version before %d is past its end of life)", MinServerMajor, MinServerMajor)}
	}
	return nil
}

// NewSQLConn opens an ordinary (non-replication) connection with the same address, credentials, TLS
// settings and session settings as Connect, for catalog queries.
func NewSQLConn(ctx context.Context, cfg Config) (*pgconn.PgConn, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc, err := cfg.pgConfig(false)
	if err != nil {
		return nil, err
	}
	return dial(ctx, pc)
}

// Config returns the configuration of the connection, with its defaults applied.
func (c *Conn) Config() Config { return c.cfg }

// PgConn returns the underlying connection, for diagnostics and tests. Using it while streaming
// corrupts the session.
func (c *Conn) PgConn() *pgconn.PgConn { return c.pg }

// SystemInfo is the answer to IDENTIFY_SYSTEM.
type SystemInfo struct {
	SystemID string  // unique cluster identifier (decimal)
	Timeline int32   // current timeline
	XLogPos  lsn.LSN // current WAL flush position
	DBName   string  // database of the connection
}

// IdentifySystem runs IDENTIFY_SYSTEM.
func (c *Conn) IdentifySystem(ctx context.Context) (SystemInfo, error) {
	rows, err := c.query(ctx, "IDENTIFY_SYSTEM")
	if err != nil {
		return SystemInfo{}, c.classifyCommand(ctx, "IDENTIFY_SYSTEM", err)
	}
	if len(rows) != 1 || len(rows[0]) < 4 {
		return SystemInfo{}, fmt.Errorf("IDENTIFY_SYSTEM: %w: want 1 row of 4 columns, got %d rows", ErrProtocol, len(rows))
	}
	r := rows[0]
	tl, err := strconv.ParseInt(r[1], 10, 32)
	if err != nil {
		return SystemInfo{}, fmt.Errorf("IDENTIFY_SYSTEM: %w: timeline %q", ErrProtocol, r[1])
	}
	pos, err := lsn.Parse(r[2])
	if err != nil {
		return SystemInfo{}, fmt.Errorf("IDENTIFY_SYSTEM: %w: xlogpos: %v", ErrProtocol, err)
	}
	return SystemInfo{SystemID: r[0], Timeline: int32(tl), XLogPos: pos, DBName: r[3]}, nil
}

// Close ends the session. When streaming it first ends CopyBoth politely (CopyDone, then it
// discards what the server still sends until ReadyForQuery or ctx ends), then it sends Terminate and
// closes the socket. Close may be called more than once.
func (c *Conn) Close(ctx context.Context) error {
	if c.pg.IsClosed() {
		return nil
	}
	var endErr error
	if c.state == stateStreaming || c.state == stateEnded {
		endErr = c.endCopy(ctx)
	}
	c.state = stateBroken
	_ = c.pg.Conn().SetDeadline(time.Time{})
	err := c.pg.Close(ctx)
	if endErr != nil {
		return endErr
	}
	return err
}

// endCopy sends CopyDone and reads until the server has answered with ReadyForQuery.
func (c *Conn) endCopy(ctx context.Context) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	_ = c.pg.Conn().SetWriteDeadline(deadline)
	c.pg.Frontend().Send(&pgproto3.CopyDone{})
	if err := c.pg.Frontend().Flush(); err != nil {
		return fmt.Errorf("send CopyDone: %w", err)
	}
	_ = c.pg.Conn().SetWriteDeadline(time.Time{})
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("end replication stream: %w", err)
		}
		_ = c.pg.Conn().SetReadDeadline(deadline)
		msg, err := c.pg.ReceiveMessage(context.Background())
		if err != nil {
			if pgconn.Timeout(err) {
				return fmt.Errorf("end replication stream: %w", context.DeadlineExceeded)
			}
			return fmt.Errorf("end replication stream: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			_ = c.pg.Conn().SetReadDeadline(time.Time{})
			c.state = stateIdle
			return nil
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("end replication stream: %w", pgconn.ErrorResponseToPgError(m))
		}
	}
}

// query runs one simple-protocol statement (the only protocol a walsender accepts) and returns
// every row of its last result as text, NULL as "".
func (c *Conn) query(ctx context.Context, sql string) ([][]string, error) {
	switch c.state {
	case stateStreaming, stateEnded:
		return nil, ErrStreaming
	case stateBroken:
		return nil, ErrClosed
	}
	c.exported = ""
	return pgsql.Query(ctx, c.pg, sql)
}

// queryValue returns the first column of the first row ("" when there is none).
func (c *Conn) queryValue(ctx context.Context, sql string) (string, error) {
	rows, err := c.query(ctx, sql)
	if err != nil || len(rows) == 0 || len(rows[0]) == 0 {
		return "", err
	}
	return rows[0][0], nil
}
