package nats

import "github.com/pgstream/pgstream/sinks"

func init() {
	sinks.Register(sinks.Type{Name: "nats", Summary: "a subject per table of a NATS JetStream stream, deduplicated by event id",
		NewConfig: func() sinks.Config { return new(Config) }})
}

// Open builds the sink c configures (sinks.Config).
func (c *Config) Open(env sinks.Env) (sinks.Sink, error) { return New(*c, env) }
