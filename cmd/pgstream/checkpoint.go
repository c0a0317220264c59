package main

import (
	"fmt"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"go.uber.org/zap"

	"github.com/pgstream/pgstream/checkpoint"
)

// checkpointSection is the checkpoint section of the configuration: which store type keeps the
// checkpoint, and that type's own keys, decoded into its checkpoint.Config as a sink entry's keys
// are into the sink's.
type checkpointSection struct {
	// Store names the store type (package checkpoint's registry). "": checkpoint.DefaultStore.
	Store string `mapstructure:"store"`
	// Keys holds every other key of the section (path, for the file store).
	Keys map[string]any `mapstructure:",remain"`
}

// config returns the section decoded into its store type's Config and validated. Unknown keys
// are refused.
func (s *checkpointSection) config() (checkpoint.Config, error) {
	name := strings.ToLower(s.Store)
	if name == "" {
		name = checkpoint.DefaultStore
	}
	t, ok := checkpoint.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("checkpoint.store %q is unknown: use %s", s.Store, checkpoint.TypeList())
	}
	cfg := t.NewConfig()
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           cfg,
		ErrorUnused:      true,
		WeaklyTypedInput: true,
		DecodeHook:       decodeHook(),
		TagName:          "mapstructure",
	})
	if err != nil {
		return nil, err
	}
	if err := dec.Decode(s.Keys); err != nil {
		return nil, explainDecode(err, "checkpoint.", fmt.Sprintf("checkpoint (store %s): ", name))
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// where says where the store keeps the checkpoint, for messages; "" for a section that does
// not decode (loadConfig refuses it).
func (s *checkpointSection) where() string {
	cfg, err := s.config()
	if err != nil {
		return ""
	}
	return cfg.Where()
}

// open opens the store the section configures.
func (s *checkpointSection) open(log *zap.Logger) (checkpoint.Store, error) {
	cfg, err := s.config()
	if err != nil {
		return nil, err
	}
	return cfg.Open(checkpoint.Env{Log: log})
}
