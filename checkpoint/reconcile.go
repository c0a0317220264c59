package checkpoint

import (
	"fmt"

	"github.com/pgstream/pgstream/lsn"
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
	// WALEnd is the server's current WAL flush position (IDENTIFY_SYSTEM's xlogpos).
	WALEnd lsn.LSN
	// Timeline is the server's current timeline (IDENTIFY_SYSTEM's timeline).
	Timeline int32
	// History is the history of the server's timeline (TIMELINE_HISTORY): for each earlier
	// timeline, where the server's WAL left it. Needed only when the checkpoint was taken on another
	// timeline than Timeline.
	History []TimelineSwitch
}

// TimelineSwitch is one line of a timeline history file: the WAL of Timeline ends at End, where the
// next timeline forked from it.
type TimelineSwitch struct {
	Timeline int32
	End      lsn.LSN
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
//   - a checkpoint past the server's WAL end, or past the point where the server's timeline history
//     forked from the checkpoint's timeline: ErrRewound;
//   - a checkpoint whose slot is missing or was created only now: ErrSlotMissing;
//   - a slot that confirmed more than the checkpoint's FlushLSN: ErrSlotAhead;
//   - otherwise start at the checkpoint's FlushLSN and drop transactions committed at or below its
//     CommitLSN.
//
// The errors name the checkpoint generically; a Store's Reconcile names it (ReconcileAt).
func Reconcile(cp Checkpoint, found bool, srv Server) (Start, error) {
	return reconcile(cp, found, srv, anyFile)
}

// ReconcileAt is Reconcile with where, the place the store keeps the checkpoint (a file's path),
// named in the errors' advice ("remove <where> ..."). A Store's Reconcile calls it.
func ReconcileAt(cp Checkpoint, found bool, srv Server, where string) (Start, error) {
	return reconcile(cp, found, srv, where)
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
	if err := rewound(cp, srv, file); err != nil {
		return Start{}, err
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

// rewound reports a server whose WAL history does not contain the checkpoint's position. Resuming
// there would skip the server's new changes up to the old position (they have other contents under
// the same positions) and confirm positions the server has not written.
func rewound(cp Checkpoint, srv Server, file string) error {
	what := ""
	switch {
	case cp.FlushLSN > srv.WALEnd:
		what = fmt.Sprintf("the checkpoint holds changes up to %s but the server's WAL ends at %s (timeline %d)", cp.FlushLSN, srv.WALEnd, srv.Timeline)
	case cp.Timeline == 0 || cp.Timeline == srv.Timeline:
		return nil
	case cp.Timeline > srv.Timeline:
		what = fmt.Sprintf("the checkpoint was taken on timeline %d but the server is on the older timeline %d", cp.Timeline, srv.Timeline)
	default:
		end, ok := forkPoint(cp.Timeline, srv)
		switch {
		case !ok:
			what = fmt.Sprintf("the checkpoint was taken on timeline %d, which is not in the history of the server's timeline %d", cp.Timeline, srv.Timeline)
		case cp.FlushLSN > end:
			what = fmt.Sprintf("the server's timeline %d forked from timeline %d at %s, before the checkpoint's position %s", srv.Timeline, cp.Timeline, end, cp.FlushLSN)
		default:
			return nil // a promotion after everything the checkpoint holds: nothing delivered is missing
		}
	}
	return rewoundErr(what, file)
}

// forkPoint returns where the server's timeline history left timeline tli: the end of its WAL on
// the server's timeline.
func forkPoint(tli int32, srv Server) (lsn.LSN, bool) {
	for _, h := range srv.History {
		if h.Timeline == tli {
			return h.End, true
		}
	}
	return 0, false
}

func rewoundErr(what, file string) error {
	return fmt.Errorf("%w: %s. The database went back in time: it was restored from a backup, or failed over to a "+
		"standby that had not received everything pgstream delivered; the sinks hold changes the database no longer has, "+
		"and resuming would skip the database's new changes up to the old position. Ways out: point source.url at the "+
		"server the checkpoint belongs to; or remove %s (after setting aside what the sinks hold past this point, if it "+
		"matters): the next run streams from the slot's position on this database and, with snapshot.mode initial, "+
		"re-reads every published table", ErrRewound, what, file)
}

// Handed checks, at a reconnect that Reconcile accepted, what was handed to the sinks beyond the
// checkpoint: the sinks may hold it durably before the checkpoint records it. reach is where the WAL
// that it came from ends, at least (the end of the newest commit record or message handed over).
// The server must have that WAL: up to its WAL end and, when the checkpoint was taken on another
// timeline than the server's, up to the point where the server's timeline forked from it.
// Otherwise the sinks hold changes the server does not have, and streaming on would skip the
// server's own changes up to reach: ErrRewound.
func Handed(cp Checkpoint, srv Server, reach lsn.LSN) error {
	return handed(cp, srv, reach, anyFile)
}

// HandedAt is Handed with where, the place the store keeps the checkpoint, named in the error's
// advice. A Store's Handed calls it.
func HandedAt(cp Checkpoint, srv Server, reach lsn.LSN, where string) error {
	return handed(cp, srv, reach, where)
}

func handed(cp Checkpoint, srv Server, reach lsn.LSN, file string) error {
	what := ""
	switch end, ok := forkPoint(cp.Timeline, srv); {
	case reach > srv.WALEnd:
		what = fmt.Sprintf("the sinks were handed changes from WAL up to %s but the server's WAL ends at %s (timeline %d)", reach, srv.WALEnd, srv.Timeline)
	case cp.Timeline == 0 || cp.Timeline == srv.Timeline:
		return nil
	case !ok:
		// Reconcile refuses a checkpoint whose timeline is not in the server's history first.
		what = fmt.Sprintf("the changes handed to the sinks were read on timeline %d, which is not in the history of the server's timeline %d", cp.Timeline, srv.Timeline)
	case reach > end:
		what = fmt.Sprintf("the server's timeline %d forked from timeline %d at %s, before the end %s of the WAL whose changes the sinks were handed",
			srv.Timeline, cp.Timeline, end, reach)
	default:
		return nil
	}
	return rewoundErr(what, file)
}
