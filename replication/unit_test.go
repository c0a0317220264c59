package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/lsn"
)

// frame builds a CopyData payload of the replication stream.
func frame(kind byte, ints []uint64, tail ...byte) []byte {
	b := []byte{kind}
	for _, v := range ints {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return append(b, tail...)
}

func TestParseFrame(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	us := uint64(pgMicros(ts))
	f, err := parseFrame(frame('w', []uint64{0x1_0000_0010, 0x1_0000_0020, us}, 'B', 1, 2))
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind != KindXLogData || f.WALStart != 0x1_0000_0010 || f.ServerWALEnd != 0x1_0000_0020 || !f.ServerTime.Equal(ts) || string(f.Data) != "B\x01\x02" {
		t.Fatalf("XLogData = %+v", f)
	}
	f, err = parseFrame(frame('w', []uint64{1, 2, us}))
	if err != nil || len(f.Data) != 0 {
		t.Fatalf("empty XLogData = %+v, %v", f, err)
	}
	f, err = parseFrame(frame('k', []uint64{0x42, us}, 1))
	if err != nil || f.Kind != KindKeepalive || f.ServerWALEnd != 0x42 || !f.ReplyRequested || !f.ServerTime.Equal(ts) {
		t.Fatalf("keepalive = %+v, %v", f, err)
	}
	f, err = parseFrame(frame('k', []uint64{0x42, us}, 0))
	if err != nil || f.ReplyRequested {
		t.Fatalf("keepalive = %+v, %v", f, err)
	}

	for name, b := range map[string][]byte{
		"empty":           {},
		"short XLogData":  frame('w', []uint64{1, 2}, 0, 0, 0, 0, 0, 0, 0),
		"short keepalive": frame('k', []uint64{1, 2}),
		"long keepalive":  frame('k', []uint64{1, 2}, 0, 0),
		"bad reply flag":  frame('k', []uint64{1, 2}, 2),
		"unknown kind":    frame('x', []uint64{1, 2, 3}),
	} {
		_, err := parseFrame(b)
		var fe *FrameError
		if !errors.As(err, &fe) || !errors.Is(err, ErrProtocol) || fe.Len != len(b) {
			t.Errorf("%s: err = %v; want *FrameError", name, err)
		}
		if IsRetryable(err) {
			t.Errorf("%s: malformed frame reported retryable", name)
		}
	}
}

func TestAppendStatus(t *testing.T) {
	now := time.Date(2000, 1, 1, 0, 0, 1, 500, time.UTC) // 1 s and 0.5 µs after the epoch
	b := appendStatus(nil, 0x10, 0x20, 0x30, now, true)
	want := frame('r', []uint64{0x10, 0x20, 0x30, 1_000_000}, 1)
	if string(b) != string(want) || len(b) != 34 {
		t.Fatalf("status = %x; want %x", b, want)
	}
	b = appendStatus(b, 1, 2, 3, now, false)
	if b[33] != 0 || binary.BigEndian.Uint64(b[17:]) != 3 {
		t.Fatalf("reused status = %x", b)
	}
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, secret string }{
		{"postgres://app:s3cr%40t@db.example:5432/app?sslmode=verify-full", "s3cr"},
		{"postgresql://app:hunter2@h1:5432,h2:5433/app", "hunter2"},
		{"postgres://app@db/app?password=hunter2&sslmode=require", "hunter2"},
		{"postgres://app@db/app?sslpassword=hunter2&sslmode=require", "hunter2"},
		{"host=db user=app password=hunter2 dbname=app", "hunter2"},
		{"host=db password = 'hunter 2' dbname=app", "hunter 2"},
		{"cannot parse `postgres://app:hunter2@db:99999/app`: invalid port", "hunter2"},
		// Unencoded '@', '/' and '?' in a password: everything up to the last '@' is hidden.
		{"postgres://app:Alpha7@Bravo9@db:5432/app", "Bravo9"},
		{"postgres://app:Alpha7@Bravo9@db:5432/app", "Alpha7"},
		{"postgres://app:Alpha7@Bravo9@h1:5432,h2/app", "Bravo9"},
		{"postgres://app:Alpha7/Bravo9@db/app", "Bravo9"},
		{"postgres://app:Alpha7?Bravo9@db/app", "Bravo9"},
		{"postgres://app:a:b@c@db/app", "b@c"},
		{"cannot parse `postgres://app:xxxxx@Bravo9@db:99999/app`: invalid port", "Bravo9"},
		{"connect to `postgres://app:Alpha7@Bravo9@db/app`: refused", "Bravo9"},
		{`parse "postgres://app:Alpha7@Bravo9@[::1/app": missing ']' in host`, "Bravo9"},
		// pgconn accepts quotes, backticks and angle brackets in a password; a URL that is all of
		// the text is hidden up to its last '@' whatever it holds.
		{"postgres://app:Alpha7`Bravo9@db/app", "Bravo9"},
		{`postgres://app:Alpha7"Bravo9@db/app`, "Bravo9"},
		{"postgres://app:Alpha7'Bravo9@db/app", "Bravo9"},
		{"postgres://app:Alpha7<Bravo9@db/app", "Bravo9"},
		{"postgres://app:Alpha7 Bravo9@db/app", "Bravo9"},
	} {
		got := RedactURL(tc.in)
		if strings.Contains(got, tc.secret) || !strings.Contains(got, "xxxxx") {
			t.Errorf("RedactURL(%q) = %q", tc.in, got)
		}
	}
	for in, want := range map[string]string{
		"postgres://app:Alpha7@Bravo9@db:5432/app?sslmode=require":   "postgres://app:xxxxx@db:5432/app?sslmode=require",
		"postgresql://app:pw@h1:5432,h2:5433/app":                    "postgresql://app:xxxxx@h1:5432,h2:5433/app",
		"FAIL connect to postgres://u:p@ss@h/db in replication mode": "FAIL connect to postgres://u:xxxxx@h/db in replication mode",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	for _, s := range []string{"postgres://app@db/app", "host=db user=app", "mail admin@example.com", "postgres://db/app?sslmode=require"} {
		if got := RedactURL(s); got != s {
			t.Errorf("RedactURL(%q) = %q; want unchanged", s, got)
		}
	}
}

// A source.url whose password holds an unencoded '@' parses with part of the password as the host
// name; it is refused with the fix, and neither that error nor the one for a URL that does not
// parse at all quotes any part of the password.
func TestURLWithUnencodedAt(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"postgres://app:Alpha7@Bravo9@127.0.0.1:5432/app", "percent-encode @ in the password as %40"},
		{"postgres://app:Alpha7@Bravo9@h1:5432,h2:5433/app", "percent-encode @ in the password as %40"},
		{"postgres://app:Alpha7@Bravo9@h:99999/app", "invalid port"},
		{"postgres://app:Alpha7/Bravo9@h/app", "percent-encode @ in the password as %40"},
		{"postgres://app:Alpha7@Bravo9@[::1/app", "percent-encode @ in the password as %40"},
		{"postgres://app:Alpha7%zzBravo9@h/app", "cannot be parsed"},
	} {
		c := Config{URL: tc.url}
		_, err := c.pgConfig(true)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "source.url") {
			t.Errorf("pgConfig(%q) = %v, want an error naming source.url and %q", tc.url, err, tc.want)
			continue
		}
		for _, secret := range []string{"Alpha7", "Bravo9", "%zz"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("pgConfig(%q): %q in %v", tc.url, secret, err)
			}
		}
	}
	// Encoded, the same password is fine.
	c := Config{URL: "postgres://app:Alpha7%40Bravo9@127.0.0.1:5432/app"}
	pc, err := c.pgConfig(true)
	if err != nil || pc.Password != "Alpha7@Bravo9" || pc.Host != "127.0.0.1" {
		t.Fatalf("pgConfig of the encoded URL = %+v, %v", pc, err)
	}
	// connectErr never shows what precedes a last '@' of a host name.
	err = connectErr(&pgconn.Config{Host: "Bravo9@db", Port: 5432, User: "app", Database: "app"}, syscall.ECONNREFUSED)
	if strings.Contains(err.Error(), "Bravo9") || !strings.Contains(err.Error(), "db:5432") {
		t.Fatalf("connectErr = %v", err)
	}
}

