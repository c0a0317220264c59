package file

import (
	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/lsn"
)

// Reconcile is checkpoint.Reconcile with the store's path named in the errors' advice.
func (s *Store) Reconcile(cp checkpoint.Checkpoint, found bool, srv checkpoint.Server) (checkpoint.Start, error) {
	return checkpoint.ReconcileAt(cp, found, srv, s.path)
}

// Handed is checkpoint.Handed with the store's path named in the error's advice.
func (s *Store) Handed(cp checkpoint.Checkpoint, srv checkpoint.Server, reach lsn.LSN) error {
	return checkpoint.HandedAt(cp, srv, reach, s.path)
}
