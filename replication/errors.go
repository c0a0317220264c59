package replication

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/internal/pgsql"
)

// Sentinels for the conditions callers branch on. An *Error matches exactly one of them with
// errors.Is, and also matches its cause (for example a *pgconn.PgError with errors.As).
var (
	// ErrDeadline: Receive's deadline passed before a whole message arrived. Not fatal: the
	// connection stays usable and a partly read message resumes at the next Receive.
	ErrDeadline = errors.New("receive deadline passed")
	// ErrStreamEnded: the server ended the replication stream (CopyDone or CommandComplete), for
	// example because it is shutting down. Reconnecting may help.
	ErrStreamEnded = errors.New("server ended the replication stream")
	// ErrClosed: the connection was closed or broken by an earlier failure.
	ErrClosed = errors.New("replication connection closed")
	// ErrNotStreaming: Receive or SendStatus was called before StartReplication succeeded.
	ErrNotStreaming = errors.New("replication connection is not streaming")
	// ErrStreaming: a command was called while the connection is streaming.
	ErrStreaming = errors.New("replication connection is streaming")
	// ErrProtocol: the server sent something the protocol does not allow here.
	ErrProtocol = errors.New("replication protocol violation")

	ErrWALLevel          = errors.New("wal_level is not logical")
	ErrReplicationRole   = errors.New("role lacks the REPLICATION attribute")
	ErrAuthFailed        = errors.New("password authentication failed")
	ErrNoPassword        = errors.New("the server asks for a password and none was given")
	ErrNoHBAEntry        = errors.New("pg_hba.conf does not allow the connection")
	ErrTooManyWALSenders = errors.New("no free WAL sender (max_wal_senders)")
	ErrNoFreeSlot        = errors.New("no free replication slot (max_replication_slots)")
	ErrSlotActive        = errors.New("replication slot is active for another process")
	ErrSlotMismatch      = errors.New("replication slot belongs to another plugin or database")
	ErrSlotLost          = errors.New("replication slot is lost")
	ErrSlotMissing       = errors.New("replication slot does not exist")
	ErrPublication       = errors.New("publication is missing or incomplete")
	ErrTableMissing      = errors.New("configured table does not exist")
	ErrPermission        = errors.New("permission denied")
	ErrUnreachable       = errors.New("server unreachable")
	ErrTLS               = errors.New("TLS setup failed")
	ErrDatabaseMissing   = errors.New("database does not exist")
	ErrServerVersion     = errors.New("PostgreSQL version not supported")
	// ErrFailoverUnsupported: source.failover on a server older than PostgreSQL 17.
	ErrFailoverUnsupported = errors.New("failover slots need PostgreSQL 17 or newer")
)

// Error is a failure with its cause and the fix spelled out. Kind is one of the sentinels above.
type Error struct {
	Kind  error  // sentinel for errors.Is
	Check string // short name of what was checked: "wal_level", "slot", "connect", …
	Msg   string // what is wrong
	Fix   string // what to do about it
	Err   error  // underlying cause (often a *pgconn.PgError), may be nil
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Msg)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(RedactURL(e.Err.Error()))
	}
	if e.Fix != "" {
		b.WriteString("; fix: ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// Unwrap returns the sentinel and the cause, so errors.Is and errors.As see both.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// FrameError is a malformed CopyData frame: its kind byte, its length and what was expected.
type FrameError struct {
	Kind byte
	Len  int
	Want string
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("malformed replication frame %q: %d bytes, want %s", e.Kind, e.Len, e.Want)
}

// Is makes a FrameError match ErrProtocol.
func (e *FrameError) Is(target error) bool { return target == ErrProtocol }

// IsRetryable reports whether reconnecting may cure err: network failures, the server shutting
// down or starting up (57P01, 57P02, 57P03), no free WAL sender (53300), a server-ended stream, a
// broken connection. Configuration errors (authentication, wal_level, slot, publication, TLS
// verification…) and cancellation are not.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		switch e.Kind {
		case ErrUnreachable, ErrTooManyWALSenders:
			return true
		}
		return false
	}
	if errors.Is(err, ErrConfig) || errors.Is(err, ErrProtocol) || errors.Is(err, ErrNotStreaming) || errors.Is(err, ErrStreaming) {
		return false
	}
	if errors.Is(err, ErrDeadline) || errors.Is(err, ErrStreamEnded) || errors.Is(err, ErrClosed) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02", "57P03", "53300":
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08")
	}
	if isTLSError(err) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}

