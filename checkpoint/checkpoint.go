package checkpoint

import (
	"errors"
	"fmt"
	"time"

	"github.com/pgstream/pgstream/lsn"
)

// Errors callers branch on with errors.Is.
var (
	// ErrFatal marks a failure after which the store's durability is unknown, such as a failed fsync:
	// the kernel may have dropped the dirty pages and cleared the error, so retrying would report a
	// success that is not one. pgstream must stop; a store that returned it (the file store does)
	// refuses every later Save.
	ErrFatal = errors.New("checkpoint store failed fatally")
	// ErrCorrupt is returned by Load for a checkpoint file that cannot be decoded or fails its checksum.
	ErrCorrupt = errors.New("checkpoint file corrupt")
	// ErrInvalid is returned for a Checkpoint whose fields contradict each other.
	ErrInvalid = errors.New("invalid checkpoint")
	// ErrMismatch is returned by Reconcile for a checkpoint taken on another system, database or slot.
	ErrMismatch = errors.New("checkpoint does not match the server")
	// ErrSlotMissing is returned by Reconcile when the replication slot a checkpoint refers to is gone.
	ErrSlotMissing = errors.New("replication slot missing")
	// ErrRewound is returned by Reconcile when the server's WAL does not reach, or forked before, the
	// position the checkpoint holds: the database went back in time (restored from a backup, or
	// failed over to a standby that was behind), and the sinks hold changes it no longer has.
	ErrRewound = errors.New("database is behind the checkpoint")
	// ErrSlotAhead is returned by Reconcile when the slot confirmed more than the checkpoint holds.
	ErrSlotAhead = errors.New("replication slot ahead of checkpoint")
	// ErrAckOrder is returned by Tracker.Ack for an acknowledgement out of order or of an unknown batch.
	ErrAckOrder = errors.New("acknowledgement out of order")
	// ErrUnknownSink is returned by Tracker.Ack for a sink index out of range.
	ErrUnknownSink = errors.New("unknown sink")
)

// Position is the newest transaction that every sink holds durably, and the position to confirm to the
// server. The zero Position means "no transaction".
type Position struct {
	// CommitLSN is the commit LSN of the transaction: every transaction with a commit LSN at or below
	// it is delivered.
	CommitLSN lsn.LSN
	// EndLSN is the position to confirm to the server as flushed: the transaction's end LSN, or a
	// keepalive's WAL end when the stream is idle (see Tracker.AdvanceIdle).
	EndLSN lsn.LSN
}

// IsZero reports whether p is the zero Position.
func (p Position) IsZero() bool { return p.CommitLSN == 0 && p.EndLSN == 0 }

// Checkpoint is pgstream's durable progress for one replication slot.
type Checkpoint struct {
	// Identity of the stream: the server's system identifier (IDENTIFY_SYSTEM), its timeline, the
	// database and the replication slot.
	SystemID string
	Timeline int32
	Database string
	Slot     string
	// CommitLSN: transactions with a commit LSN at or below it are delivered and are never emitted again.
	CommitLSN lsn.LSN
	// FlushLSN is the position confirmed to the server (a Commit's end LSN, or a keepalive's WAL end
	// when idle). It is never below CommitLSN.
	FlushLSN lsn.LSN
	// UpdatedAt is when the checkpoint was taken.
	UpdatedAt time.Time
	// Snapshot lists the table snapshots not finished yet, each with the chunks every sink holds.
	// Empty when no snapshot is pending.
	Snapshot []TableSnapshot
	// Published lists the OIDs of the publication's tables that pgstream has taken into account: a
	// table found in the publication but not here was added since, and is snapshotted when
	// snapshot.new_tables is on. nil means not known (a checkpoint that predates the list); an empty
	// non-nil list is a known empty publication.
	Published []uint32
}

// Validate reports a Checkpoint that cannot describe real progress.
func (c *Checkpoint) Validate() error {
	switch {
	case c.Slot == "":
		return fmt.Errorf("%w: empty slot name", ErrInvalid)
	case c.FlushLSN < c.CommitLSN:
		return fmt.Errorf("%w: flush LSN %s below commit LSN %s", ErrInvalid, c.FlushLSN, c.CommitLSN)
	}
	for i := range c.Snapshot {
		if err := c.Snapshot[i].Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Position returns the checkpoint's progress as a Position.
func (c *Checkpoint) Position() Position {
	return Position{CommitLSN: c.CommitLSN, EndLSN: c.FlushLSN}
}
