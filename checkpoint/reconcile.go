package checkpoint

import (
	"fmt"

	"github.com/pgstream/pgstream/internal/lsn"
)

// Server is what Reconcile needs to know about the server and its replication slot.
type Server struct {
	SystemID string // IDENTIFY_SYSTEM's systemid
	Database string
	Slot     string
	// SlotExists reports whether the slot exists (after any creation at this start).
	SlotExists bool
	// SlotConfirmedFlush is the slot's confirmed_flush_lsn.
	SlotConfirmedFlush lsn.LSN
	// SlotCreated reports whether the slot was created by this start.
	SlotCreated bool
}

// Start is where replication resumes.
type Start struct {
	// From is the position to pass to START_REPLICATION.
	From lsn.LSN
	// SkipThrough: transactions whose commit LSN is at or below it are already delivered and must be
	// dropped. Zero drops nothing.
	SkipThrough lsn.LSN
	// Fresh reports that no checkpoint existed: the stream starts at the slot's confirmed position.
	Fresh bool
}

// anyFile names the checkpoint file in errors when its path is not known.
const anyFile = "the checkpoint file named by checkpoint.path"

// Reconcile decides where replication resumes from the loaded checkpoint (found reports whether one
// exists) and the state of the server. It never resumes in a way that would silently skip changes:
//
//   - no checkpoint: start at the slot's confirmed flush position (Fresh);
//   - a checkpoint of another system, database or slot: ErrMismatch;
//   - a checkpoint whose slot is missing or was created only now: ErrSlotMissing;
//   - a slot that confirmed more than the checkpoint's FlushLSN: ErrSlotAhead;
//   - otherwise start at the checkpoint's FlushLSN and drop transactions committed at or below its
//     CommitLSN.
//
// The errors name the checkpoint file generically; FileStore.Reconcile names its path.
func Reconcile(cp Checkpoint, found bool, srv Server) (Start, error) {
	return reconcile(cp, found, srv, anyFile)
}

// Reconcile is the package's Reconcile with the store's path named in the errors' advice.
func (s *FileStore) Reconcile(cp Checkpoint, found bool, srv Server) (Start, error) {
	return reconcile(cp, found, srv, s.path)
}

func reconcile(cp Checkpoint, found bool, srv Server, file string) (Start, error) {
	wayOut := "to start over from now, remove " + file + " (changes in between are lost) or run a snapshot"
	if !found {
		if !srv.SlotExists {
			return Start{}, fmt.Errorf("%w: slot %q does not exist; create it before starting replication", ErrSlotMissing, srv.Slot)
		}
		return Start{From: srv.SlotConfirmedFlush, Fresh: true}, nil
	}
	if err := cp.Validate(); err != nil {
		return Start{}, err
	}
	for _, f := range [...]struct{ name, cp, srv string }{
		{"system id", cp.SystemID, srv.SystemID},
		{"database", cp.Database, srv.Database},
		{"slot", cp.Slot, srv.Slot},
	} {
		if f.cp != f.srv {
			return Start{}, fmt.Errorf("%w: checkpoint was taken for %s %q, the server has %s %q; "+
				"point checkpoint.path at another file, or remove %s to start over",
				ErrMismatch, f.name, f.cp, f.name, f.srv, file)
		}
	}
	if !srv.SlotExists || srv.SlotCreated {
		return Start{}, fmt.Errorf("%w: slot %q was dropped after checkpoint %s; changes after %s are no longer on the server; %s",
			ErrSlotMissing, cp.Slot, cp.FlushLSN, cp.FlushLSN, wayOut)
	}
	if srv.SlotConfirmedFlush > cp.FlushLSN {
		return Start{}, fmt.Errorf("%w: slot %q confirmed %s but the checkpoint holds only %s: the slot was recreated or "+
			"advanced by another consumer, and changes in between were confirmed without pgstream delivering them; %s",
			ErrSlotAhead, cp.Slot, srv.SlotConfirmedFlush, cp.FlushLSN, wayOut)
	}
	return Start{From: cp.FlushLSN, SkipThrough: cp.CommitLSN}, nil
}
