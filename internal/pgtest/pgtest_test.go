package pgtest

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// recordTB records Fatalf instead of ending the test.
type recordTB struct {
	testing.TB
	fatal string
}

func (r *recordTB) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

func TestNewStopsTheClusterWhenTheTestEnds(t *testing.T) {
	var dir string
	t.Run("uses", func(t *testing.T) {
		c := New(t, Options{})
		dir = c.Dir
		c.MustExec(t, "postgres", "CREATE TABLE t (id int)")
		if got, err := c.Query("postgres", "SELECT count(*) FROM t"); err != nil || got != "0" {
			t.Fatalf("count = %q, %v", got, err)
		}
		rec := &recordTB{TB: t}
		c.MustExec(rec, "postgres", "SELECT * FROM missing_table")
		if !strings.Contains(rec.fatal, "missing_table") {
			t.Errorf("MustExec of a failing statement reported %q", rec.fatal)
		}
	})
	if dir == "" {
		t.Fatal("the subtest did not start a cluster")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s after its test ended: %v (want it removed)", dir, err)
	}
}
