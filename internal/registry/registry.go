// Package registry holds the registered types of one kind of plug-in (sink types, checkpoint store
// types) by name. Each plug-in package registers its type from an init function; the
// configuration looks it up by the name a config entry gives.
package registry

import (
	"slices"
	"strings"
	"sync"
)

// Registry maps names to types of one kind. The zero value is not ready: use New. Safe for
// concurrent use.
type Registry[T any] struct {
	kind string // for panics: "sinks", "checkpoint"

	mu sync.RWMutex
	m  map[string]T
}

// New returns an empty registry; kind names the registering package in panics.
func New[T any](kind string) *Registry[T] {
	return &Registry[T]{kind: kind, m: map[string]T{}}
}

// Register adds t under name. It panics when name is empty or taken: both are programming errors
// found at start-up.
func (r *Registry[T]) Register(name string, t T) {
	if name == "" {
		panic(r.kind + ": Register of a type without a name")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.m[name]; dup {
		panic(r.kind + ": Register called twice for type " + name)
	}
	r.m[name] = t
}

// Remove takes name out, for tests that register types of their own.
func (r *Registry[T]) Remove(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, name)
}

// Lookup returns the type registered under name.
func (r *Registry[T]) Lookup(name string) (T, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.m[name]
	return t, ok
}

// Names returns the registered names, sorted.
func (r *Registry[T]) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for name := range r.m {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Types returns the registered types, sorted by name.
func (r *Registry[T]) Types() []T {
	names := r.Names()
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]T, 0, len(names))
	for _, name := range names {
		if t, ok := r.m[name]; ok {
			out = append(out, t)
		}
	}
	return out
}

// List names the registered types for an error text: "file, kafka, nats or stdout".
func (r *Registry[T]) List() string {
	names := r.Names()
	switch len(names) {
	case 0:
		return "(none registered)"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
