package inspect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/replication"
)

// Clusters are shared by every test of the package and stopped by TestMain. The tests create
// fixed-name objects on them, so a test run again in the same process (go test -count=2) starts a
// new set of clusters: seen holds the tests that used the current set, last the latest of them.
var shared struct {
	mu   sync.Mutex
	m    map[string]*pgtest.Cluster
	seen map[string]bool
	last string
}

func TestMain(m *testing.M) {
	code := m.Run()
	shared.mu.Lock()
	for _, c := range shared.m {
		c.Close()
	}
	shared.mu.Unlock()
	os.Exit(code)
}

// cluster returns the shared cluster called name, starting it with opts the first time.
func cluster(t *testing.T, name string, opts pgtest.Options) *pgtest.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	test, _, _ := strings.Cut(t.Name(), "/")
	if test != shared.last {
		if shared.seen[test] {
			for _, c := range shared.m {
				c.Close()
			}
			shared.m, shared.seen = nil, nil
		}
		if shared.seen == nil {
			shared.seen = map[string]bool{}
		}
		shared.seen[test], shared.last = true, test
	}
	if c := shared.m[name]; c != nil {
		return c
	}
	c, err := pgtest.Start(opts)
	if err != nil {
		t.Fatalf("start PostgreSQL %s: %v", name, err)
	}
	if shared.m == nil {
		shared.m = map[string]*pgtest.Cluster{}
	}
	shared.m[name] = c
	return c
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
func dropSlotLater(t *testing.T, c *pgtest.Cluster, slot string) {
	t.Cleanup(func() {
		deadline := time.Now().Add(60 * time.Second)
		for {
			err := c.Exec("postgres", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '"+slot+"'")
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("drop slot %s: %v", slot, err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

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

func slotName(t *testing.T) string {
	n := strings.ToLower(t.Name())
	n = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, n)
	if len(n) > 50 {
		n = n[len(n)-50:]
	}
	return fmt.Sprintf("s_%s", n)
}
