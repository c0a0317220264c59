package pipeline

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/internal/events"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/walparse"
)

// txState decides which changes of the stream are handed to the sinks. It pairs Begin with Commit
// and, after a reconnect, drops what was handed over before: whole transactions committed at or
// before skipThrough, and the first events of a transaction that was split into several batches
// and whose first batches were handed over (partial). It is driven by decoded messages and the
// applier's hand-overs, and does no I/O.
type txState struct {
	tx             events.Tx
	open           bool
	skip           bool      // the open transaction was handed over in full before a reconnect
	skipSeq        uint32    // events of the open transaction below this seq were handed over before a reconnect
	skipThrough    lsn.LSN   // transactions committed at or before this were delivered already
	lastRegistered lsn.LSN   // commit LSN of the newest batch handed over that completes a transaction
	partial        partialTx // the open transaction whose first events are already handed over
	reach          lsn.LSN   // the WAL of what was handed over ends here at least; never goes back
}

type partialTx struct {
	commit lsn.LSN
	seq    uint32
}

// newTxState starts with every transaction committed at or before skipThrough delivered.
func newTxState(skipThrough lsn.LSN) txState {
	return txState{skipThrough: skipThrough, lastRegistered: skipThrough}
}

// begin opens the transaction of m and reports whether its changes are handed over.
func (s *txState) begin(m *walparse.Begin) bool {
	s.tx = events.Tx{Xid: m.Xid, CommitLSN: m.FinalLSN, CommitTime: m.CommitTime}
	s.open = true
	s.skip = m.FinalLSN <= s.skipThrough
	s.skipSeq = 0
	if s.partial.commit == m.FinalLSN {
		s.skipSeq = s.partial.seq
	}
	return !s.skip
}

// keep reports whether an event numbered seq of the open transaction is handed over: not when an
// earlier connection handed it over already. Outside a transaction every event is.
func (s *txState) keep(seq uint32) bool {
	return !s.open || seq >= s.skipSeq
}

// split records that a batch was closed inside the open transaction: the events numbered below
// tx.Seq are handed over, and after a reconnect they are not handed over again.
func (s *txState) split() {
	if s.open {
		s.partial = partialTx{commit: s.tx.CommitLSN, seq: s.tx.Seq}
		// Its commit record starts at CommitLSN: the WAL holding it ends past that.
		s.reach = max(s.reach, s.tx.CommitLSN+1)
	}
}

// commit closes the open transaction and reports whether its changes were handed over.
func (s *txState) commit() bool {
	s.open = false
	if s.skip {
		return false
	}
	s.partial = partialTx{}
	return true
}

// handedOver records a batch handed to the sinks whose position is pos.
func (s *txState) handedOver(pos checkpoint.Position) {
	if pos.CommitLSN != 0 {
		s.lastRegistered = pos.CommitLSN
		s.reach = max(s.reach, pos.EndLSN)
	}
}

// handedReach returns where the WAL that the changes handed over came from ends, at least: the
// end of the newest commit record or message handed over, or just past the start of the commit
// record of a transaction whose first events were handed over before its commit.
func (s *txState) handedReach() lsn.LSN { return s.reach }

// deliverOutside reports whether a message decoded outside any transaction at at is handed over:
// not when an earlier connection handed it over already.
func (s *txState) deliverOutside(at lsn.LSN) bool {
	return at > s.skipThrough
}

// reconnect prepares for a stream that starts again at the durable position: what was handed over
// is dropped when it comes again, and a transaction left open restarts from its Begin.
func (s *txState) reconnect() {
	if s.open && s.partial.commit != s.tx.CommitLSN {
		s.partial = partialTx{}
	}
	s.open, s.skip = false, false
	s.skipThrough = max(s.skipThrough, s.lastRegistered)
}

