package pgtest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// Shared is a set of clusters that the tests of one package share, by name, so that each starts
// once. The tests create fixed-name objects on them, so a test run again in the same process
// (go test -count=2) gets a new set: the set is replaced when a test that used it already asks
// again after another test did. The zero value is ready; the package's TestMain calls Close.
type Shared struct {
	mu   sync.Mutex
	m    map[string]*Cluster
	seen map[string]bool // the tests that used the current set
	last string          // the latest of them
}

// Cluster returns the shared cluster called name, starting it with opts the first time. It skips
// the test under -short.
func (s *Shared) Cluster(t *testing.T, name string, opts Options) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	test, _, _ := strings.Cut(t.Name(), "/")
	if test != s.last {
		if s.seen[test] {
			s.closeLocked()
		}
		if s.seen == nil {
			s.seen = map[string]bool{}
		}
		s.seen[test], s.last = true, test
	}
	if c := s.m[name]; c != nil {
		return c
	}
	c, err := Start(opts)
	if err != nil {
		t.Fatalf("start PostgreSQL %s: %v", name, err)
	}
	if s.m == nil {
		s.m = map[string]*Cluster{}
	}
	s.m[name] = c
	return c
}

// Close stops every cluster of the set.
func (s *Shared) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
}

func (s *Shared) closeLocked() {
	for _, c := range s.m {
		c.Close()
	}
	s.m, s.seen = nil, nil
}

// SlotName returns a replication slot name made of the test's name: unique per test, valid as a
// slot name (lower case, digits, underscores; at most 52 characters).
func SlotName(t testing.TB) string {
	n := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(t.Name()))
	if len(n) > 50 {
		n = n[len(n)-50:]
	}
	return fmt.Sprintf("s_%s", n)
}

// DropSlotLater removes the slot at the end of the test, waiting (up to 60s) for it to become
// inactive.
func (c *Cluster) DropSlotLater(t testing.TB, slot string) {
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
