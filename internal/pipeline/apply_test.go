package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/events"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/walparse"
)

// handed is one batch an applier handed over, as the sinks would see it.
type handed struct {
	pos checkpoint.Position
	ids []string
}

// applyRig drives an applier with walparse messages and records what it hands over.
type applyRig struct {
	t   *testing.T
	app *applier
	out []handed
}

type noHooks struct{}

func (noHooks) relation(*walparse.Relation)                               {}
func (noHooks) inserted(*walparse.Insert)                                 {}
func (noHooks) watching() bool                                            { return false }
func (noHooks) keyChanged(uint32, []byte)                                 {}
func (noHooks) truncated(uint32)                                          {}
func (noHooks) watermark(*walparse.LogicalMessage) (*batch, func(uint64)) { return nil, nil }
func (noHooks) began()                                                    {}
func (noHooks) request(*walparse.LogicalMessage)                          {}
func (noHooks) committing(context.Context, lsn.LSN) (func(uint64), error) { return nil, nil }

// newApplyRig returns an applier that closes a batch every maxEvents events and that has already
// delivered every transaction committed at or before skipThrough.
func newApplyRig(t *testing.T, maxEvents int, skipThrough lsn.LSN) *applyRig {
	r := &applyRig{t: t}
	now := func() time.Time { return time.Unix(0, 0) }
	r.app = &applier{tx: newTxState(skipThrough), cur: newBatch(), hooks: noHooks{}, txs: new(atomic.Uint64),
		enc: events.NewEncoder(events.Options{Database: "db", Now: now}, nil), maxEvents: maxEvents, maxBytes: 1 << 20}
	r.app.handOver = func(b *batch) uint64 {
		if b.numbered != nil {
			b.numbered(uint64(len(r.out) + 1))
		}
		h := handed{pos: b.pos}
		for i := range b.events {
			h.ids = append(h.ids, b.events[i].ID())
		}
		r.out = append(r.out, h)
		return uint64(len(r.out))
	}
	r.apply(&walparse.Relation{RelationID: 1, Namespace: "public", Name: "t", ReplicaIdentity: 'd',
		Columns: []walparse.RelationColumn{{Flags: walparse.ColumnFlagKey, Name: "id", TypeOID: 23}}})
	return r
}

func (r *applyRig) apply(msgs ...walparse.Message) error {
	r.t.Helper()
	for _, m := range msgs {
		if err := r.app.apply(context.Background(), m, 0); err != nil {
			return err
		}
	}
	return nil
}

func (r *applyRig) must(msgs ...walparse.Message) {
	r.t.Helper()
	if err := r.apply(msgs...); err != nil {
		r.t.Fatal(err)
	}
}

// taken returns what was handed over since the last call.
func (r *applyRig) taken() []handed {
	out := r.out
	r.out = nil
	return out
}

func begin(commit lsn.LSN) *walparse.Begin {
	return &walparse.Begin{FinalLSN: commit, Xid: uint32(commit)}
}

func commitMsg(commit lsn.LSN) *walparse.Commit {
	return &walparse.Commit{CommitLSN: commit, EndLSN: commit + 8}
}

func insert(id int) *walparse.Insert {
	return &walparse.Insert{RelationID: 1, New: walparse.Tuple{Columns: []walparse.TupleColumn{{Kind: walparse.TupleText, Data: []byte(strconv.Itoa(id))}}}}
}

// txn is a whole transaction committing at commit with one insert per id.
func txn(commit lsn.LSN, ids ...int) []walparse.Message {
	msgs := []walparse.Message{begin(commit)}
	for _, id := range ids {
		msgs = append(msgs, insert(id))
	}
	return append(msgs, commitMsg(commit))
}

func ids(commit lsn.LSN, seqs ...int) []string {
	var out []string
	for _, s := range seqs {
		out = append(out, fmt.Sprintf("%s/%d", commit, s))
	}
	return out
}