func isTLSError(err error) bool {
	var (
		ua   x509.UnknownAuthorityError
		he   x509.HostnameError
		ci   x509.CertificateInvalidError
		cve  *tls.CertificateVerificationError
		rhe  tls.RecordHeaderError
		alrt tls.AlertError
	)
	return errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) || errors.As(err, &cve) ||
		errors.As(err, &rhe) || errors.As(err, &alrt) ||
		strings.Contains(err.Error(), "server refused TLS connection") ||
		strings.Contains(err.Error(), "tls: ")
}

// WALLevelFix is the fix for a server whose wal_level is not logical.
const WALLevelFix = "set wal_level = logical (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL"

// RoleFix is the fix for a role that may not open a replication connection.
func RoleFix(user string) string {
	return fmt.Sprintf("ALTER ROLE %s WITH REPLICATION (as a superuser), or connect as a role that has it", pgsql.QuoteIdent(user))
}

// classifyConnect explains a failed connection attempt to addr.
func classifyConnect(addr, user, db string, err error) error {
	where := fmt.Sprintf("connect to %s as %s (database %s)", addr, user, db)
	// target_session_attrs turned every server that answered away as a standby (or read-only):
	// during a failover, until the standby is promoted. Worth waiting for.
	notPrimary := &Error{Kind: ErrUnreachable, Check: "connect", Msg: where + ": no server that answered is the primary (target_session_attrs)", Err: err,
		Fix: "promote a standby, or name the primary in source.url; pgstream retries"}
	standby := errors.Is(err, pgconn.ErrReadOnlyConnection) || errors.Is(err, pgconn.ErrStandbyConnection)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01":
			if !passwordGiven(err) {
				return &Error{Kind: ErrNoPassword, Check: "authentication", Msg: where + ": no password was given for role " + user, Err: err,
					Fix: "set it in source.url, source.password_file, PGPASSWORD or ~/.pgpass (or the file PGPASSFILE names); the server's pg_hba.conf asks for one"}
			}
			return &Error{Kind: ErrAuthFailed, Check: "authentication", Msg: where + ": wrong password for role " + user, Err: err,
				Fix: "check the password in source.url, source.password_file, PGPASSWORD or ~/.pgpass (ALTER ROLE " + pgsql.QuoteIdent(user) + " PASSWORD '…' sets it)"}
		case "28000":
			return &Error{Kind: ErrNoHBAEntry, Check: "authentication", Msg: where + ": the server's pg_hba.conf has no entry allowing this connection", Err: err,
				Fix: "add a line for database " + db + ", user " + user + " and this client address to pg_hba.conf (for example \"hostssl " + db + " " + user + " 10.0.0.0/8 scram-sha-256\"; a TLS-only entry needs sslmode=require or stronger), then SELECT pg_reload_conf()"}
		case "42501":
			return &Error{Kind: ErrReplicationRole, Check: "role", Msg: where + ": role " + user + " may not open a replication connection", Err: err, Fix: RoleFix(user)}
		case "53300":
			return &Error{Kind: ErrTooManyWALSenders, Check: "max_wal_senders", Msg: where + ": every WAL sender (or connection slot) is in use", Err: err,
				Fix: "raise max_wal_senders (and max_connections if needed) and restart PostgreSQL, or stop another replication client"}
		case "3D000":
			return &Error{Kind: ErrDatabaseMissing, Check: "connect", Msg: where + ": database " + db + " does not exist", Err: err,
				Fix: "fix the database name in source.url"}
		case "55000":
			return &Error{Kind: ErrWALLevel, Check: "wal_level", Msg: where + ": logical replication is off", Err: err, Fix: WALLevelFix}
		case "57P01", "57P02", "57P03":
			return &Error{Kind: ErrUnreachable, Check: "connect", Msg: where + ": the server is starting up or shutting down", Err: err,
				Fix: "wait for PostgreSQL to finish starting; pgstream retries"}
		}
		if standby {
			return notPrimary
		}
		return fmt.Errorf("%s: %w", where, err)
	}
	if standby {
		return notPrimary
	}
	if isTLSError(err) {
		return &Error{Kind: ErrTLS, Check: "tls", Msg: where + ": TLS failed", Err: err,
			Fix: "check sslmode and sslrootcert in source.url: sslrootcert must be the CA that signed the server certificate, and the host name must match the certificate (sslmode=verify-full); the server needs ssl = on for sslmode=require or stronger"}
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", where, err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) {
		return &Error{Kind: ErrUnreachable, Check: "connect", Msg: "cannot " + where, Err: err,
			Fix: "check that PostgreSQL is running and listening on " + addr + " (listen_addresses, port), that the host name resolves and that no firewall blocks it"}
	}
	return fmt.Errorf("%s: %w", where, err)
}

