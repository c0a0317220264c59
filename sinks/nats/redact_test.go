package nats

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgstream/pgstream/internal/logtest"
	"github.com/pgstream/pgstream/internal/natstest"
	"github.com/pgstream/pgstream/sinks"
)

func requireNoSecret(t *testing.T, what, out string, secrets ...string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("%s: %q appears in %q", what, s, line)
			}
		}
	}
}

// A server URL with credentials is never quoted whole: not in Ping's error when nothing listens,
// not in what the sink logs, whether the server accepts the connection or not.
func TestCredentialsInServerURLAreRedacted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	url := natstest.URL(t)
	host := strings.TrimPrefix(url, "nats://")
	for _, server := range []string{
		"nats://natsuser:Pa55-w0rd@" + dead,
		"nats://S3cretT0ken@" + dead,
		"natsuser:Pa55-w0rd@" + dead,
		"nats://natsuser:Pa55-w0rd@" + host,
		"nats://S3cretT0ken@" + host,
	} {
		t.Run(server, func(t *testing.T) {
			log, out := logtest.Debug()
			stream, prefix := unique(t)
			s, err := New(Config{Servers: []string{server}, SubjectPrefix: prefix, Stream: StreamConfig{Name: stream}}, sinks.Env{Log: log})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Ping(ctxFor(t, 30*time.Second))
			s.Close()
			if err == nil {
				t.Fatalf("Ping succeeded without a stream")
			}
			t.Logf("Ping: %v", err)
			requireNoSecret(t, "Ping error", err.Error(), "Pa55-w0rd", "S3cretT0ken")
			requireNoSecret(t, "log", out.String(), "Pa55-w0rd", "S3cretT0ken")
			if strings.Contains(server, dead) && (!errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), dead)) {
				t.Errorf("Ping = %v, want ErrUnreachable naming %s", err, dead)
			}
		})
	}
}

// The reconnect and disconnect log lines name the server without its credentials.
func TestReconnectLogIsRedacted(t *testing.T) {
	srv := natstest.StartEmbedded(t)
	host := strings.TrimPrefix(srv.ClientURL(), "nats://")
	for _, server := range []string{"nats://natsuser:Pa55-w0rd@" + host, "nats://S3cretT0ken@" + host} {
		log, out := logtest.Debug()
		stream, prefix := unique(t)
		s, err := New(Config{Servers: []string{server}, SubjectPrefix: prefix,
			Stream: StreamConfig{Name: stream, Create: true, Storage: "memory"}}, sinks.Env{Log: log})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Ping(ctxFor(t, 30*time.Second)); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		srv = natstest.Restart(t, srv)
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(out.String(), "nats reconnected") {
			if time.Now().After(deadline) {
				t.Fatalf("no reconnect logged within 60s:\n%s", out)
			}
			time.Sleep(20 * time.Millisecond)
		}
		s.Close()
		t.Logf("%s", out)
		requireNoSecret(t, "log", out.String(), "Pa55-w0rd", "S3cretT0ken")
		if !strings.Contains(out.String(), `"server":"nats://`) {
			t.Errorf("the reconnect line does not name the server:\n%s", out)
		}
	}
}

func TestValidateDoesNotQuoteABadURL(t *testing.T) {
	// nats.go splits an entry at commas: a comma in a password leaves "nats://u:Pa55" on its own.
	for _, server := range []string{"nats://u:Pa55/w0rd@h:4222", "nats://u:Pa55%w0rd@h:4222", "u:Pa55 w0rd@h", "nats://u:Pa55,w0rd@h:4222"} {
		c := Config{Servers: []string{"nats://ok:4222", server}}
		err := c.Validate()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "nats.servers[1]") {
			t.Fatalf("Validate(%q) = %v, want an error naming nats.servers[1]", server, err)
		}
		requireNoSecret(t, "Validate", err.Error(), "Pa55", "w0rd")
	}
}

// Check reports a missing stream that Ping would create, and creates nothing.
func TestCheckCreatesNothing(t *testing.T) {
	url := natstest.URL(t)
	stream, prefix := unique(t)
	js := admin(t, url, stream)
	ctx := ctxFor(t, 30*time.Second)
	s := newSink(t, Config{Servers: []string{url}, SubjectPrefix: prefix, Stream: StreamConfig{Name: stream, Create: true}})
	note, err := s.Check(ctx)
	if err != nil || !strings.Contains(note, "stream "+stream+" missing; run would create it (stream.create: true)") {
		t.Fatalf("Check = %q, %v; want a note that run would create the stream", note, err)
	}
	if _, err := js.Stream(ctx, stream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("after Check, looking the stream up gives %v, want ErrStreamNotFound", err)
	}

	// Subjects the created stream would not cover are reported as Ping would after creating it.
	narrow := newSink(t, Config{Servers: []string{url}, SubjectPrefix: prefix,
		Stream: StreamConfig{Name: stream, Create: true, Subjects: []string{"{prefix}.public.*"}}})
	if _, err := narrow.Check(ctx); !errors.Is(err, ErrSubjectsNotCovered) {
		t.Fatalf("Check = %v, want ErrSubjectsNotCovered", err)
	}
	// Without stream.create, a missing stream is an error, as for Ping.
	strict := newSink(t, Config{Servers: []string{url}, SubjectPrefix: prefix, Stream: StreamConfig{Name: stream}})
	if _, err := strict.Check(ctx); !errors.Is(err, ErrStreamMissing) {
		t.Fatalf("Check = %v, want ErrStreamMissing", err)
	}
	if _, err := js.Stream(ctx, stream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("after Check, looking the stream up gives %v, want ErrStreamNotFound", err)
	}

	// An existing stream: no note.
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if note, err := s.Check(ctx); err != nil || note != "" {
		t.Fatalf("Check of an existing stream = %q, %v", note, err)
	}
}
