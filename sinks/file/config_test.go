package file

import (
	"reflect"
	"testing"
)

// TestConfigValidateDoesNotChangeIt: Validate only checks, whether the config is valid or not.
func TestConfigValidateDoesNotChangeIt(t *testing.T) {
	for name, c := range map[string]Config{
		"zero":     {},
		"path":     {Path: "out.jsonl"},
		"mode":     {Path: "out.jsonl", Mode: "0640"},
		"bad mode": {Path: "out.jsonl", Mode: "416"},
	} {
		before := c
		_ = c.Validate()
		if !reflect.DeepEqual(c, before) {
			t.Errorf("%s: Validate changed the config:\n got %+v\nwant %+v", name, c, before)
		}
	}
}

func TestConfigWithDefaults(t *testing.T) {
	c := Config{Path: "out.jsonl"}
	if got, want := c.WithDefaults(), (Config{Path: "out.jsonl", Mode: "0600"}); !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if c.Mode != "" {
		t.Fatalf("WithDefaults changed its receiver: %+v", c)
	}
	if m, err := c.WithDefaults().perm(); err != nil || m != DefaultMode {
		t.Fatalf("default mode = %v, %v; want %v", m, err, DefaultMode)
	}
	set := Config{Path: "out.jsonl", Mode: "0640"}
	if got := set.WithDefaults(); !reflect.DeepEqual(got, set) {
		t.Fatalf("WithDefaults changed a set mode: %+v", got)
	}
}
