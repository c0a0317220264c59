package e2e

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/checkpoint"
)

// A slot dropped, recreated or advanced behind pgstream's back must stop it with the way out,
// never be streamed from with a silent gap.
func TestSlotDroppedOrAdvancedIsRefused(t *testing.T) {
	db := newDB(t)
	exec1(t, db, `CREATE TABLE t (id int PRIMARY KEY)`)
	dir := t.TempDir()
	r := startPipeline(t, db, runOpts{dir: dir})
	r.waitStreaming()
	exec1(t, db, `INSERT INTO t VALUES (1)`)
	waitEvents(t, r.path, 60*time.Second, atLeast(1))
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	// The walsender releases the slot only once it has noticed the closed connection; until then
	// the slot can be neither advanced nor dropped.
	waitSlotInactive(t, r.slot)
	// Changes made while pgstream is down, then the slot is advanced past them by someone else.
	exec1(t, db, `INSERT INTO t VALUES (2)`)
	exec1(t, db, fmt.Sprintf(`SELECT pg_replication_slot_advance('%s', pg_current_wal_lsn())`, r.slot))
	r2 := startPipeline(t, db, runOpts{dir: dir, slot: r.slot})
	err := waitEnd(t, r2)
	if !errors.Is(err, checkpoint.ErrSlotAhead) || !strings.Contains(err.Error(), "remove") {
		t.Fatalf("advanced slot: err = %v, want ErrSlotAhead naming the way out", err)
	}

	// The slot dropped and recreated: the checkpoint is refused, not reused.
	waitSlotInactive(t, r.slot)
	exec1(t, db, fmt.Sprintf(`SELECT pg_drop_replication_slot('%s')`, r.slot))
	r3 := startPipeline(t, db, runOpts{dir: dir, slot: r.slot})
	err = waitEnd(t, r3)
	if !errors.Is(err, checkpoint.ErrSlotMissing) {
		t.Fatalf("dropped slot: err = %v, want ErrSlotMissing", err)
	}
	if v, _ := cluster.Query("postgres", fmt.Sprintf(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = '%s'`, r.slot)); v != "0" {
		t.Fatalf("a new slot was created although the checkpoint refers to the dropped one")
	}
	exec1(t, db, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, r.slot))
	r4 := startPipeline(t, db, runOpts{dir: dir, slot: r.slot})
	if err := waitEnd(t, r4); !errors.Is(err, checkpoint.ErrSlotAhead) {
		t.Fatalf("recreated slot: err = %v, want ErrSlotAhead", err)
	}
}

// waitEnd waits for a pipeline that is expected to fail at start.
func waitEnd(t *testing.T, r *runner) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.ended, r.result = true, err
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("pipeline kept running")
		return nil
	}
}
