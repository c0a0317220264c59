package events

import (
	"os"
	"sync"
	"testing"

	"github.com/pgstream/pgstream/internal/pgtest"
)

// One PostgreSQL cluster is shared by the tests of this package that need a server; it starts on
// first use and stops when the package's tests end.
var (
	clusterOnce sync.Once
	cluster     *pgtest.Cluster
	clusterErr  error
)

func sharedCluster(t testing.TB) *pgtest.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a PostgreSQL server (skipped with -short)")
	}
	clusterOnce.Do(func() { cluster, clusterErr = pgtest.Start(pgtest.Options{}) })
	if clusterErr != nil {
		t.Fatalf("start PostgreSQL: %v", clusterErr)
	}
	return cluster
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster != nil {
		cluster.Close()
	}
	os.Exit(code)
}
