package pgcluster

import "testing"

// start starts a cluster that the test stops when it ends.
func start(t *testing.T, opts Options) *Cluster {
	t.Helper()
	c, err := Start(opts)
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestClusterStartsWithLogicalWAL(t *testing.T) {
	c := start(t, Options{})
	got, err := c.Query("postgres", "SHOW wal_level")
	if err != nil {
		t.Fatal(err)
	}
	if got != "logical" {
		t.Fatalf("wal_level = %q", got)
	}
	if err := c.Restart("fast"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Query("postgres", "SELECT 1"); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestClusterReplicaLevel(t *testing.T) {
	c := start(t, Options{WalLevel: "replica"})
	got, err := c.Query("postgres", "SHOW wal_level")
	if err != nil || got != "replica" {
		t.Fatalf("wal_level = %q, %v", got, err)
	}
}
