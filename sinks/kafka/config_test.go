package kafka

import (
	"reflect"
	"testing"
	"time"
)

// TestValidateDoesNotChangeTheConfig: Validate only checks, whether the config is valid or not.
func TestValidateDoesNotChangeTheConfig(t *testing.T) {
	for name, c := range map[string]Config{
		"zero":    {},
		"brokers": {Brokers: []string{"127.0.0.1:9092"}},
		"invalid": {Brokers: []string{"127.0.0.1:9092"}, RequiredAcks: "two", BatchSize: -1},
	} {
		before := c
		_ = c.Validate()
		if !reflect.DeepEqual(c, before) {
			t.Errorf("%s: Validate changed the config:\n got %+v\nwant %+v", name, c, before)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	c := Config{Brokers: []string{"127.0.0.1:9092"}}
	want := Config{
		Brokers:          c.Brokers,
		TopicTemplate:    "{prefix}.{schema}.{table}",
		TopicPrefix:      "pgstream",
		RequiredAcks:     "all",
		BatchSize:        1000,
		BatchBytes:       1 << 20,
		BatchTimeout:     2 * time.Millisecond,
		Compression:      "none",
		MaxInFlightBytes: 64 << 20,
		WriteTimeout:     30 * time.Second,
	}
	if got := c.WithDefaults(); !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if !reflect.DeepEqual(c, Config{Brokers: c.Brokers}) {
		t.Fatalf("WithDefaults changed its receiver: %+v", c)
	}
	set := Config{Brokers: c.Brokers, TopicTemplate: "t", TopicPrefix: "p", RequiredAcks: "one", BatchSize: 1,
		BatchBytes: 2, BatchTimeout: time.Millisecond, Compression: "zstd", MaxInFlightBytes: 3, WriteTimeout: time.Minute}
	if got := set.WithDefaults(); !reflect.DeepEqual(got, set) {
		t.Fatalf("WithDefaults changed set values:\n got %+v\nwant %+v", got, set)
	}
}
