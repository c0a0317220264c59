package sinks

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/pgstream/pgstream/internal/registry"

	"go.uber.org/zap"
)

// A Type is one kind of sink: what a sink entry's "type" key names. Each sink package registers its
// Type from an init function, as database/sql drivers do, and a blank import of the package makes
// it available to pgstream's configuration.
type Type struct {
	// Name is the value of the entry's type key: lower case, unique.
	Name string
	// Summary says in a few words where the sink delivers, for help and error texts.
	Summary string
	// NewConfig returns a new, empty Config of this type, into which the entry's own keys (every key
	// but type, name, include and exclude) are decoded by their mapstructure tags. Unknown keys are
	// refused; a key left out keeps the zero value, whose meaning each Config field documents.
	NewConfig func() Config
}

// Config is the decoded configuration of one sink entry.
type Config interface {
	// Validate reports what is wrong with the configuration, without I/O.
	Validate() error
	// Open builds the sink. It may connect to the destination but changes nothing there; Ping (when
	// the sink has it) creates what is missing.
	Open(env Env) (Sink, error)
}

// Env is what a sink is given beside its configuration.
type Env struct {
	// Log receives the sink's own log lines. Nil: none.
	Log *zap.Logger
	// Stdout is the process's standard output, for sinks that write to it. Nil: os.Stdout.
	Stdout io.Writer
}

// Logger returns Log, or a logger that discards everything when Log is nil.
func (e Env) Logger() *zap.Logger {
	if e.Log == nil {
		return zap.NewNop()
	}
	return e.Log
}

// Output returns Stdout, or os.Stdout when it is nil.
func (e Env) Output() io.Writer {
	if e.Stdout == nil {
		return os.Stdout
	}
	return e.Stdout
}

// Checker checks a destination as Ping would, without changing anything there; the note says what
// Ping would create ("" for nothing). A sink implements it when it can check; a Config implements it
// when its check must not open the sink, because opening changes something (the file sink creates
// its file).
type Checker interface {
	Check(ctx context.Context) (note string, err error)
}

var types = registry.New[Type]("sinks")

// Register makes a sink type available. It panics when the type has no name or no NewConfig, or
// when its name is taken: both are programming errors found at start-up.
func Register(t Type) {
	if t.NewConfig == nil {
		panic("sinks: Register of type " + t.Name + " without a NewConfig")
	}
	types.Register(t.Name, t)
}

// Lookup returns the registered type called name.
func Lookup(name string) (Type, bool) { return types.Lookup(name) }

// Types returns the registered types, sorted by name.
func Types() []Type { return types.Types() }

// Names returns the registered types' names, sorted.
func Names() []string { return types.Names() }

// CheckTimeout bounds Check's conversation with a destination.
const CheckTimeout = 30 * time.Second

// Check checks the destination of cfg without changing anything there, and says what run would
// create: through the configuration when it is a Checker, otherwise by opening the sink and
// calling its Check, or its Ping when it has no Check. A sink with neither is taken as ready once
// open.
func Check(ctx context.Context, cfg Config, env Env) (note string, err error) {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	if c, ok := cfg.(Checker); ok {
		return c.Check(ctx)
	}
	s, err := cfg.Open(env)
	if err != nil {
		return "", err
	}
	defer func() { _ = s.Close() }()
	switch s := s.(type) {
	case Checker:
		return s.Check(ctx)
	case Pinger:
		return "", s.Ping(ctx)
	}
	return "", nil
}

// TypeList names the registered types for an error text: "file, kafka, nats or stdout".
func TypeList() string { return types.List() }
