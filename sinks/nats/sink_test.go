package nats

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/pgstream/pgstream/internal/natstest"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var seq atomic.Int64

// unique returns a stream name and a subject prefix no other test uses.
func unique(testing.TB) (stream, prefix string) { return natstest.Names("pgstest") }

// admin connects a separate client and deletes the stream at cleanup.
func admin(t testing.TB, url, stream string) jetstream.JetStream {
	t.Helper()
	t.Logf("nats server %s, stream %s", url, stream)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("delete stream %s: %v", stream, err)
		}
		nc.Close()
	})
	return js
}

func newSink(t testing.TB, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg, sinks.Env{Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func events(schema, table string, n int, commit lsn.LSN) sinks.Batch {
	var b sinks.Batch
	for k := 0; k < n; k++ {
		b.Events = append(b.Events, sinks.Event{
			Op: sinks.OpUpdate, Schema: schema, Table: table,
			LSN: commit - lsn.LSN(n) + lsn.LSN(k), CommitLSN: commit, Seq: uint32(k),
			Key:   fmt.Appendf(nil, `{"id":%d}`, k),
			Value: fmt.Appendf(nil, `{"id":%d,"table":%q}`, k, table),
		})
	}
	return b
}

// storedMsgs reads the whole stream in sequence order.
func storedMsgs(t testing.TB, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for q := info.State.FirstSeq; q <= info.State.LastSeq && info.State.Msgs > 0; q++ {
		m, err := st.GetMsg(ctx, q)
		if err != nil {
			t.Fatalf("get message %d: %v", q, err)
		}
		out = append(out, m)
	}
	return out
}

func TestSubjectsAndHeaders(t *testing.T) {
	url := natstest.URL(t)
	stream, prefix := unique(t)
	js := admin(t, url, stream)
	s := newSink(t, Config{Servers: []string{url}, SubjectPrefix: prefix,
		Stream: StreamConfig{Name: stream, Create: true, Storage: "memory"}})
	ctx := ctxFor(t, 30*time.Second)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	var b sinks.Batch
	for _, tbl := range []struct{ schema, table string }{
		{"public", "users"}, {"public", "my.table"}, {"a*b", "c>d"}, {"x y", "tab\tle"}, {"", ""}, {"ü", "50%"},
	} {
		b.Events = append(b.Events, events(tbl.schema, tbl.table, 2, 0x2000000).Events...)
	}
	for i := range b.Events {
		b.Events[i].Seq = uint32(i)
	}
	if err := s.Write(ctx, &b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := s.Write(ctx, &sinks.Batch{}); err != nil {
		t.Fatalf("Write empty: %v", err)
	}
	got := storedMsgs(t, js, stream)
	if len(got) != len(b.Events) {
		t.Fatalf("stream holds %d messages, want %d", len(got), len(b.Events))
	}
	wantSubj := []string{".public.users", ".public.my%2Etable", ".a%2Ab.c%3Ed", ".x%20y.tab%09le", "._._", ".ü.50%25"}
	for i, m := range got {
		ev := &b.Events[i]
		if want := prefix + wantSubj[i/2]; m.Subject != want {
			t.Errorf("message %d subject %q, want %q", i, m.Subject, want)
		}
		if string(m.Data) != string(ev.Value) {
			t.Errorf("message %d data %s, want %s", i, m.Data, ev.Value)
		}
		for k, v := range map[string]string{
			jetstream.MsgIDHeader: ev.ID(), HeaderOp: "u", HeaderLSN: ev.LSN.String(), HeaderCommitLSN: ev.CommitLSN.String(),
		} {
			if g := m.Header.Get(k); g != v {
				t.Errorf("message %d header %s = %q, want %q", i, k, g, v)
			}
		}
	}
}

func TestWriteTwiceStoresOnce(t *testing.T) {
	url := natstest.URL(t)
	stream, prefix := unique(t)
	js := admin(t, url, stream)
	s := newSink(t, Config{Servers: []string{url}, SubjectPrefix: prefix,
		Stream: StreamConfig{Name: stream, Create: true, Storage: "memory"}})
	ctx := ctxFor(t, 30*time.Second)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	b := events("public", "t", 300, 0x3000000)
	for range 2 {
		if err := s.Write(ctx, &b); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	// A second sink, as after a restart of pgstream, sends the same events again.
	s2 := newSink(t, Config{Servers: []string{url}, SubjectPrefix: prefix, Stream: StreamConfig{Name: stream}})
	if err := s2.Write(ctx, &b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := storedMsgs(t, js, stream)
	if len(got) != 300 {
		t.Fatalf("stream holds %d messages, want 300", len(got))
	}
	for i, m := range got {
		if id := m.Header.Get(jetstream.MsgIDHeader); id != b.Events[i].ID() {
			t.Fatalf("message %d id %s, want %s", i, id, b.Events[i].ID())
		}
	}
}

func TestPingStreamChecks(t *testing.T) {
	url := natstest.URL(t)
	stream, prefix := unique(t)
	js := admin(t, url, stream)
	ctx := ctxFor(t, 30*time.Second)

	s := newSink(t, Config{Servers: []string{url}, SubjectPrefix: prefix, Stream: StreamConfig{Name: stream}})
	err := s.Ping(ctx)
	if !errors.Is(err, ErrStreamMissing) || !strings.Contains(err.Error(), stream) ||
		!strings.Contains(err.Error(), "nats.stream.create") {
		t.Fatalf("Ping = %v, want ErrStreamMissing naming the stream and nats.stream.create", err)
	}

	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".public.*"},
		Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	err = s.Ping(ctx)
	if !errors.Is(err, ErrSubjectsNotCovered) || !strings.Contains(err.Error(), stream) {
		t.Fatalf("Ping = %v, want ErrSubjectsNotCovered", err)
	}
	// A template confined to one schema is covered.
	ok := newSink(t, Config{Servers: []string{url}, SubjectPrefix: prefix, SubjectTemplate: "{prefix}.public.{table}",
		Stream: StreamConfig{Name: stream}})
	if err := ok.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func TestPingUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := newSink(t, Config{Servers: []string{"nats://" + addr}})
	if err := s.Ping(ctxFor(t, 10*time.Second)); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Ping = %v, want ErrUnreachable naming %s", err, addr)
	}
}

func TestMaxPending(t *testing.T) {
	url := natstest.URL(t)
	stream, prefix := unique(t)
	js := admin(t, url, stream)
	s := newSink(t, Config{Servers: []string{url}, SubjectPrefix: prefix, MaxPending: 8,
		Stream: StreamConfig{Name: stream, Create: true, Storage: "memory"}})
	ctx := ctxFor(t, 30*time.Second)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	b := events("public", "t", 2000, 0x4000000)
	if err := s.Write(ctx, &b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if s.maxPending > 8 || s.maxPending < 2 {
		t.Fatalf("at most %d publishes were pending, want between 2 and 8", s.maxPending)
	}
	if got := storedMsgs(t, js, stream); len(got) != 2000 {
		t.Fatalf("stream holds %d messages, want 2000", len(got))
	}
}

// TestServerRestartMidWrite stops the server while a Write is publishing and starts it again
// on the same port and store a few seconds later: the Write completes and the stream holds
// every event exactly once, in order.
func TestServerRestartMidWrite(t *testing.T) {
	srv := natstest.StartEmbedded(t)
	url := srv.ClientURL()
	stream, prefix := unique(t)
	s := newSink(t, Config{Servers: []string{url}, SubjectPrefix: prefix, AckTimeout: time.Second, MaxPending: 256,
		ReconnectBufSize: 64 << 10, // smaller than what the batch publishes while the server is down
		Stream:           StreamConfig{Name: stream, Create: true}})
	ctx := ctxFor(t, 180*time.Second)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	const n = 20000
	var b sinks.Batch
	for i := 0; i < n/2000; i++ {
		part := events("public", "t", 2000, lsn.LSN(0x5000000+i*0x10000))
		b.Events = append(b.Events, part.Events...)
	}
	done := make(chan error, 1)
	go func() { done <- s.Write(ctx, &b) }()

	// Stop the server once part of the batch is stored.
	watch, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	wjs, err := jetstream.New(watch)
	if err != nil {
		t.Fatal(err)
	}
	for {
		info, err := wjs.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		if info.CachedInfo().State.Msgs >= 1000 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Write returned %v before the server stopped", err)
		case <-time.After(2 * time.Millisecond):
		}
	}
	watch.Close()
	natstest.Stop(srv)
	select {
	case err := <-done:
		t.Fatalf("Write returned %v while the server was down", err)
	case <-time.After(3 * time.Second):
	}
	srv = natstest.Restart(t, srv)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Write did not complete after the server came back")
	}

	js := admin(t, url, stream)
	got := storedMsgs(t, js, stream)
	if len(got) != n {
		t.Fatalf("stream holds %d messages, want %d", len(got), n)
	}
	seen := make(map[string]bool, n)
	for _, m := range got {
		id := m.Header.Get(jetstream.MsgIDHeader)
		if seen[id] {
			t.Fatalf("message %s stored twice", id)
		}
		seen[id] = true
	}
	for i := range b.Events {
		if !seen[b.Events[i].ID()] {
			t.Fatalf("event %s missing", b.Events[i].ID())
		}
	}
}

func TestEscapeToken(t *testing.T) {
	for in, want := range map[string]string{
		"users":      "users",
		"":           "_",
		"a.b":        "a%2Eb",
		"*":          "%2A",
		">x":         "%3Ex",
		"50%":        "50%25",
		"a b":        "a%20b",
		"tab\tnl\n":  "tab%09nl%0A",
		"del\x7f":    "del%7F",
		"üñí":        "üñí",
		"nb\u00a0sp": "nb%C2%A0sp",
		"bad\xff":    "bad%FF",
	} {
		if got := escapeToken(in); got != want {
			t.Errorf("escapeToken(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		filter, pattern string
		want            bool
	}{
		{"pgstream.>", "pgstream.*.*", true},
		{">", "pgstream.*.*", true},
		{"pgstream.*.*", "pgstream.*.*", true},
		{"pgstream.public.*", "pgstream.*.*", false},
		{"pgstream.public.*", "pgstream.public.*", true},
		{"pgstream.*", "pgstream.*.*", false},
		{"pgstream.*.*.>", "pgstream.*.*", false},
		{"other.>", "pgstream.*.*", false},
		{"pgstream.>", "pgstream", false},
	} {
		if got := covers(tc.filter, tc.pattern); got != tc.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tc.filter, tc.pattern, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		bad  bool
	}{
		{"defaults", func(*Config) {}, false},
		{"empty server", func(c *Config) { c.Servers = []string{""} }, true},
		{"prefix wildcard", func(c *Config) { c.SubjectPrefix = "a.*" }, true},
		{"prefix two tokens", func(c *Config) { c.SubjectPrefix = "a.b" }, false},
		{"template empty token", func(c *Config) { c.SubjectTemplate = "{prefix}..{table}" }, true},
		{"stream name dot", func(c *Config) { c.Stream.Name = "a.b" }, true},
		{"stream subject bad", func(c *Config) { c.Stream.Subjects = []string{"{prefix}.>.x"} }, true},
		{"storage", func(c *Config) { c.Stream.Storage = "disk" }, true},
		{"memory", func(c *Config) { c.Stream.Storage = "memory" }, false},
		{"two auth", func(c *Config) { c.Token = "x"; c.User = "u" }, true},
		{"password alone", func(c *Config) { c.Password = "p" }, true},
		{"negative pending", func(c *Config) { c.MaxPending = -1 }, true},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "c" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			tc.mod(&c)
			err := c.Validate()
			if (err != nil) != tc.bad {
				t.Fatalf("Validate = %v, want error %v", err, tc.bad)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Fatalf("%v does not wrap ErrConfig", err)
			}
		})
	}
}

func BenchmarkWrite(b *testing.B) {
	url := natstest.URL(b)
	stream, prefix := unique(b)
	admin(b, url, stream)
	s, err := New(Config{Servers: []string{url}, SubjectPrefix: prefix,
		Stream: StreamConfig{Name: stream, Create: true, Storage: "memory"}}, sinks.Env{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		b.Fatal(err)
	}
	value := []byte(`{"op":"u","source":{"lsn":"0/0"},"after":{"payload":"` + strings.Repeat("x", 240) + `"}}`)
	var batch sinks.Batch
	for k := 0; k < 1000; k++ {
		batch.Events = append(batch.Events, sinks.Event{
			Op: sinks.OpUpdate, Schema: "public", Table: "bench", Seq: uint32(k),
			Key: []byte(`{"id":` + strconv.Itoa(k) + `}`), Value: value,
		})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Distinct ids per iteration, so the duplicate window stores every message.
		for k := range batch.Events {
			batch.Events[k].CommitLSN = lsn.LSN(i + 1)
		}
		if err := s.Write(ctx, &batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch.Events))/b.Elapsed().Seconds(), "events/s")
}
