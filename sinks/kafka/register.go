package kafka

import "github.com/pgstream/pgstream/sinks"

func init() {
	sinks.Register(sinks.Type{Name: "kafka", Summary: "a topic per table (or one topic) of a Kafka cluster, keyed by primary key",
		NewConfig: func() sinks.Config { return new(Config) }})
}

// Open builds the sink c configures (sinks.Config).
func (c *Config) Open(env sinks.Env) (sinks.Sink, error) { return New(*c, env) }
