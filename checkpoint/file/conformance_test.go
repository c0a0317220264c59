package file

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/pgstream/pgstream/checkpoint"
	"github.com/pgstream/pgstream/checkpoint/storetest"
)

// renameFS fails every Rename while fail says so: the new checkpoint is written and synced, but
// never takes the old one's place.
type renameFS struct {
	FS
	fail func() bool
}

func (f renameFS) Rename(oldpath, newpath string) error {
	if f.fail() {
		return errors.New("injected rename failure")
	}
	return f.FS.Rename(oldpath, newpath)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Place: func(t *testing.T) (string, string) {
			p := filepath.Join(t.TempDir(), "state", "checkpoint.json")
			return p, p
		},
		Open: func(t *testing.T, place string) checkpoint.Store {
			cfg := &Config{Path: place}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			s, err := cfg.Open(checkpoint.Env{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		OpenFaulty: func(t *testing.T, place string, fail func() bool) checkpoint.Store {
			return New(place, renameFS{FS: OSFS(), fail: fail})
		},
	})
}

// The file store registers itself as "file", the default store type.
func TestRegistered(t *testing.T) {
	typ, ok := checkpoint.Lookup(checkpoint.DefaultStore)
	if !ok || typ.Name != "file" {
		t.Fatalf("Lookup(%q) = %+v, %v", checkpoint.DefaultStore, typ, ok)
	}
	cfg := typ.NewConfig()
	if err := cfg.Validate(); err == nil || err.Error() != "checkpoint.path is required: the file where pgstream records what every sink has durably received" {
		t.Fatalf("Validate without a path = %v", err)
	}
	cfg.(*Config).Path = "/var/lib/pgstream/cp.json"
	if err := cfg.Validate(); err != nil || cfg.Where() != "/var/lib/pgstream/cp.json" {
		t.Fatalf("Validate = %v, Where = %q", err, cfg.Where())
	}
}