// streamHooks is what the snapshot side learns from the stream: the changes that may touch the rows
// of a chunk being read between watermarks, the watermarks themselves, and snapshot requests.
// Every method is called by the replication goroutine.
type streamHooks interface {
	// relation sees every Relation message.
	relation(m *walparse.Relation)
	// inserted sees every insert of a transaction that is handed over.
	inserted(m *walparse.Insert)
	// watching reports whether keyChanged and truncated are wanted (a watermark window is open).
	watching() bool
	// keyChanged reports that the row with replica identity key of the relation changed.
	keyChanged(relID uint32, key []byte)
	// truncated reports a truncate of the relation.
	truncated(relID uint32)
	// watermark sees a non-transactional watermark message not handed over before. For a high
	// watermark it may return a batch of chunk rows to hand over after the current batch, and a
	// function to call with the batch's sequence number once it is handed over.
	watermark(m *walparse.LogicalMessage) (rows *batch, handed func(seq uint64))
	// began sees every Begin: what an earlier transaction left (one cut short by a reconnect) is
	// dropped.
	began()
	// request sees a transactional snapshot request of a transaction that is handed over.
	request(m *walparse.LogicalMessage)
	// committing sees the Commit of a transaction that is about to be handed over, before its last
	// batch is. It plans the snapshots the transaction requested and returns what records them
	// with that batch (nil when there is none), called with the batch's number before any sink can
	// acknowledge it: a checkpoint saved past the transaction always holds its requests. An error
	// means the requests could not be planned now (the catalog connection failed): the transaction
	// is not handed over, and is read again after the reconnect or restart.
	committing(ctx context.Context, commit lsn.LSN) (record func(seq uint64), err error)
}

// applier turns decoded pgoutput messages into batches of encoded events for the sinks. It owns
// the transaction state, the encoder and the batch being filled, hands each closed batch over
// through handOver, and tells the snapshot side through hooks what concerns it. It is used by the
// replication goroutine only, except for the counters.
type applier struct {
	tx        txState
	enc       *events.Encoder
	markers   *events.Markers // nil unless Config.TransactionMarkers
	cur       *batch
	hooks     streamHooks
	handOver  func(*batch) uint64
	maxEvents int
	maxBytes  int
	endLSN    lsn.LSN // Config.EndLSN
	// onHeartbeat sees every heartbeat message of a transaction handed over; heartbeatToSinks
	// delivers them as events too.
	onHeartbeat      func(*walparse.LogicalMessage)
	heartbeatToSinks bool

	txs *atomic.Uint64 // transactions handed over
}

// idle reports that no transaction is open and no event waits in the current batch.
func (a *applier) idle() bool { return !a.tx.open && len(a.cur.events) == 0 }

// reconnect prepares for a stream that starts again at the durable position: the current batch,
// which holds part of a transaction not committed in the stream yet, is dropped.
func (a *applier) reconnect() {
	a.tx.reconnect()
	a.cur.reset()
}

// apply handles one decoded message received at at. It returns errEndReached once a transaction
// committed at or past endLSN.
func (a *applier) apply(ctx context.Context, msg walparse.Message, at lsn.LSN) error {
	switch m := msg.(type) {
	case *walparse.Begin:
		a.hooks.began()
		if a.tx.begin(m) && a.markers != nil {
			return a.emit(a.markers.Begin(&a.tx.tx, at), nil)
		}
	case *walparse.Commit:
		var record func(seq uint64)
		if !a.tx.skip {
			var err error
			if record, err = a.hooks.committing(ctx, m.CommitLSN); err != nil {
				return err
			}
		}
		if a.tx.commit() {
			if a.markers != nil {
				a.cur.add(a.markers.End(&a.tx.tx, at, a.tx.tx.Seq))
			}
			a.cur.pos = checkpoint.Position{CommitLSN: m.CommitLSN, EndLSN: m.EndLSN}
			a.cur.commitTime = m.CommitTime.Time()
			a.cur.numbered = record
			a.flush()
			a.txs.Add(1)
		}
		if a.endLSN != 0 && m.CommitLSN >= a.endLSN {
			return errEndReached
		}
	case *walparse.Relation:
		a.hooks.relation(m)
		return a.enc.Relation(ctx, m)
	case *walparse.TypeMsg:
		a.enc.TypeMsg(m)
	case *walparse.Origin:
		// Informational: which replication origin the transaction came from.
	case *walparse.Insert:
		if !a.tx.skip {
			a.hooks.inserted(m)
			ev, err := a.enc.Insert(&a.tx.tx, at, m)
			if err == nil && a.hooks.watching() {
				a.hooks.keyChanged(m.RelationID, ev.Key)
			}
			return a.emit(ev, err)
		}
	case *walparse.Update:
		if !a.tx.skip {
			ev, err := a.enc.Update(&a.tx.tx, at, m)
			if err != nil || !a.hooks.watching() {
				return a.emit(ev, err)
			}
			a.hooks.keyChanged(m.RelationID, ev.Key)
			if err := a.emit(ev, nil); err != nil {
				return err
			}
			if m.OldKind != walparse.OldNone {
				old, err := a.enc.KeyOf(m.RelationID, &m.Old)
				if err != nil {
					return fmt.Errorf("encode change at %s: %w", at, err)
				}
				a.hooks.keyChanged(m.RelationID, old)
			}
		}
	case *walparse.Delete:
		if !a.tx.skip {
			ev, err := a.enc.Delete(&a.tx.tx, at, m)
			if err == nil && a.hooks.watching() {
				a.hooks.keyChanged(m.RelationID, ev.Key)
			}
			return a.emit(ev, err)
		}
	case *walparse.Truncate:
		if !a.tx.skip {
			if a.hooks.watching() {
				for _, id := range m.RelationIDs {
					a.hooks.truncated(id)
				}
			}
			return a.enc.Truncate(&a.tx.tx, at, m, func(ev sinks.Event) error { return a.emit(ev, nil) })
		}
	case *walparse.LogicalMessage:
		return a.message(ctx, m)
	default:
		return fmt.Errorf("unexpected pgoutput message %s with protocol version %d", msg.Type(), protoVersion)
	}
	return nil
}

