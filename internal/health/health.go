// Package health keeps what /readyz and /healthz answer: the readiness of pgstream's components
// (the source, each sink, the slot, heartbeats) and the liveness of its loops. A nil *Board is
// valid: every method then does nothing, so code paths need no checks.
package health

import (
	"sort"
	"sync"
	"time"
)

// Status is one component's readiness.
type Status struct {
	Name   string    `json:"name"`
	OK     bool      `json:"ok"`
	Reason string    `json:"reason,omitempty"` // why it is not ready, or a note
	Since  time.Time `json:"since"`            // when it entered this state
}

// Board collects components' readiness and loops' liveness. Safe for concurrent use.
type Board struct {
	now   func() time.Time
	mu    sync.Mutex
	comps map[string]*Status
	beats map[string]time.Time // running loop → its last beat
}

// NewBoard returns an empty board; now is the clock (time.Now when nil).
func NewBoard(now func() time.Time) *Board {
	if now == nil {
		now = time.Now
	}
	return &Board{now: now, comps: map[string]*Status{}, beats: map[string]time.Time{}}
}

// Set records a component's readiness. Since moves only when the state or the reason changes.
func (b *Board) Set(name string, ok bool, reason string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, found := b.comps[name]; found && s.OK == ok && s.Reason == reason {
		return
	}
	b.comps[name] = &Status{Name: name, OK: ok, Reason: reason, Since: b.now()}
}

// SetErr is Set with ok = err == nil and the error's text as the reason.
func (b *Board) SetErr(name string, err error) {
	if err == nil {
		b.Set(name, true, "")
		return
	}
	b.Set(name, false, err.Error())
}

// Remove forgets a component.
func (b *Board) Remove(name string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	delete(b.comps, name)
	b.mu.Unlock()
}

// Ready reports whether every component is ready (and there is at least one), with every
// component's status sorted by name.
func (b *Board) Ready() (bool, []Status) {
	if b == nil {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Status, 0, len(b.comps))
	ready := len(b.comps) > 0
	for _, s := range b.comps {
		out = append(out, *s)
		ready = ready && s.OK
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return ready, out
}

// Beat records that a loop is alive. A loop that beats must beat at least every maxAge given to
// Wedged while it runs, and call Done when it ends.
func (b *Board) Beat(loop string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.beats[loop] = b.now()
	b.mu.Unlock()
}

// Done records that a loop ended: it is no longer watched.
func (b *Board) Done(loop string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	delete(b.beats, loop)
	b.mu.Unlock()
}

// Wedged returns the running loops whose last beat is older than maxAge, sorted.
func (b *Board) Wedged(maxAge time.Duration) []string {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	var out []string
	for loop, t := range b.beats {
		if now.Sub(t) > maxAge {
			out = append(out, loop)
		}
	}
	sort.Strings(out)
	return out
}
