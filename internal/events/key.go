package events

import (
	"fmt"

	"github.com/pgstream/pgstream/walparse"
)

// KeyOf returns the Key object of tuple t of a cached relation, exactly as the events of that
// relation carry it, or nil when the relation has no key columns. It is how a row's identity is
// compared across events (an update's old key, a snapshot row). The result aliases the Encoder's key
// buffer: valid until the next call on e.
func (e *Encoder) KeyOf(relationID uint32, t *walparse.Tuple) ([]byte, error) {
	r, ok := e.rels[relationID]
	if !ok {
		return nil, fmt.Errorf("key: %w: id %d", ErrUnknownRelation, relationID)
	}
	if len(r.key) == 0 {
		return nil, nil
	}
	if err := r.checkCount("key", t); err != nil {
		return nil, err
	}
	k, err := e.appendKey(e.key[:0], r, t, nil)
	if err != nil {
		return nil, r.colErr("key", err)
	}
	e.key = k
	return k, nil
}