func TestValidate(t *testing.T) {
	var c Config
	if err := c.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "source.url") {
		t.Fatalf("empty config: %v", err)
	}
	c = Config{URL: "postgres://u@h/db"}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Slot != DefaultSlot || c.Publication != DefaultPublication || !*c.CreateSlot || !*c.CreatePublication ||
		c.StatusInterval != DefaultStatusInterval || c.ConnectTimeout != DefaultConnectTimeout {
		t.Fatalf("defaults = %+v", c)
	}
	f := false
	c = Config{URL: "postgres://u@h/db", CreateSlot: &f}.WithDefaults()
	if err := c.Validate(); err != nil || *c.CreateSlot {
		t.Fatalf("explicit false lost: %v", err)
	}
	for key, bad := range map[string]Config{
		"source.url":             {URL: "postgres://u:pw@h:notaport/db"},
		"source.slot":            {URL: "postgres://u@h/db", Slot: "Bad-Slot"},
		"source.tables[1]":       {URL: "postgres://u@h/db", Tables: []string{"a", "x.y.z"}},
		"source.status_interval": {URL: "postgres://u@h/db", StatusInterval: -time.Second},
		"source.connect_timeout": {URL: "postgres://u@h/db", ConnectTimeout: -time.Second},
		"source.publication":     {URL: "postgres://u@h/db", Publication: strings.Repeat("p", 64)},
	} {
		err := bad.Validate()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v", key, err)
		}
		if strings.Contains(fmt.Sprint(err), ":pw@") {
			t.Errorf("%s: password in %v", key, err)
		}
	}
}

func TestIsRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{io.ErrUnexpectedEOF, true},
		{fmt.Errorf("x: %w", syscall.ECONNRESET), true},
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "57P02"}, true},
		{&pgconn.PgError{Code: "57P03"}, true},
		{&pgconn.PgError{Code: "53300"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "42501"}, false},
		{&pgconn.PgError{Code: "55000"}, false},
		{ErrStreamEnded, true},
		{ErrDeadline, true},
		{&Error{Kind: ErrUnreachable}, true},
		{&Error{Kind: ErrTooManyWALSenders, Err: &pgconn.PgError{Code: "53300"}}, true},
		{&Error{Kind: ErrSlotActive, Err: &pgconn.PgError{Code: "55006"}}, false},
		{&Error{Kind: ErrAuthFailed, Err: io.EOF}, false},
		{fmt.Errorf("%w: bad", ErrConfig), false},
		{errors.New("something else"), false},
	} {
		if got := IsRetryable(tc.err); got != tc.want {
			t.Errorf("IsRetryable(%v) = %v; want %v", tc.err, got, tc.want)
		}
	}
}

func TestPgTime(t *testing.T) {
	ts := time.Date(2026, 11, 23, 12, 0, 0, 123456000, time.UTC)
	if got := pgTime(pgMicros(ts)); !got.Equal(ts) {
		t.Fatalf("round trip %v -> %v", ts, got)
	}
	if pgMicros(pgEpoch) != 0 {
		t.Fatal("epoch is not zero")
	}
	_ = lsn.InvalidLSN
}

func FuzzParseFrame(f *testing.F) {
	f.Add(frame('w', []uint64{1, 2, 3}, 'B'))
	f.Add(frame('k', []uint64{1, 2}, 1))
	f.Add([]byte{'w'})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := parseFrame(b)
		if err != nil {
			var fe *FrameError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not *FrameError", err)
			}
			return
		}
		switch fr.Kind {
		case KindXLogData:
			if len(fr.Data) != len(b)-25 {
				t.Fatalf("data %d bytes of %d", len(fr.Data), len(b))
			}
		case KindKeepalive:
			if len(b) != 18 || fr.Data != nil {
				t.Fatalf("keepalive from %d bytes", len(b))
			}
		default:
			t.Fatalf("kind %q accepted", fr.Kind)
		}
	})
}