// message handles a logical decoding message: pgstream's own watermarks and snapshot requests
// steer snapshots and are never delivered; every other message is an event.
func (a *applier) message(ctx context.Context, m *walparse.LogicalMessage) error {
	switch string(m.Prefix) {
	case WatermarkPrefix:
		if !m.Transactional() && a.tx.deliverOutside(m.LSN) {
			if rows, handed := a.hooks.watermark(m); rows != nil {
				if len(a.cur.events) > 0 {
					a.flush()
				}
				rows.pos = checkpoint.Position{CommitLSN: m.LSN, EndLSN: m.LSN}
				handed(a.hand(rows))
			}
		}
		return nil
	case RequestPrefix:
		if m.Transactional() && !a.tx.skip {
			a.hooks.request(m)
		}
		return nil
	case HeartbeatPrefix:
		if !m.Transactional() || a.tx.skip {
			return nil
		}
		if a.onHeartbeat != nil {
			a.onHeartbeat(m)
		}
		if a.heartbeatToSinks {
			return a.emit(a.enc.Message(&a.tx.tx, m))
		}
		return nil
	}
	if m.Transactional() {
		if !a.tx.skip {
			return a.emit(a.enc.Message(&a.tx.tx, m))
		}
		return nil
	}
	if !a.tx.deliverOutside(m.LSN) {
		return nil
	}
	if err := a.emit(a.enc.Message(nil, m)); err != nil {
		return err
	}
	// Decoded in WAL order outside any transaction: everything before it has been sent.
	a.cur.pos = checkpoint.Position{CommitLSN: m.LSN, EndLSN: m.LSN}
	a.flush()
	return nil
}

// emit copies an encoded event into the current batch, closing the batch when it is full.
func (a *applier) emit(ev sinks.Event, err error) error {
	if err != nil {
		return fmt.Errorf("encode change at %s: %w", ev.LSN, err)
	}
	if !a.tx.keep(ev.Seq) {
		return nil
	}
	a.cur.add(ev)
	if len(a.cur.events) >= a.maxEvents || a.cur.bytes >= a.maxBytes {
		a.flush()
		a.tx.split()
	}
	return nil
}

// flush hands the current batch over, starts a new one and returns the batch's sequence number.
func (a *applier) flush() uint64 {
	seq := a.hand(a.cur)
	a.cur = newBatch()
	return seq
}

// hand hands b over; b belongs to the sinks from then on.
func (a *applier) hand(b *batch) uint64 {
	pos := b.pos
	seq := a.handOver(b)
	a.tx.handedOver(pos)
	return seq
}