// passwordGiven reports whether the failed attempt err sent a password. pgconn has no "no password"
// error of its own, unlike libpq: without one it answers the server's challenge with an empty
// password, and the server refuses it with 28P01 like a wrong one. The configuration of the attempt
// (URL, source.password_file, PGPASSWORD or the password file, as resolved) tells them apart.
func passwordGiven(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Config != nil {
		return ce.Config.Password != ""
	}
	return true
}

// classifyCommand explains an error returned by a replication command or query. Only SQLSTATE
// codes are inspected; for 55000 (object not in prerequisite state) the server is asked which
// prerequisite is missing. The connection must be idle (not streaming).
func (c *Conn) classifyCommand(ctx context.Context, what string, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		if c.pg.IsClosed() {
			return fmt.Errorf("%s: %w: %w", what, ErrClosed, err)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	switch pgErr.Code {
	case "55000":
		if level, qerr := c.queryValue(ctx, "SHOW wal_level"); qerr == nil && level != "logical" {
			return &Error{Kind: ErrWALLevel, Check: "wal_level", Msg: what + ": wal_level is " + level + ", logical decoding needs logical", Err: err, Fix: WALLevelFix}
		}
		if si, qerr := c.SlotInfo(ctx); qerr == nil && si.Exists && si.Invalidated() != "" {
			return c.slotLostError(si, err)
		}
	case "42501":
		return &Error{Kind: ErrReplicationRole, Check: "role", Msg: what + ": role " + c.user + " lacks the privilege", Err: err, Fix: RoleFix(c.user)}
	case "53300":
		return &Error{Kind: ErrTooManyWALSenders, Check: "max_wal_senders", Msg: what + ": every WAL sender is in use", Err: err,
			Fix: "raise max_wal_senders and restart PostgreSQL, or stop another replication client"}
	case "53400":
		return &Error{Kind: ErrNoFreeSlot, Check: "max_replication_slots", Msg: what + ": every replication slot is in use", Err: err,
			Fix: "raise max_replication_slots and restart PostgreSQL, or drop an unused slot (SELECT pg_drop_replication_slot(slot_name) for a row of pg_replication_slots)"}
	case "55006":
		pid := int32(0)
		if si, qerr := c.SlotInfo(ctx); qerr == nil {
			pid = si.ActivePID
		}
		return SlotActiveError(c.cfg.Slot, what, pid, err)
	case "42704":
		return &Error{Kind: ErrSlotMissing, Check: "slot", Msg: what + ": replication slot " + c.cfg.Slot + " does not exist", Err: err, Fix: c.createSlotFix()}
	}
	return fmt.Errorf("%s: %w", what, err)
}
