package registry

import "testing"

func TestRegistry(t *testing.T) {
	r := New[int]("test")
	if l := r.List(); l != "(none registered)" {
		t.Fatalf("List of an empty registry = %q", l)
	}
	r.Register("zz", 2)
	if l := r.List(); l != "zz" {
		t.Fatalf("List of one = %q", l)
	}
	r.Register("aa", 1)
	r.Register("mm", 3)
	if l := r.List(); l != "aa, mm or zz" {
		t.Fatalf("List = %q", l)
	}
	if got := r.Types(); len(got) != 3 || got[0] != 1 || got[1] != 3 || got[2] != 2 {
		t.Fatalf("Types = %v, want by name", got)
	}
	if v, ok := r.Lookup("mm"); !ok || v != 3 {
		t.Fatalf("Lookup(mm) = %v, %v", v, ok)
	}
	if _, ok := r.Lookup("nope"); ok {
		t.Fatal("Lookup of an unknown name found one")
	}
	for _, name := range []string{"", "aa"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", name)
				}
			}()
			r.Register(name, 9)
		}()
	}
}
