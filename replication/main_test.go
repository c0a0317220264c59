package replication

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/lsn"
)

// shared holds the clusters every test of the package shares; TestMain stops them.
var shared pgtest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Close()
	os.Exit(code)
}

// cluster returns the shared cluster called name, starting it with opts the first time.
func cluster(t *testing.T, name string, opts pgtest.Options) *pgtest.Cluster {
	t.Helper()
	return shared.Cluster(t, name, opts)
}

// mainCluster: wal_level logical, default timeouts.
func mainCluster(t *testing.T) *pgtest.Cluster { return cluster(t, "main", pgtest.Options{}) }

// timeoutCluster: wal_sender_timeout 2s.
func timeoutCluster(t *testing.T) *pgtest.Cluster {
	return cluster(t, "timeout", pgtest.Options{Settings: map[string]string{"wal_sender_timeout": "'2s'"}})
}

func boolp(b bool) *bool { return &b }

func testConfig(c *pgtest.Cluster, slot, pub string) Config {
	return Config{URL: c.URL("postgres"), Slot: slot, Publication: pub, ConnectTimeout: 30 * time.Second}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, cfg Config) *Conn {
	t.Helper()
	c, err := Connect(ctxT(t, 30*time.Second), cfg)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// dropSlotLater removes a slot at the end of a test, waiting (up to 60s) for it to become inactive.
func dropSlotLater(t *testing.T, c *pgtest.Cluster, slot string) { c.DropSlotLater(t, slot) }

// kindOf returns the sentinel an *Error carries, for messages.
func kindOf(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return nil
}

func wantKind(t *testing.T, err, kind error, fixHas ...string) *Error {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error %v (kind %v); want %v", err, kindOf(err), kind)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T is not *Error", err)
	}
	for _, s := range fixHas {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not mention %q", err, s)
		}
	}
	return e
}

// receiveUntil receives frames until pick returns true, answering keepalives that ask for a reply.
func receiveUntil(t *testing.T, c *Conn, timeout time.Duration, pick func(Frame) bool) Frame {
	t.Helper()
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		f, err := c.Receive(time.Now().Add(200 * time.Millisecond))
		if errors.Is(err, ErrDeadline) {
			continue
		}
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if f.Kind == KindKeepalive && f.ReplyRequested {
			if err := c.SendStatus(f.ServerWALEnd, 0, 0, false); err != nil {
				t.Fatalf("SendStatus: %v", err)
			}
		}
		if pick(f) {
			f.Data = append([]byte(nil), f.Data...)
			return f
		}
	}
	t.Fatalf("no matching frame within %v", timeout)
	return Frame{}
}

// commitEnd returns the end LSN of a pgoutput Commit message.
func commitEnd(data []byte) (lsn.LSN, bool) {
	if len(data) != 26 || data[0] != 'C' {
		return 0, false
	}
	return lsn.LSN(binary.BigEndian.Uint64(data[10:18])), true
}

func slotName(t *testing.T) string { return pgtest.SlotName(t) }