func BenchmarkParseFrame(b *testing.B) {
	buf := frame('w', []uint64{1, 2, 3}, make([]byte, 200)...)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := parseFrame(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendStatus(b *testing.B) {
	var buf [34]byte
	now := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = appendStatus(buf[:0], lsn.LSN(i), lsn.LSN(i), lsn.LSN(i), now, false)
	}
}

func TestParseSlotRow(t *testing.T) {
	// pg_replication_slots rows as PostgreSQL 14 and 18 render them (to_jsonb).
	si, err := ParseSlotRow([]byte(`{"xmin": null, "active": true, "datoid": "13695", "plugin": "pgoutput", "database": "app", "slot_name": "s", "slot_type": "logical", "temporary": false, "two_phase": false, "active_pid": 4242, "wal_status": "reserved", "restart_lsn": "0/15C49F8", "catalog_xmin": "733", "safe_wal_size": null, "confirmed_flush_lsn": "0/15C4A30"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !si.Exists || si.Name != "s" || si.Plugin != "pgoutput" || si.Database != "app" || !si.Active || si.ActivePID != 4242 ||
		si.RestartLSN != 0x15C49F8 || si.ConfirmedFlush != 0x15C4A30 || si.WALStatus != "reserved" || si.SafeWALSize != nil ||
		si.Conflicting != nil || si.InvalidationReason != "" || !si.InactiveSince.IsZero() || si.Invalidated() != "" {
		t.Fatalf("PostgreSQL 14 row: %+v", si)
	}
	si, err = ParseSlotRow([]byte(`{"xmin": null, "active": false, "datoid": "5", "plugin": "pgoutput", "synced": false, "database": "postgres", "failover": false, "slot_name": "s", "slot_type": "logical", "temporary": false, "two_phase": false, "active_pid": null, "wal_status": "lost", "conflicting": false, "restart_lsn": "0/174B340", "catalog_xmin": "752", "two_phase_at": null, "safe_wal_size": null, "inactive_since": "2026-12-01T17:16:01.155294+00:00", "confirmed_flush_lsn": "0/174B378", "invalidation_reason": "idle_timeout"}`))
	if err != nil {
		t.Fatal(err)
	}
	since := time.Date(2026, 12, 1, 17, 16, 1, 155294000, time.UTC)
	if si.Active || si.ActivePID != 0 || si.Conflicting == nil || *si.Conflicting || si.InvalidationReason != "idle_timeout" ||
		!si.InactiveSince.Equal(since) || si.Invalidated() != "idle_timeout" {
		t.Fatalf("PostgreSQL 18 row: %+v", si)
	}
	for _, bad := range []string{`{"slot_name": "s", "confirmed_flush_lsn": "x"}`, `{"plugin": "pgoutput"}`, `[1]`, ``} {
		if si, err := ParseSlotRow([]byte(bad)); !errors.Is(err, ErrProtocol) {
			t.Errorf("ParseSlotRow(%q) = %+v, %v; want ErrProtocol", bad, si, err)
		}
	}
}

func TestInvalidationCause(t *testing.T) {
	for _, tc := range []struct {
		walStatus, reason        string
		conflicting, restartNull bool
		want                     string
	}{
		{"reserved", "", false, false, ""},
		{"unreserved", "", false, false, ""},                                // at risk, not yet invalidated
		{"lost", "", false, true, "wal_removed"},                            // 14 and 15
		{"lost", "", true, true, "wal_removed"},                             // 16 sets conflicting for removed WAL too
		{"lost", "", true, false, "rows_removed or wal_level_insufficient"}, // 16, a conflict with recovery
		{"lost", "idle_timeout", false, false, "idle_timeout"},              // 17 and later name it
		{"unreserved", "rows_removed", true, false, "rows_removed"},
	} {
		got := InvalidationCause(tc.walStatus, tc.reason, tc.conflicting, tc.restartNull)
		if got != tc.want {
			t.Errorf("InvalidationCause(%q, %q, %v, %v) = %q, want %q", tc.walStatus, tc.reason, tc.conflicting, tc.restartNull, got, tc.want)
		}
		if what, avoid := Invalidation(got); got != "" && (what == "the server invalidated it" || avoid == "") {
			t.Errorf("Invalidation(%q) explains nothing", got)
		}
	}
}
