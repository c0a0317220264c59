package nats

import (
	"reflect"
	"testing"
	"time"
)

// TestValidateDoesNotChangeTheConfig: Validate only checks, whether the config is valid or not.
func TestValidateDoesNotChangeTheConfig(t *testing.T) {
	for name, c := range map[string]Config{
		"zero":    {},
		"servers": {Servers: []string{"nats://127.0.0.1:4222"}, Stream: StreamConfig{Create: true}},
		"invalid": {Stream: StreamConfig{Storage: "tape"}, MaxPending: -1},
	} {
		before := c
		_ = c.Validate()
		if !reflect.DeepEqual(c, before) {
			t.Errorf("%s: Validate changed the config:\n got %+v\nwant %+v", name, c, before)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	var c Config
	want := Config{
		Servers:         []string{"nats://127.0.0.1:4222"},
		SubjectTemplate: "{prefix}.{schema}.{table}",
		SubjectPrefix:   "pgstream",
		Stream: StreamConfig{
			Name:            "PGSTREAM",
			Subjects:        []string{"{prefix}.>"},
			Storage:         "file",
			Replicas:        1,
			DuplicateWindow: 2 * time.Minute,
		},
		MaxPending:       4096,
		AckTimeout:       10 * time.Second,
		ReconnectBufSize: 8 << 20,
	}
	if got := c.WithDefaults(); !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if !reflect.DeepEqual(c, Config{}) {
		t.Fatalf("WithDefaults changed its receiver: %+v", c)
	}
	set := Config{
		Servers:          []string{"nats://h:1"},
		SubjectTemplate:  "t",
		SubjectPrefix:    "p",
		Stream:           StreamConfig{Name: "S", Subjects: []string{"x.>"}, Storage: "memory", Replicas: 3, DuplicateWindow: time.Hour},
		MaxPending:       1,
		AckTimeout:       time.Second,
		ReconnectBufSize: 2,
	}
	if got := set.WithDefaults(); !reflect.DeepEqual(got, set) {
		t.Fatalf("WithDefaults changed set values:\n got %+v\nwant %+v", got, set)
	}
}
