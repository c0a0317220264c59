package inspect

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/replication"
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

func boolp(b bool) *bool { return &b }

func testConfig(c *pgtest.Cluster, slot, pub string) replication.Config {
	return replication.Config{URL: c.URL("postgres"), Slot: slot, Publication: pub, ConnectTimeout: 30 * time.Second}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, cfg replication.Config) *replication.Conn {
	t.Helper()
	c, err := replication.Connect(ctxT(t, 30*time.Second), cfg)
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
	var e *replication.Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return nil
}

func wantKind(t *testing.T, err, kind error, fixHas ...string) *replication.Error {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error %v (kind %v); want %v", err, kindOf(err), kind)
	}
	var e *replication.Error
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

func slotName(t *testing.T) string { return pgtest.SlotName(t) }
