// Package pgtest gives tests and benchmarks throwaway PostgreSQL clusters (package pgcluster) whose
// lifetime and failures belong to a test: New stops the cluster when the test ends, MustExec fails
// the test on an error. Only tests and benchmark tools import it: it links package testing.
package pgtest

import (
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

// Start creates and starts a cluster. Call Close to stop it and remove its directory.
func Start(opts Options) (*Cluster, error) {
	c, err := pgcluster.Start(opts)
	if err != nil {
		return nil, err
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