func checkHanded(t *testing.T, got []handed, want ...handed) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("handed over %d batches %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range got {
		if got[i].pos != want[i].pos || !slices.Equal(got[i].ids, want[i].ids) {
			t.Fatalf("batch %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestApplySkipsWhatTheCheckpointHolds(t *testing.T) {
	r := newApplyRig(t, 100, 0x200)
	r.must(txn(0x100, 1, 2)...)
	r.must(txn(0x200, 3)...)
	checkHanded(t, r.taken()) // both committed at or before the checkpoint's commit
	r.must(txn(0x300, 4, 5)...)
	checkHanded(t, r.taken(), handed{checkpoint.Position{CommitLSN: 0x300, EndLSN: 0x308}, ids(0x300, 0, 1)})
}

func TestApplyReconnectAfterCommit(t *testing.T) {
	r := newApplyRig(t, 100, 0)
	r.must(txn(0x100, 1)...)
	r.must(txn(0x200, 2)...)
	checkHanded(t, r.taken(),
		handed{checkpoint.Position{CommitLSN: 0x100, EndLSN: 0x108}, ids(0x100, 0)},
		handed{checkpoint.Position{CommitLSN: 0x200, EndLSN: 0x208}, ids(0x200, 0)})
	// The connection drops before the checkpoint holds anything: the stream starts again at the
	// durable position and sends both transactions again.
	r.app.reconnect()
	r.must(txn(0x100, 1)...)
	r.must(txn(0x200, 2)...)
	checkHanded(t, r.taken())
	r.must(txn(0x300, 3)...)
	checkHanded(t, r.taken(), handed{checkpoint.Position{CommitLSN: 0x300, EndLSN: 0x308}, ids(0x300, 0)})
}

func TestApplyReconnectMidTransaction(t *testing.T) {
	r := newApplyRig(t, 2, 0)
	// A transaction of five changes: two full batches are handed over, then the connection drops.
	r.must(begin(0x100), insert(1), insert(2), insert(3), insert(4), insert(5))
	checkHanded(t, r.taken(), handed{ids: ids(0x100, 0, 1)}, handed{ids: ids(0x100, 2, 3)})
	r.app.reconnect()
	if !r.app.idle() {
		t.Fatal("the event that waited in the current batch survived the reconnect")
	}
	// The server sends the whole transaction again: only what was not handed over comes out.
	r.must(txn(0x100, 1, 2, 3, 4, 5)...)
	r.must(txn(0x200, 6)...)
	checkHanded(t, r.taken(),
		handed{checkpoint.Position{CommitLSN: 0x100, EndLSN: 0x108}, ids(0x100, 4)},
		handed{checkpoint.Position{CommitLSN: 0x200, EndLSN: 0x208}, ids(0x200, 0)})

	// Two reconnects inside the same transaction.
	r.must(begin(0x300), insert(7), insert(8), insert(9))
	r.app.reconnect()
	r.must(begin(0x300), insert(7), insert(8), insert(9), insert(10), insert(11))
	r.app.reconnect()
	r.must(txn(0x300, 7, 8, 9, 10, 11)...)
	checkHanded(t, r.taken(),
		handed{ids: ids(0x300, 0, 1)}, handed{ids: ids(0x300, 2, 3)},
		handed{checkpoint.Position{CommitLSN: 0x300, EndLSN: 0x308}, ids(0x300, 4)})
}

func TestApplyReconnectBeforeAnyBatchOfTheTransaction(t *testing.T) {
	r := newApplyRig(t, 10, 0)
	r.must(begin(0x100), insert(1), insert(2))
	checkHanded(t, r.taken())
	r.app.reconnect()
	r.must(txn(0x100, 1, 2)...)
	checkHanded(t, r.taken(), handed{checkpoint.Position{CommitLSN: 0x100, EndLSN: 0x108}, ids(0x100, 0, 1)})
}

func TestApplyMessageOutsideTransaction(t *testing.T) {
	r := newApplyRig(t, 100, 0)
	msg := &walparse.LogicalMessage{LSN: 0x150, Prefix: []byte("app"), Content: []byte("x")}
	r.must(msg)
	got := r.taken()
	if len(got) != 1 || got[0].pos != (checkpoint.Position{CommitLSN: 0x150, EndLSN: 0x150}) || len(got[0].ids) != 1 {
		t.Fatalf("message outside a transaction handed over as %+v", got)
	}
	r.app.reconnect()
	r.must(msg)
	checkHanded(t, r.taken())
}

func TestApplyStopsAtEndPosition(t *testing.T) {
	r := newApplyRig(t, 100, 0)
	r.app.endLSN = 0x200
	r.must(txn(0x100, 1)...)
	if err := r.apply(txn(0x200, 2)...); !errors.Is(err, errEndReached) {
		t.Fatalf("commit at the end position: %v, want errEndReached", err)
	}
	checkHanded(t, r.taken(),
		handed{checkpoint.Position{CommitLSN: 0x100, EndLSN: 0x108}, ids(0x100, 0)},
		handed{checkpoint.Position{CommitLSN: 0x200, EndLSN: 0x208}, ids(0x200, 0)})
}

// handedReach is where the WAL of what reached the sinks ends, at least: a commit handed over, a
// transaction split into batches before its commit, a message outside any transaction.
func TestApplyHandedReach(t *testing.T) {
	r := newApplyRig(t, 2, 0x80)
	check := func(want lsn.LSN) {
		t.Helper()
		if got := r.app.tx.handedReach(); got != want {
			t.Fatalf("handedReach = %s, want %s", got, want)
		}
	}
	check(0) // the checkpoint's position is Reconcile's to check
	r.must(txn(0x100, 1)...)
	check(0x108) // the end of its commit record
	r.must(begin(0x200), insert(2), insert(3), insert(4))
	check(0x201) // its first two events are handed over, its commit record starts at 0x200
	r.app.reconnect()
	check(0x201)
	r.must(begin(0x200), insert(2), insert(3), insert(4))
	r.app.reconnect()
	r.must(begin(0x300), insert(5))
	check(0x201)      // nothing of 0x300 is handed over yet
	r.app.reconnect() // 0x200 is forgotten as a split transaction, not as handed over
	check(0x201)
	r.must(&walparse.LogicalMessage{LSN: 0x400, Prefix: []byte("app"), Content: []byte("x")})
	check(0x400)
}
