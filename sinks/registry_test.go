package sinks_test

import (
	"context"
	"errors"
	"testing"

	"github.com/pgstream/pgstream/sinks"
)

type nopSink struct{ ping, check error }

func (s *nopSink) Write(context.Context, *sinks.Batch) error { return nil }
func (s *nopSink) Close() error                              { return nil }

type pingSink struct{ nopSink }

func (s *pingSink) Ping(context.Context) error { return s.ping }

type checkSink struct{ nopSink }

func (s *checkSink) Check(context.Context) (string, error) { return "would create x", s.check }

type testConfig struct {
	open   func() (sinks.Sink, error)
	opened int
}

func (c *testConfig) Validate() error { return nil }
func (c *testConfig) Open(sinks.Env) (sinks.Sink, error) {
	c.opened++
	return c.open()
}

type checkingConfig struct{ testConfig }

func (c *checkingConfig) Check(context.Context) (string, error) { return "from the config", nil }

func TestRegistry(t *testing.T) {
	sinks.Register(sinks.Type{Name: "zz-test", Summary: "test", NewConfig: func() sinks.Config { return &testConfig{} }})
	sinks.Register(sinks.Type{Name: "aa-test", Summary: "test", NewConfig: func() sinks.Config { return &testConfig{} }})
	if _, ok := sinks.Lookup("zz-test"); !ok {
		t.Fatal("a registered type is not found")
	}
	if _, ok := sinks.Lookup("carrier-pigeon"); ok {
		t.Fatal("an unregistered type is found")
	}
	names := sinks.Names()
	if len(names) < 2 || names[0] != "aa-test" || names[len(names)-1] != "zz-test" {
		t.Fatalf("Names = %v, want them sorted", names)
	}
	if l := sinks.TypeList(); l != "aa-test or zz-test" {
		t.Fatalf("TypeList = %q", l)
	}
	for name, typ := range map[string]sinks.Type{
		"a duplicate":    {Name: "zz-test", NewConfig: func() sinks.Config { return &testConfig{} }},
		"no name":        {NewConfig: func() sinks.Config { return &testConfig{} }},
		"no constructor": {Name: "x-test"},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register of %s did not panic", name)
				}
			}()
			sinks.Register(typ)
		}()
	}
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	down := errors.New("down")
	c := &checkingConfig{testConfig{open: func() (sinks.Sink, error) { return &nopSink{}, nil }}}
	if note, err := sinks.Check(ctx, c, sinks.Env{}); err != nil || note != "from the config" || c.opened != 0 {
		t.Fatalf("Check of a checking config = %q, %v (opened %d times), want its own check without opening", note, err, c.opened)
	}
	cs := &testConfig{open: func() (sinks.Sink, error) { return &checkSink{nopSink{check: down}}, nil }}
	if note, err := sinks.Check(ctx, cs, sinks.Env{}); !errors.Is(err, down) || note != "would create x" {
		t.Fatalf("Check of a checking sink = %q, %v", note, err)
	}
	ps := &testConfig{open: func() (sinks.Sink, error) { return &pingSink{nopSink{ping: down}}, nil }}
	if _, err := sinks.Check(ctx, ps, sinks.Env{}); !errors.Is(err, down) {
		t.Fatalf("Check of a pinging sink = %v, want its Ping's error", err)
	}
	bad := &testConfig{open: func() (sinks.Sink, error) { return nil, down }}
	if _, err := sinks.Check(ctx, bad, sinks.Env{}); !errors.Is(err, down) {
		t.Fatalf("Check of a sink that cannot open = %v", err)
	}
}
