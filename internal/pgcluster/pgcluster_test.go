package pgcluster

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/testport"
)

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

// A port that something else holds when the cluster first starts costs one attempt: the cluster
// starts on another one.
func TestClusterStartsWhenItsFirstPortIsTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := l.Addr().(*net.TCPAddr).Port
	picks := 0
	pickPort = func() (int, error) {
		picks++
		if picks == 1 {
			return held, nil
		}
		return testport.Free()
	}
	t.Cleanup(func() { pickPort = testport.Free })
	c := start(t, Options{})
	if c.Port == held || picks < 2 {
		t.Fatalf("cluster on port %d after %d picks; port %d was held", c.Port, picks, held)
	}
	if _, err := c.Query("postgres", "SELECT 1"); err != nil {
		t.Fatal(err)
	}
}

// A restart waits for its port while something else holds it for a moment.
func TestRestartWaitsForItsPort(t *testing.T) {
	c := start(t, Options{})
	if err := c.Stop("fast"); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- c.Start() }()
	// Release the port once a start has failed on it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		log, _ := os.ReadFile(c.LogFile())
		if strings.Contains(string(log), "Address already in use") {
			break
		}
		if time.Now().After(deadline) {
			l.Close()
			t.Fatalf("no start failed on the held port within 60s:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.Close()
	if err := <-started; err != nil {
		t.Fatalf("start after the port was released: %v", err)
	}
	if _, err := c.Query("postgres", "SELECT 1"); err != nil {
		t.Fatal(err)
	}
}

// A standby replays what the primary writes after it was made, answers reads while in recovery,
// and accepts writes once promoted.
func TestStandbyReplaysAndPromotes(t *testing.T) {
	p := start(t, Options{})
	if err := p.Exec("postgres", "CREATE TABLE t (id int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	s, err := p.StartStandby(StandbyOptions{})
	if err != nil {
		t.Fatalf("start standby: %v", err)
	}
	t.Cleanup(s.Close)
	if s.Port == p.Port || s.Version != p.Version {
		t.Fatalf("standby port %d version %d, primary port %d version %d", s.Port, s.Version, p.Port, p.Version)
	}
	if err := p.Exec("postgres", "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n, err := s.Query("postgres", "SELECT count(*) FROM t")
		if err == nil && n == "2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("standby never replayed the second row: count %q, %v", n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rec, err := s.Query("postgres", "SELECT pg_is_in_recovery()"); err != nil || rec != "t" {
		t.Fatalf("pg_is_in_recovery on the standby = %q, %v", rec, err)
	}
	if err := s.Exec("postgres", "INSERT INTO t VALUES (3)"); err == nil {
		t.Fatal("a standby accepted a write")
	}
	if err := s.Promote(); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec("postgres", "INSERT INTO t VALUES (3)"); err != nil {
		t.Fatalf("write after promotion: %v", err)
	}
}
