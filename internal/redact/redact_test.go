package redact

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestBrokersURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://alice:s3cret@h:4222":      "nats://alice:xxxxx@h:4222",
		"nats://t0ken@h:4222":             "nats://xxxxx@h:4222",
		"tls://alice:p@ss@h:4222":         "tls://alice:xxxxx@h:4222",
		"nats://alice:p@s/s@h:4222":       "nats://alice:xxxxx@h:4222",
		"alice:s3cret@h:4222":             "alice:xxxxx@h:4222",
		"t0ken@h":                         "xxxxx@h",
		"nats://h:4222":                   "nats://h:4222",
		"h:4222":                          "h:4222",
		"nats://alice:s3cret@[::1]:4222":  "nats://alice:xxxxx@[::1]:4222",
		"nats://alice:s3c\"r`e<t@h:4222":  "nats://alice:xxxxx@h:4222",
		"nats://a:p1@h1,nats://t0k@h2":    "nats://a:xxxxx@h1,nats://xxxxx@h2",
		"nats://alice:%40s3cret@h:4222/x": "nats://alice:xxxxx@h:4222/x",
		"nats://alice:s3c ret@h:4222":     "nats://alice:xxxxx@h:4222",
	} {
		if got := Brokers.URL(in); got != want {
			t.Errorf("Brokers.URL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBrokersText(t *testing.T) {
	for in, want := range map[string]string{
		"unreachable: nats://a:pw1@h1:1,nats://tok@h2:2: no servers": "unreachable: nats://a:xxxxx@h1:1,nats://xxxxx@h2:2: no servers",
		`parse "nats://a:p@w@h:bad": invalid port`:                   `parse "nats://a:xxxxx@h:bad": invalid port`,
		"reconnected to nats://tok@h:4222 after 2s":                  "reconnected to nats://xxxxx@h:4222 after 2s",
		"no URL here: user@example.com":                              "no URL here: user@example.com",
		"nats://h:4222 and nats://u:p@h2":                            "nats://h:4222 and nats://u:xxxxx@h2",
	} {
		if got := Brokers.Text(in); got != want {
			t.Errorf("Brokers.Text(%q)\n = %q\nwant %q", in, got, want)
		}
	}
}

func TestPostgresText(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://app:Alpha7@Bravo9@db:5432/app?sslmode=require":   "postgres://app:xxxxx@db:5432/app?sslmode=require",
		"postgresql://app:pw@h1:5432,h2:5433/app":                    "postgresql://app:xxxxx@h1:5432,h2:5433/app",
		"FAIL connect to postgres://u:p@ss@h/db in replication mode": "FAIL connect to postgres://u:xxxxx@h/db in replication mode",
		"postgres://app:Alpha7 Bravo9@db/app":                        "postgres://app:xxxxx@db/app",
		"host=db user=app password = 'hunter 2' dbname=app":          "host=db user=app password = xxxxx dbname=app",
		"postgres://app@db/app?sslpassword=hunter2&sslmode=require":  "postgres://app@db/app?sslpassword=xxxxx&sslmode=require",
		// A user name alone is kept.
		"postgres://app@db/app":  "postgres://app@db/app",
		"mail admin@example.com": "mail admin@example.com",
	} {
		if got := Postgres.Text(in); got != want {
			t.Errorf("Postgres.Text(%q)\n = %q\nwant %q", in, got, want)
		}
	}
}

// The options are independent: a redactor for another kind of URL picks what it needs.
func TestOptions(t *testing.T) {
	r := New(Options{Params: []string{"token", "api_key"}})
	for in, want := range map[string]string{
		"https://hooks.example/x?token=abc&n=1": "https://hooks.example/x?token=xxxxx&n=1",
		"POST https://u:pw@h/x?API_KEY=k 401":   "POST https://u:xxxxx@h/x?API_KEY=xxxxx 401",
		"redis://default@h:6379/0":              "redis://default@h:6379/0",
		// Without Lists a comma belongs to the URL: two URLs joined by one are taken as one.
		"amqp://guest:guest@h,amqp://guest:guest@h2": "amqp://guest:xxxxx@h2",
	} {
		if got := r.Text(in); got != want {
			t.Errorf("Text(%q)\n = %q\nwant %q", in, got, want)
		}
	}
	if got := r.URL("redis://:s3cret@h:6379"); got != "redis://:xxxxx@h:6379" {
		t.Errorf("URL = %q", got)
	}
}

func TestErr(t *testing.T) {
	if Brokers.Err(nil) != nil {
		t.Fatal("Err(nil) != nil")
	}
	plain := errors.New("nothing to hide")
	if Brokers.Err(plain) != plain {
		t.Error("an error with nothing to hide was wrapped")
	}
	err := Brokers.Err(fmt.Errorf("dial nats://u:pw@h: %w", fs.ErrNotExist))
	if err.Error() != "dial nats://u:xxxxx@h: file does not exist" || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Err = %v (Is ErrNotExist: %v)", err, errors.Is(err, fs.ErrNotExist))
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

func TestLogger(t *testing.T) {
	c, logs := observer.New(zapcore.DebugLevel)
	log := Brokers.Logger(zap.New(c)).With(zap.String("with", "nats://tok3n@h"))
	var nilStringer *strings.Builder
	log.Warn("lost nats://u:pw@h1:4222", zap.Error(errors.New(`parse "nats://u:p@w@h": bad`)),
		zap.String("server", "nats://tok3n@h"), zap.Stringer("stringer", stringer("tls://u:pw@h")),
		zap.ByteString("bytes", []byte("nats://u:pw@h")), zap.Int("n", 1), zap.Stringer("nil", nilStringer))
	log.Debug("below nothing")
	entries := logs.All()
	if len(entries) != 2 {
		t.Fatalf("%d entries", len(entries))
	}
	e := entries[0]
	text := e.Message
	for k, v := range e.ContextMap() {
		text += fmt.Sprintf(" %s=%v", k, v)
	}
	for _, secret := range []string{"pw", "p@w", "tok3n"} {
		if strings.Contains(text, secret) {
			t.Errorf("%q in %s", secret, text)
		}
	}
	if !strings.Contains(text, "nats://u:xxxxx@h1:4222") || !strings.Contains(text, "server=nats://xxxxx@h") || !strings.Contains(text, "n=1") {
		t.Errorf("entry = %s", text)
	}
	// A disabled level stays disabled through the wrapper.
	c2, logs2 := observer.New(zapcore.InfoLevel)
	Brokers.Logger(zap.New(c2)).Debug("nats://u:pw@h")
	if logs2.Len() != 0 {
		t.Error("a debug entry passed an info core")
	}
}
