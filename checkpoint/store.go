package checkpoint

import (
	"github.com/pgstream/pgstream/internal/registry"

	"go.uber.org/zap"

	"github.com/pgstream/pgstream/lsn"
)

// Store is where the durable checkpoint lives. Implementations are safe for concurrent use.
type Store interface {
	// Load returns the saved checkpoint; found is false, with a nil error, only when none was
	// saved. A checkpoint that exists but cannot be read back is an error (ErrCorrupt for a
	// damaged one), never "not found".
	Load() (cp Checkpoint, found bool, err error)
	// Save replaces the checkpoint durably: once it returns nil, a Load after a crash returns cp.
	// When it fails, Load returns the previous checkpoint or cp, never a mix. An error wrapping
	// ErrFatal means durability is unknown: pgstream stops.
	Save(cp Checkpoint) error
	// Reconcile applies Reconcile, naming the store in its errors (ReconcileAt).
	Reconcile(cp Checkpoint, found bool, srv Server) (Start, error)
	// Handed applies Handed, naming the store in its errors (HandedAt).
	Handed(cp Checkpoint, srv Server, reach lsn.LSN) error
}

// A Type is one kind of checkpoint store: what the checkpoint section's "store" key names. Each
// store package registers its Type from an init function, as sink packages do (package sinks),
// and a blank import of the package makes it available to pgstream's configuration.
type Type struct {
	// Name is the value of the store key: lower case, unique.
	Name string
	// Summary says in a few words where the store keeps the checkpoint, for help and error texts.
	Summary string
	// NewConfig returns a new, empty Config of this type, into which the checkpoint section's own
	// keys (every key but store) are decoded by their mapstructure tags. Unknown keys are refused;
	// a key left out keeps the zero value, whose meaning each Config field documents.
	NewConfig func() Config
}

// Config is the decoded configuration of a checkpoint store.
type Config interface {
	// Validate reports what is wrong with the configuration, without I/O.
	Validate() error
	// Open returns the store. It does no I/O that changes anything: a store creates what it needs
	// at its first Save.
	Open(env Env) (Store, error)
	// Where says where the store keeps the checkpoint, for messages (a file's path); it quotes
	// no secret.
	Where() string
}

// Env is what a store is given beside its configuration.
type Env struct {
	// Log receives the store's own log lines. Nil: none.
	Log *zap.Logger
}

// Logger returns Log, or a logger that discards everything when Log is nil.
func (e Env) Logger() *zap.Logger {
	if e.Log == nil {
		return zap.NewNop()
	}
	return e.Log
}

// DefaultStore is the store type used when the checkpoint section names none.
const DefaultStore = "file"

var types = registry.New[Type]("checkpoint")

// Register makes a store type available. It panics when the type has no name or no NewConfig, or
// when its name is taken: both are programming errors found at start-up.
func Register(t Type) {
	if t.NewConfig == nil {
		panic("checkpoint: Register of type " + t.Name + " without a NewConfig")
	}
	types.Register(t.Name, t)
}

// Lookup returns the registered store type called name.
func Lookup(name string) (Type, bool) { return types.Lookup(name) }

// Names returns the registered store types' names, sorted.
func Names() []string { return types.Names() }

// TypeList names the registered store types for an error text: "file or postgres".
func TypeList() string { return types.List() }
