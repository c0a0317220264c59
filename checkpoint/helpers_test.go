package checkpoint

import (
	"time"

	"github.com/pgstream/pgstream/lsn"
)

func sampleCheckpoint() Checkpoint {
	return Checkpoint{
		SystemID:  "7301234567890123456",
		Timeline:  1,
		Database:  "app",
		Slot:      "pgstream",
		CommitLSN: 0x1_016B3748,
		FlushLSN:  0x1_016B3778,
		UpdatedAt: time.Date(2026, 11, 23, 21, 0, 0, 123456789, time.UTC),
	}
}

// at names the checkpoint in errors as a store does (ReconcileAt, HandedAt).
type at string

func (w at) Reconcile(cp Checkpoint, found bool, srv Server) (Start, error) {
	return ReconcileAt(cp, found, srv, string(w))
}

func (w at) Handed(cp Checkpoint, srv Server, reach lsn.LSN) error {
	return HandedAt(cp, srv, reach, string(w))
}
