package checkpoint

import (
	"slices"
	"testing"
)

type nopConfig struct{}

func (nopConfig) Validate() error         { return nil }
func (nopConfig) Open(Env) (Store, error) { return nil, nil }
func (nopConfig) Where() string           { return "nowhere" }
func newNop() Config                      { return nopConfig{} }
func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	f()
}

func TestRegistry(t *testing.T) {
	before := Names()
	Register(Type{Name: "test-zz", Summary: "nothing", NewConfig: newNop})
	Register(Type{Name: "test-aa", Summary: "nothing", NewConfig: newNop})
	t.Cleanup(func() {
		types.Remove("test-zz")
		types.Remove("test-aa")
	})
	if tp, ok := Lookup("test-zz"); !ok || tp.Name != "test-zz" || tp.NewConfig().Where() != "nowhere" {
		t.Fatalf("Lookup = %+v, %v", tp, ok)
	}
	if _, ok := Lookup("missing"); ok {
		t.Fatal("Lookup of an unregistered type succeeded")
	}
	names := Names()
	if !slices.IsSorted(names) || len(names) != len(before)+2 {
		t.Fatalf("Names = %v", names)
	}
	if got := TypeList(); len(names) == 2 && got != "test-aa or test-zz" {
		t.Fatalf("TypeList = %q", got)
	}
	mustPanic(t, "a second Register", func() { Register(Type{Name: "test-zz", NewConfig: newNop}) })
	mustPanic(t, "Register without a name", func() { Register(Type{NewConfig: newNop}) })
	mustPanic(t, "Register without NewConfig", func() { Register(Type{Name: "test-x"}) })
}
