// Package pgtest gives tests and benchmarks throwaway PostgreSQL clusters (package pgcluster) whose
// lifetime and failures belong to a test: New stops the cluster when the test ends, MustExec fails
// the test on an error. Only tests and benchmark tools import it: it links package testing.
package pgtest

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/pgstream/pgstream/internal/pgcluster"
)

// Superuser credentials of every cluster. Host connections use SCRAM; the socket trusts.
const (
	User     = pgcluster.User
	Password = pgcluster.Password
)

// Options configure a cluster. The zero value gives wal_level=logical.
type Options = pgcluster.Options

// Cluster is a running throwaway PostgreSQL server: a pgcluster.Cluster with test helpers.
type Cluster struct {
	*pgcluster.Cluster
}

// BinDir finds the PostgreSQL server binaries.
func BinDir() (string, error) { return pgcluster.BinDir() }

// Start creates and starts a cluster. Call Close to stop it and remove its directory. When
// PGSTREAM_PG_MAJOR is set (make test-versions sets it), a server of another major version is an
// error, so that a run meant for one version never passes on another.
func Start(opts Options) (*Cluster, error) {
	c, err := pgcluster.Start(opts)
	if err != nil {
		return nil, err
	}
	if want := os.Getenv("PGSTREAM_PG_MAJOR"); want != "" {
		if n, _ := strconv.Atoi(want); n != c.Version {
			c.Close()
			return nil, fmt.Errorf("PGSTREAM_PG_MAJOR is %s but the server binaries in %s are PostgreSQL %d", want, c.BinDir, c.Version)
		}
	}
	return &Cluster{c}, nil
}

// New starts a cluster for one test and stops it when the test ends.
func New(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	c, err := Start(opts)
	if err != nil {
		tb.Fatalf("start PostgreSQL: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// MustExec is Exec that fails the test on error.
func (c *Cluster) MustExec(tb testing.TB, db, sql string) {
	tb.Helper()
	if err := c.Exec(db, sql); err != nil {
		tb.Fatalf("exec %q: %v", sql, err)
	}
}
