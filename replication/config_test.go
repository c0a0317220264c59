package replication

import (
	"reflect"
	"strings"
	"testing"
)

// TestValidateDoesNotChangeTheConfig: Validate only checks. A zero-valued field stands for its
// default both when it is valid and when another field is not.
func TestValidateDoesNotChangeTheConfig(t *testing.T) {
	f := false
	for name, c := range map[string]Config{
		"zero":         {},
		"url only":     {URL: "postgres://u@h/db"},
		"explicit":     {URL: "postgres://u@h/db", Slot: "s", Publication: "p", CreateSlot: &f, Tables: []string{"a", "b.c"}},
		"bad slot":     {URL: "postgres://u@h/db", Slot: "Bad-Slot"},
		"bad interval": {URL: "postgres://u@h/db", StatusInterval: -1},
		"bad table":    {URL: "postgres://u@h/db", Tables: []string{"x.y.z"}},
	} {
		before := c
		_ = c.Validate()
		if !reflect.DeepEqual(c, before) {
			t.Errorf("%s: Validate changed the config:\n got %+v\nwant %+v", name, c, before)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	c := Config{URL: "postgres://u@h/db"}
	d := c.WithDefaults()
	if d.Slot != DefaultSlot || d.Publication != DefaultPublication ||
		d.CreateSlot == nil || !*d.CreateSlot || d.CreatePublication == nil || !*d.CreatePublication ||
		d.StatusInterval != DefaultStatusInterval || d.ConnectTimeout != DefaultConnectTimeout ||
		d.URL != c.URL || d.PasswordFile != "" || d.Tables != nil {
		t.Fatalf("defaults = %+v", d)
	}
	if !reflect.DeepEqual(c, Config{URL: "postgres://u@h/db"}) {
		t.Fatalf("WithDefaults changed its receiver: %+v", c)
	}
	// Values that are set are kept, an explicit false included.
	f := false
	set := Config{URL: "postgres://u@h/db", Slot: "s", Publication: "p", CreateSlot: &f, CreatePublication: &f,
		StatusInterval: 3 * MinStatusInterval, ConnectTimeout: 2 * MinConnectTimeout}
	if got := set.WithDefaults(); !reflect.DeepEqual(got, set) {
		t.Fatalf("WithDefaults changed set values:\n got %+v\nwant %+v", got, set)
	}
	// Validate of a config without its defaults answers as of the same config with them.
	for _, c := range []Config{{URL: "postgres://u@h/db"}, {URL: "postgres://u@h/db", Slot: "Bad-Slot"}} {
		d := c.WithDefaults()
		if a, b := c.Validate(), d.Validate(); (a == nil) != (b == nil) ||
			(a != nil && !strings.Contains(b.Error(), a.Error())) {
			t.Errorf("%+v: Validate = %v, with defaults %v", c, a, b)
		}
	}
}

// TestPrimary: the primary's configuration is the source's with source.primary_url as its URL, and
// its errors name source.primary_url; without source.primary_url there is none.
func TestPrimary(t *testing.T) {
	c := Config{URL: "postgres://u@standby/db", PrimaryURL: "postgres://u@primary/db", Slot: "s", PasswordFile: "/pw"}
	p, ok := c.Primary()
	if !ok || p.URL != c.PrimaryURL || p.PrimaryURL != "" || p.Slot != "s" || p.PasswordFile != "/pw" {
		t.Fatalf("Primary() = %+v, %v", p, ok)
	}
	if _, ok := (Config{URL: c.URL}).Primary(); ok {
		t.Fatal("Primary() without source.primary_url reported one")
	}
	bad := Config{URL: "postgres://u@standby/db", PrimaryURL: "postgres://u:p@ss@primary/db"}
	err := bad.Validate()
	if err == nil || !strings.Contains(err.Error(), "source.primary_url") || strings.Contains(err.Error(), "p@ss") {
		t.Fatalf("Validate of a bad source.primary_url = %v", err)
	}
	p, _ = bad.Primary()
	if _, err := p.pgConfig(false); err == nil || !strings.Contains(err.Error(), "source.primary_url") {
		t.Fatalf("connecting to a bad source.primary_url = %v", err)
	}
}
