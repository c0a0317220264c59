package file

import (
	"errors"

	"github.com/pgstream/pgstream/checkpoint"
)

func init() {
	checkpoint.Register(checkpoint.Type{Name: "file", Summary: "a JSON file replaced atomically (temporary file, fsync, rename, fsync of the directory)",
		NewConfig: func() checkpoint.Config { return new(Config) }})
}

// Config is the file store's part of the checkpoint section.
type Config struct {
	// Path is the checkpoint file. Required; its directory is created at the first Save.
	Path string `mapstructure:"path"`
}

// Validate reports a missing path.
func (c *Config) Validate() error {
	if c.Path == "" {
		return errors.New("checkpoint.path is required: the file where pgstream records what every sink has durably received")
	}
	return nil
}

// Open returns the store c configures, on the operating system's files (checkpoint.Config).
func (c *Config) Open(checkpoint.Env) (checkpoint.Store, error) { return New(c.Path, OSFS()), nil }

// Where returns the checkpoint file's path (checkpoint.Config).
func (c *Config) Where() string { return c.Path }

// The file store is a checkpoint.Store.
var _ checkpoint.Store = (*Store)(nil)
