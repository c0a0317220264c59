package replication

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/lsn"
)

// Frame kinds inside CopyData.
const (
	KindXLogData  = 'w'
	KindKeepalive = 'k'
)

// writeTimeout bounds one status update write; a stuck write breaks the session (retryable).
const writeTimeout = 30 * time.Second

// pgEpoch is the PostgreSQL timestamp epoch; protocol times are microseconds since it.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func pgTime(us int64) time.Time { return pgEpoch.Add(time.Duration(us) * time.Microsecond) }

func pgMicros(t time.Time) int64 { return t.Sub(pgEpoch).Microseconds() }

// Frame is one message of the replication stream.
//
// Data aliases the connection's read buffer: it is valid only until the next Receive (or any other
// call on the Conn). Copy what must live longer.
type Frame struct {
	Kind           byte      // KindXLogData or KindKeepalive
	WALStart       lsn.LSN   // 'w': WAL position of the start of Data
	ServerWALEnd   lsn.LSN   // current end of WAL on the server
	ServerTime     time.Time // server's clock when it sent the message
	ReplyRequested bool      // 'k': the server asks for a status update now
	Data           []byte    // 'w': one pgoutput message
}

// StartReplication runs START_REPLICATION SLOT … LOGICAL start with the pgoutput options
// proto_version, publication_names and messages 'true', and waits for CopyBothResponse. start 0
// means the slot's confirmed position.
func (c *Conn) StartReplication(ctx context.Context, start lsn.LSN, protoVersion int) error {
	switch c.state {
	case stateStreaming, stateEnded:
		return ErrStreaming
	case stateBroken:
		return ErrClosed
	}
	if protoVersion < 1 || protoVersion > 4 {
		return fmt.Errorf("start replication: pgoutput proto_version %d: want 1 to 4", protoVersion)
	}
	sql := fmt.Sprintf("START_REPLICATION SLOT %s LOGICAL %s (proto_version '%d', publication_names %s, messages 'true')",
		pgsql.QuoteIdent(c.cfg.Slot), start, protoVersion, pgsql.QuoteLiteral(pgsql.QuoteIdent(c.cfg.Publication)))
	what := "start replication on slot " + c.cfg.Slot
	c.pg.Frontend().Send(&pgproto3.Query{String: sql})
	if err := c.pg.Frontend().Flush(); err != nil {
		c.state = stateBroken
		return fmt.Errorf("%s: %w", what, err)
	}
	var srvErr error
	for {
		msg, err := c.pg.ReceiveMessage(ctx)
		if err != nil {
			c.state = stateBroken
			return fmt.Errorf("%s: %w", what, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyBothResponse:
			c.state = stateStreaming
			return nil
		case *pgproto3.ErrorResponse:
			srvErr = pgconn.ErrorResponseToPgError(m)
		case *pgproto3.ReadyForQuery:
			if srvErr == nil {
				return fmt.Errorf("%s: %w: ReadyForQuery without CopyBothResponse", what, ErrProtocol)
			}
			return c.classifyCommand(ctx, what, srvErr)
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			if srvErr == nil {
				c.state = stateBroken
				return fmt.Errorf("%s: %w: unexpected %T", what, ErrProtocol, msg)
			}
		}
	}
}

// Receive returns the next XLogData or keepalive frame. When deadline passes first it returns
// ErrDeadline; the connection stays usable and a message partly read resumes at the next call.
// A zero deadline waits forever. A server ErrorResponse is returned as a wrapped *pgconn.PgError; a
// CopyDone (or CommandComplete) from the server as ErrStreamEnded; malformed frames as *FrameError
// (errors.Is ErrProtocol). A publication the server cannot find where it decodes (dropped while
// streaming: an error before PostgreSQL 18, a warning from 18 on) ends the stream with an *Error
// of kind ErrPublication.
func (c *Conn) Receive(deadline time.Time) (Frame, error) {
	switch c.state {
	case stateIdle:
		return Frame{}, ErrNotStreaming
	case stateEnded:
		return Frame{}, ErrStreamEnded
	case stateBroken:
		return Frame{}, ErrClosed
	}
	for {
		// Setting a socket deadline is not free; callers pass the same one for many frames.
		if !deadline.Equal(c.deadline) {
			if err := c.pg.Conn().SetReadDeadline(deadline); err != nil {
				c.state = stateBroken
				return Frame{}, fmt.Errorf("receive: set deadline: %w", err)
			}
			c.deadline = deadline
		}
		// context.Background disables pgconn's context watcher, so the read deadline above is the
		// only timeout. On a net timeout pgconn (v5.12) neither closes the connection (peekMessage
		// closes only on other errors) nor loses bytes: pgproto3.Frontend remembers a header it has
		// read (partialMsg) and its chunk reader keeps a partly read body, so the next call resumes
		// the same message. crypto/tls does not make timeouts sticky either. TestReceiveTinyDeadlines
		// checks this over TCP and TLS.
		msg, err := c.pg.ReceiveMessage(context.Background())
		if err != nil {
			if pgconn.Timeout(err) && !c.pg.IsClosed() {
				return Frame{}, ErrDeadline
			}
			c.state = stateBroken
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) {
				return Frame{}, fmt.Errorf("replication stream: server error: %w", err)
			}
			return Frame{}, fmt.Errorf("replication stream: receive: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			f, err := parseFrame(m.Data)
			if err != nil {
				c.state = stateBroken
				return Frame{}, fmt.Errorf("replication stream: %w", err)
			}
			return f, nil
		case *pgproto3.CopyDone:
			c.state = stateEnded // Close answers with CopyDone
			return Frame{}, ErrStreamEnded
		case *pgproto3.CommandComplete:
			// The server left copy mode on its own (a shutting-down WAL sender does so and exits).
			c.state = stateBroken
			return Frame{}, ErrStreamEnded
		case *pgproto3.ErrorResponse:
			c.state = stateBroken
			pgErr := pgconn.ErrorResponseToPgError(m)
			if c.publicationMissing(pgErr) {
				return Frame{}, c.publicationGone(pgErr)
			}
			return Frame{}, fmt.Errorf("replication stream: server error: %w", pgErr)
		case *pgproto3.NoticeResponse:
			if n := pgconn.ErrorResponseToPgError((*pgproto3.ErrorResponse)(m)); c.publicationMissing(n) {
				c.state = stateBroken
				return Frame{}, c.publicationGone(n)
			}
			continue
		case *pgproto3.ParameterStatus:
			continue
		default:
			c.state = stateBroken
			return Frame{}, fmt.Errorf("replication stream: %w: unexpected %T", ErrProtocol, msg)
		}
	}
}

// publicationMissing reports whether e, an error or a warning the walsender sent while streaming,
// is pgoutput not finding the publication at the position it decodes: it was dropped (or renamed)
// while pgstream streamed. Before PostgreSQL 18 that is an ERROR with SQLSTATE 42704
// (undefined_object) at the first change after the drop, repeated at every start from a position
// before it, even once the publication exists again. From 18 on it is a WARNING with SQLSTATE
// 55000 (object_not_in_prerequisite_state), after which pgoutput leaves out every change until the
// publication exists again. Both name the publication.
func (c *Conn) publicationMissing(e *pgconn.PgError) bool {
	switch {
	case e.Code == "42704":
	case e.Code == "55000" && e.SeverityUnlocalized == "WARNING":
	default:
		return false
	}
	return strings.Contains(e.Message, c.cfg.Publication)
}

// publicationGone is the error for a publication that does not exist at a position the server
// decodes (publicationMissing). The stream ends with it rather than skip changes silently.
func (c *Conn) publicationGone(cause error) error {
	return &Error{Kind: ErrPublication, Check: "publication", Err: cause,
		Msg: fmt.Sprintf("replication stream: publication %s was dropped (or renamed) while pgstream streamed from slot %s: "+
			"the changes committed while it did not exist cannot be streamed from the slot", c.cfg.Publication, c.cfg.Slot),
		Fix: fmt.Sprintf("start over: drop the slot (SELECT pg_drop_replication_slot(%s)), delete the checkpoint and start pgstream with snapshot.mode initial: "+
			"it creates the publication (or run %s when source.create_publication is false) and a new slot, and reads the tables again. "+
			"To change what is published, ALTER PUBLICATION it instead of dropping it", pgsql.QuoteLiteral(c.cfg.Slot), c.publicationSQL())}
}

// parseFrame decodes one CopyData payload of the replication stream. Data aliases b.
func parseFrame(b []byte) (Frame, error) {
	if len(b) == 0 {
		return Frame{}, &FrameError{Len: 0, Want: "a kind byte"}
	}
	switch b[0] {
	case KindXLogData:
		const hdr = 1 + 8 + 8 + 8
		if len(b) < hdr {
			return Frame{}, &FrameError{Kind: b[0], Len: len(b), Want: "at least 25"}
		}
		return Frame{
			Kind:         KindXLogData,
			WALStart:     lsn.LSN(binary.BigEndian.Uint64(b[1:])),
			ServerWALEnd: lsn.LSN(binary.BigEndian.Uint64(b[9:])),
			ServerTime:   pgTime(int64(binary.BigEndian.Uint64(b[17:]))),
			Data:         b[hdr:],
		}, nil
	case KindKeepalive:
		const size = 1 + 8 + 8 + 1
		if len(b) != size {
			return Frame{}, &FrameError{Kind: b[0], Len: len(b), Want: "exactly 18"}
		}
		if b[17] > 1 {
			return Frame{}, &FrameError{Kind: b[0], Len: len(b), Want: "a reply flag of 0 or 1"}
		}
		return Frame{
			Kind:           KindKeepalive,
			ServerWALEnd:   lsn.LSN(binary.BigEndian.Uint64(b[1:])),
			ServerTime:     pgTime(int64(binary.BigEndian.Uint64(b[9:]))),
			ReplyRequested: b[17] == 1,
		}, nil
	}
	return Frame{}, &FrameError{Kind: b[0], Len: len(b), Want: "kind 'w' or 'k'"}
}

// appendStatus encodes a Standby status update ('r') into dst[:0].
func appendStatus(dst []byte, written, flushed, applied lsn.LSN, now time.Time, replyRequested bool) []byte {
	dst = append(dst[:0], 'r')
	dst = binary.BigEndian.AppendUint64(dst, uint64(written))
	dst = binary.BigEndian.AppendUint64(dst, uint64(flushed))
	dst = binary.BigEndian.AppendUint64(dst, uint64(applied))
	dst = binary.BigEndian.AppendUint64(dst, uint64(pgMicros(now)))
	if replyRequested {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// SendStatus sends a Standby status update: written (received), flushed (durable: the slot's
// confirmed_flush_lsn moves to it) and applied. replyRequested asks the server for an immediate
// keepalive. Valid while streaming, including while no Receive is in progress (a stuck consumer).
func (c *Conn) SendStatus(written, flushed, applied lsn.LSN, replyRequested bool) error {
	switch c.state {
	case stateIdle:
		return ErrNotStreaming
	case stateEnded:
		return ErrStreamEnded
	case stateBroken:
		return ErrClosed
	}
	b := appendStatus(c.status[:0], written, flushed, applied, time.Now(), replyRequested)
	c.copyData.Data = b
	c.pg.Frontend().Send(&c.copyData)
	if err := c.pg.Conn().SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		c.state = stateBroken
		return fmt.Errorf("send status update: %w", err)
	}
	if err := c.pg.Frontend().Flush(); err != nil {
		c.state = stateBroken
		return fmt.Errorf("send status update: %w", err)
	}
	return nil
}
