package replication

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/lsn"
)

func TestIdentifySystem(t *testing.T) {
	pg := mainCluster(t)
	c := connect(t, testConfig(pg, "unused", "unused"))
	sys, err := c.IdentifySystem(ctxT(t, 60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := pg.Query("postgres", "SELECT system_identifier::text FROM pg_control_system()")
	if sys.SystemID != want || sys.Timeline != 1 || sys.DBName != "postgres" || sys.XLogPos == 0 {
		t.Fatalf("IdentifySystem = %+v; want system id %s, timeline 1, db postgres", sys, want)
	}
	cur, _ := pg.Query("postgres", "SELECT pg_current_wal_flush_lsn()::text")
	if l, _ := lsn.Parse(cur); sys.XLogPos > l {
		t.Fatalf("xlogpos %s beyond current flush %s", sys.XLogPos, l)
	}
	if _, err := c.Receive(time.Now().Add(time.Second)); !errors.Is(err, ErrNotStreaming) {
		t.Fatalf("Receive before StartReplication: %v", err)
	}
	if err := c.SendStatus(1, 1, 1, false); !errors.Is(err, ErrNotStreaming) {
		t.Fatalf("SendStatus before StartReplication: %v", err)
	}
	// Session settings arrive in the startup packet.
	for k, v := range map[string]string{"DateStyle": "ISO, MDY", "TimeZone": "UTC", "IntervalStyle": "postgres", "application_name": "pgstream", "client_encoding": "UTF8"} {
		if got := c.PgConn().ParameterStatus(k); got != v {
			t.Errorf("%s = %q; want %q", k, got, v)
		}
	}
	if got, err := c.queryValue(ctxT(t, 60*time.Second), "SHOW extra_float_digits"); err != nil || got != "1" {
		t.Errorf("extra_float_digits = %q, %v", got, err)
	}
	if got, err := c.queryValue(ctxT(t, 60*time.Second), "SHOW bytea_output"); err != nil || got != "hex" {
		t.Errorf("bytea_output = %q, %v", got, err)
	}
}

// TestStreamInsert starts streaming, receives the transaction of an INSERT, and checks that
// keepalives arrive on request and that a flushed position moves confirmed_flush_lsn.
func TestStreamInsert(t *testing.T) {
	pg := mainCluster(t)
	ctx := ctxT(t, 60*time.Second)
	slot := slotName(t)
	dropSlotLater(t, pg, slot)
	pg.MustExec(t, "postgres", `CREATE TABLE si_t (id int primary key, v text)`)
	cfg := testConfig(pg, slot, "pub_si")
	cfg.Tables = []string{"si_t"}
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
	if _, err := c.IdentifySystem(ctx); !errors.Is(err, ErrStreaming) {
		t.Fatalf("command while streaming: %v", err)
	}
	pg.MustExec(t, "postgres", `INSERT INTO si_t VALUES (1, 'hello')`)

	var kinds []byte
	var end lsn.LSN
	for end == 0 {
		f := receiveUntil(t, c, 60*time.Second, func(f Frame) bool { return f.Kind == KindXLogData })
		if f.WALStart == 0 && f.Data[0] != 'R' {
			t.Fatalf("XLogData without a start position: %+v", f)
		}
		if f.ServerTime.Before(time.Now().Add(-time.Minute)) || f.ServerTime.After(time.Now().Add(time.Minute)) {
			t.Fatalf("server time %v is not now", f.ServerTime)
		}
		kinds = append(kinds, f.Data[0])
		if f.Data[0] == 'I' && !bytes.Contains(f.Data, []byte("hello")) {
			t.Fatalf("insert message %q lacks the value", f.Data)
		}
		if e, ok := commitEnd(f.Data); ok {
			end = e
		}
	}
	if string(kinds) != "BRIC" {
		t.Fatalf("pgoutput messages %q; want BRIC", kinds)
	}

	// A status update asking for a reply gets a keepalive promptly: well before the one the
	// server sends by itself after half of wal_sender_timeout (60s here) of silence.
	if err := c.SendStatus(end, 0, 0, true); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	k := receiveUntil(t, c, 25*time.Second, func(f Frame) bool { return f.Kind == KindKeepalive })
	if k.ServerWALEnd < end || time.Since(start) > 20*time.Second {
		t.Fatalf("keepalive %+v after %v; want end >= %s", k, time.Since(start), end)
	}

	// flushed=end moves the slot's confirmed_flush_lsn to end.
	if err := c.SendStatus(end, end, end, false); err != nil {
		t.Fatal(err)
	}
	var got string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		got, _ = pg.Query("postgres", "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '"+slot+"'")
		if got == end.String() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got != end.String() {
		t.Fatalf("confirmed_flush_lsn = %s; want %s", got, end)
	}
	app, _ := pg.Query("postgres", "SELECT application_name FROM pg_stat_replication WHERE pid = "+strconv.Itoa(int(c.PgConn().PID())))
	if app != "pgstream" {
		t.Fatalf("pg_stat_replication application_name = %q", app)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close while streaming: %v", err)
	}
	if _, err := c.Receive(time.Time{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Receive after Close: %v", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.SendStatus(end, end, end, false); !errors.Is(err, ErrClosed) {
		t.Fatalf("SendStatus after Close: %v", err)
	}
	// The slot was released by the polite close.
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		if a, _ := pg.Query("postgres", "SELECT active FROM pg_replication_slots WHERE slot_name = '"+slot+"'"); a == "f" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("slot still active after Close")
}

// expectedMessage is the payload of logical message i of TestReceiveTinyDeadlines.
func expectedMessage(i int) []byte {
	sum := md5.Sum([]byte(strconv.Itoa(i)))
	return []byte(strconv.Itoa(i) + ":" + strings.Repeat(hex.EncodeToString(sum[:]), (i*37)%1500))
}

// TestReceiveTinyDeadlines streams a large workload of messages up to 48 KB through a connection
// whose reads are split into small pieces and time out every few reads, and checks that every
// message arrives whole, in order and intact.
func TestReceiveTinyDeadlines(t *testing.T) {
	pg := mainCluster(t)
	streamTinyDeadlines(t, pg, testConfig(pg, slotName(t), "pub_all"), 2000)
}

// choppyConn returns at most a few KiB per Read and fails every fifth Read with the error of a
// passed read deadline, without reading: the same error, at the same place in the byte stream, as a
// socket deadline that expires in the middle of a message. The pieces vary in size so that the
// timeouts land at every kind of offset (inside a message header, inside a body, inside a TLS
// record). It does so only once Armed is set, after start-up and authentication. Timeouts counts
// the injected timeouts.
type choppyConn struct {
	net.Conn
	Armed    atomic.Bool
	reads    atomic.Int64
	Timeouts atomic.Int64
}

func (c *choppyConn) Read(p []byte) (int, error) {
	if !c.Armed.Load() {
		return c.Conn.Read(p)
	}
	r := c.reads.Add(1)
	if r%5 == 0 {
		c.Timeouts.Add(1)
		// Returned as it is, not wrapped: crypto/tls keeps a connection usable only after an error
		// that is a net.Error reporting Temporary, which os.ErrDeadlineExceeded is.
		return 0, os.ErrDeadlineExceeded
	}
	n := 1 + int(r*997%4096)
	return c.Conn.Read(p[:min(len(p), n)])
}

// streamTinyDeadlines streams n logical messages through a session opened with cfg, over a
// choppyConn, and also with real socket deadlines of a few microseconds.
func streamTinyDeadlines(t *testing.T, pg *pgtest.Cluster, cfg Config, n int) {
	ctx := ctxT(t, 3*time.Minute)
	dropSlotLater(t, pg, cfg.Slot)
	var chop *choppyConn
	cfg.wrapConn = func(c net.Conn) net.Conn {
		chop = &choppyConn{Conn: c}
		return chop
	}
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
	pg.MustExec(t, "postgres", fmt.Sprintf(`SELECT pg_logical_emit_message(false, 'tiny', convert_to(i::text || ':' || repeat(md5(i::text), (i*37) %% 1500), 'UTF8')) FROM generate_series(1, %d) i`, n))

	next := 1
	deadlines, partial, frames := 0, 0, 0
	end := time.Now().Add(2 * time.Minute)
	chop.Armed.Store(true)
	for next <= n {
		if time.Now().After(end) {
			t.Fatalf("received %d of %d messages", next-1, n)
		}
		// A deadline already past when the read starts fails without reading, so the deadlines are
		// long enough for some bytes to arrive and short enough to cut most large messages.
		f, err := c.Receive(time.Now().Add(time.Duration(10+(frames+deadlines)%11*30) * time.Microsecond))
		if errors.Is(err, ErrDeadline) {
			deadlines++
			if c.PgConn().Frontend().ReadBufferLen() > 0 {
				partial++
			}
			continue
		}
		if err != nil {
			t.Fatalf("Receive after %d messages: %v", next-1, err)
		}
		frames++
		if f.Kind != KindXLogData {
			continue
		}
		// pgoutput Message: 'M', flags, Int64 lsn, prefix\0, Int32 length, content.
		d := f.Data
		if len(d) < 1+1+8+5+4 || d[0] != 'M' || string(d[10:15]) != "tiny\x00" {
			t.Fatalf("frame %d: unexpected message %q", frames, d[:min(len(d), 32)])
		}
		size := int(binary.BigEndian.Uint32(d[15:19]))
		content := d[19:]
		if size != len(content) || !bytes.Equal(content, expectedMessage(next)) {
			t.Fatalf("message %d: %d bytes (header says %d), content differs", next, len(content), size)
		}
		next++
	}
	injected := chop.Timeouts.Load()
	t.Logf("%d messages, %d frames, %d deadlines (%d injected), %d of them with a partly read message buffered", n, frames, deadlines, injected, partial)
	// Every fifth read times out and a read returns at most 4 KiB, so a message of more than 16 KiB
	// is always cut; the workload has hundreds of them.
	if partial == 0 {
		t.Fatal("no timeout hit a partly read message: the connection wrapper did not split the stream")
	}
}

// TestPublicationDroppedWhileStreaming drops the publication under a running stream. Messages
// still come through (pgoutput sends them whatever the publication), and the first change after
// the drop ends the stream with ErrPublication naming the way out: before PostgreSQL 18 the
// walsender fails on it, from 18 on it warns and would leave the change out.
func TestPublicationDroppedWhileStreaming(t *testing.T) {
	pg := mainCluster(t)
	ctx := ctxT(t, 120*time.Second)
	slot := slotName(t)
	dropSlotLater(t, pg, slot)
	pg.MustExec(t, "postgres", `CREATE TABLE IF NOT EXISTS pd_t (id int)`) // -count runs it again on the same cluster
	cfg := testConfig(pg, slot, "pub_pd")
	cfg.Tables = []string{"pd_t"}
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
	pg.MustExec(t, "postgres", `DROP PUBLICATION pub_pd`)
	pg.MustExec(t, "postgres", `SELECT pg_logical_emit_message(true, 'pd', 'after the drop')`)
	receiveUntil(t, c, 60*time.Second, func(f Frame) bool {
		return f.Kind == KindXLogData && f.Data[0] == 'M' && bytes.Contains(f.Data, []byte("after the drop"))
	})
	pg.MustExec(t, "postgres", `INSERT INTO pd_t VALUES (1)`)
	deadline := time.Now().Add(60 * time.Second)
	for {
		f, err := c.Receive(time.Now().Add(200 * time.Millisecond))
		if errors.Is(err, ErrDeadline) {
			if time.Now().After(deadline) {
				t.Fatal("the stream went on for 60s after a change past the publication's drop")
			}
			continue
		}
		if err != nil {
			e := wantKind(t, err, ErrPublication, "publication pub_pd was dropped", "pg_drop_replication_slot('"+slot+"')",
				"CREATE PUBLICATION \"pub_pd\" FOR TABLE", "snapshot.mode initial", `"pub_pd"`)
			if IsRetryable(err) || e.Check != "publication" {
				t.Fatalf("the dropped publication's error is retryable or mislabelled: %v", err)
			}
			t.Logf("PostgreSQL %d: %v", pg.Version, err)
			return
		}
		if f.Kind == KindXLogData && f.Data[0] == 'I' {
			t.Fatalf("a change committed after the publication was dropped came through: %q", f.Data)
		}
		if f.Kind == KindKeepalive && f.ReplyRequested {
			if err := c.SendStatus(f.ServerWALEnd, 0, 0, false); err != nil {
				t.Fatal(err)
			}
		}
	}
}
