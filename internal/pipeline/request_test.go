package pipeline

import (
	"net"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/replication"
	"github.com/pgstream/pgstream/walparse"
)

// A snapshot request whose tables cannot be looked up when its transaction commits (the catalog
// connection fails) is never lost: the transaction is not handed over, and once it is read again
// after the reconnect, the requested table is recorded with the transaction's batch before the
// batch can reach a sink.
func TestSnapshotRequestSurvivesAFailedLookup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	pg := pgtest.New(t, pgtest.Options{})
	pg.MustExec(t, "postgres", "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 100); CREATE PUBLICATION pub FOR ALL TABLES")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "postgres://" + pgtest.User + ":" + pgtest.Password + "@" + ln.Addr().String() + "/postgres?sslmode=disable"
	ln.Close()

	src := replication.Config{URL: dead, Slot: "s", Publication: "pub", ConnectTimeout: 5 * time.Second}
	log := zaptest.NewLogger(t)
	catalog := newLazyCatalog(src)
	defer catalog.close()
	cfg := Config{Snapshot: SnapshotConfig{ChunkPages: 1}}
	sn := newSnapshotter(snapDeps{cfg: cfg, src: src, log: log, now: time.Now, catalog: catalog, progress: newSnapProgress(cfg.Snapshot, log, time.Now)})
	r := newApplyRig(t, 100, 0)
	r.app.hooks = sn
	var marksAtHandOver []int
	handOver := r.app.handOver
	r.app.handOver = func(b *batch) uint64 {
		seq := handOver(b) // the rig calls b.numbered first, as the pipeline does before the sinks
		marksAtHandOver = append(marksAtHandOver, len(sn.state.marksNow()))
		return seq
	}
	const commit = lsn.LSN(0x5000)
	tx := []walparse.Message{
		&walparse.Begin{FinalLSN: commit, Xid: 7},
		&walparse.LogicalMessage{Flags: walparse.MessageFlagTransactional, LSN: commit - 0x100, Prefix: []byte(RequestPrefix), Content: []byte(`{"slot":"s","tables":["public.orders"]}`)},
		&walparse.Commit{CommitLSN: commit, EndLSN: commit + 0x30},
	}
	err = r.apply(tx...)
	if err == nil || !replication.IsRetryable(err) {
		t.Fatalf("apply with the catalog unreachable = %v, want a retryable error", err)
	}
	if len(r.out) != 0 {
		t.Fatalf("a transaction whose request could not be planned was handed over: %+v", r.out)
	}

	// The reconnect: the stream starts again at the transaction's Begin, the catalog answers.
	r.app.reconnect()
	catalog.conn.src.URL = pg.URL("postgres")
	if err := r.apply(tx...); err != nil {
		t.Fatal(err)
	}
	if len(r.out) != 1 || r.out[0].pos.CommitLSN != commit {
		t.Fatalf("handed %+v, want the request's transaction", r.out)
	}
	if len(marksAtHandOver) != 1 || marksAtHandOver[0] != 1 {
		t.Fatalf("marks when the batch was handed over: %v, want the requested table's", marksAtHandOver)
	}
	m := sn.state.marksNow()[0]
	if m.seq != 1 || m.add == nil || m.add.Table != "orders" || m.add.Gen != commit {
		t.Fatalf("mark %+v, want orders of generation %s with batch 1", m, commit)
	}
	if len(sn.jobs.jobs) == 0 {
		t.Fatal("no chunk of the requested table is queued")
	}
}
