package replication

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/lsn"
)

// startStream connects to pg, ensures publication pub (table list) and slot, and starts streaming.
func startStream(t *testing.T, pg *pgtest.Cluster, slot, pub string, tables ...string) (*Conn, lsn.LSN) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	dropSlotLater(t, pg, slot)
	cfg := testConfig(pg, slot, pub)
	cfg.Tables = tables
	c := connect(t, cfg)
	if err := c.EnsurePublication(ctx); err != nil {
		t.Fatal(err)
	}
	si, err := c.EnsureSlot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartReplication(ctx, si.ConfirmedFlush, 1); err != nil {
		t.Fatal(err)
	}
	return c, si.ConfirmedFlush
}

func walSenderAlive(pg *pgtest.Cluster, c *Conn) bool {
	got, _ := pg.Query("postgres", "SELECT count(*) FROM pg_stat_replication WHERE pid = "+strconv.Itoa(int(c.PgConn().PID())))
	return got == "1"
}

// TestStuckConsumerKeepsSession: with wal_sender_timeout = 2s and more changes pending than the
// sockets hold, a session that sends a status update every 500 ms without reading for 6 s (and
// until the server has ended the other one) survives; one that sends nothing is terminated.
func TestStuckConsumerKeepsSession(t *testing.T) {
	pg := timeoutCluster(t)
	pg.MustExec(t, "postgres", `CREATE TABLE stuck_t (id int primary key, v text)`)
	stuck, stuckPos := startStream(t, pg, "s_stuck", "pub_stuck", "stuck_t")
	silent, _ := startStream(t, pg, "s_silent", "pub_stuck", "stuck_t")
	pg.MustExec(t, "postgres", `INSERT INTO stuck_t SELECT g, repeat('x', 1000) FROM generate_series(1, 20000) g`)

	start := time.Now()
	for i := 0; time.Since(start) < 6*time.Second || walSenderAlive(pg, silent); i++ {
		if time.Since(start) > 60*time.Second {
			t.Fatal("the server kept the silent session for 60s with wal_sender_timeout = 2s: the test cannot tell the two apart")
		}
		time.Sleep(500 * time.Millisecond)
		if err := stuck.SendStatus(stuckPos, stuckPos, stuckPos, false); err != nil {
			t.Fatalf("SendStatus at %d: %v", i, err)
		}
	}
	if !walSenderAlive(pg, stuck) {
		t.Fatal("the server ended the session that sent status updates")
	}

	// The stuck session reads its backlog normally.
	var frames int
	end := time.Now().Add(60 * time.Second)
	next := time.Now()
	for frames < 1000 {
		if time.Now().After(end) {
			t.Fatalf("only %d frames within 60s after the pause", frames)
		}
		if !time.Now().Before(next) {
			if err := stuck.SendStatus(stuckPos, stuckPos, stuckPos, false); err != nil {
				t.Fatal(err)
			}
			next = time.Now().Add(500 * time.Millisecond)
		}
		_, err := stuck.Receive(next)
		if errors.Is(err, ErrDeadline) {
			continue
		}
		if err != nil {
			t.Fatalf("stuck session after the pause: %v", err)
		}
		frames++
	}

	// The silent session finds its connection closed.
	end = time.Now().Add(60 * time.Second)
	for {
		_, err := silent.Receive(time.Now().Add(time.Second))
		if errors.Is(err, ErrDeadline) {
			if time.Now().After(end) {
				t.Fatal("silent session still receiving")
			}
			continue
		}
		if err != nil {
			if !IsRetryable(err) {
				t.Fatalf("terminated session's error %v is not retryable", err)
			}
			break
		}
	}
}

// TestReplyRequested: the server asks for a reply after wal_sender_timeout/2 of silence; answering
// it keeps the session alive past the timeout.
func TestReplyRequested(t *testing.T) {
	pg := timeoutCluster(t)
	c, _ := startStream(t, pg, "s_reply", "pub_reply_all")
	start := time.Now()
	asked := 0
	// Past twice the timeout, and until the server has asked at least once.
	for time.Since(start) < 5*time.Second || asked == 0 {
		if time.Since(start) > 60*time.Second {
			t.Fatal("no keepalive asked for a reply in 60s with wal_sender_timeout = 2s")
		}
		f, err := c.Receive(time.Now().Add(100 * time.Millisecond))
		if errors.Is(err, ErrDeadline) {
			continue
		}
		if err != nil {
			t.Fatalf("after %v: %v", time.Since(start), err)
		}
		if f.Kind == KindKeepalive && f.ReplyRequested {
			asked++
			if err := c.SendStatus(f.ServerWALEnd, 0, 0, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !walSenderAlive(pg, c) {
		t.Fatal("session ended although every request was answered")
	}
}

// TestServerRestartMidStream: a fast restart ends the stream with a retryable error, and a new
// session resumes from the slot.
func TestServerRestartMidStream(t *testing.T) {
	pg := timeoutCluster(t)
	pg.MustExec(t, "postgres", `CREATE TABLE restart_t (id int primary key)`)
	c, _ := startStream(t, pg, "s_restart", "pub_restart", "restart_t")
	pg.MustExec(t, "postgres", `INSERT INTO restart_t SELECT generate_series(1, 100)`)

	restarted := make(chan error, 1)
	go func() { restarted <- pg.Restart("fast") }()
	var streamErr error
	end := time.Now().Add(60 * time.Second)
	for streamErr == nil && time.Now().Before(end) {
		f, err := c.Receive(time.Now().Add(200 * time.Millisecond))
		switch {
		case errors.Is(err, ErrDeadline):
		case err != nil:
			streamErr = err
		case f.Kind == KindKeepalive && f.ReplyRequested:
			// Confirm everything so the shutting-down WAL sender may finish.
			_ = c.SendStatus(f.ServerWALEnd, f.ServerWALEnd, f.ServerWALEnd, false)
		}
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	if streamErr == nil {
		t.Fatal("stream survived a restart")
	}
	if !IsRetryable(streamErr) {
		t.Fatalf("error after restart %v is not retryable", streamErr)
	}
	t.Logf("stream ended with: %v", streamErr)
	_ = c.Close(context.Background())

	c2 := connect(t, testConfig(pg, "s_restart", "pub_restart"))
	if err := c2.StartReplication(ctxT(t, 30*time.Second), 0, 1); err != nil {
		t.Fatalf("resume after restart: %v", err)
	}
}

// TestServerErrorWhileStreaming: a WAL sender terminated by an administrator sends FATAL 57P01,
// which Receive returns as a wrapped *pgconn.PgError that is retryable.
func TestServerErrorWhileStreaming(t *testing.T) {
	pg := mainCluster(t)
	c, _ := startStream(t, pg, slotName(t), "pub_all")
	pg.MustExec(t, "postgres", "SELECT pg_terminate_backend("+strconv.Itoa(int(c.PgConn().PID()))+")")
	end := time.Now().Add(60 * time.Second)
	for time.Now().Before(end) {
		_, err := c.Receive(time.Now().Add(200 * time.Millisecond))
		if err == nil || errors.Is(err, ErrDeadline) {
			continue
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57P01" || !IsRetryable(err) {
			t.Fatalf("error %v: want a retryable *pgconn.PgError 57P01", err)
		}
		if _, err := c.Receive(time.Time{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Receive after the failure: %v", err)
		}
		return
	}
	t.Fatal("stream not ended by pg_terminate_backend")
}
