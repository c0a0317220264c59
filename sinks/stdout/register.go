package stdout

import "github.com/pgstream/pgstream/sinks"

func init() {
	sinks.Register(sinks.Type{Name: "stdout", Summary: "one JSON line per event on standard output",
		NewConfig: func() sinks.Config { return new(Config) }})
}

// Open builds the sink c configures (sinks.Config).
func (c *Config) Open(env sinks.Env) (sinks.Sink, error) { return New(*c, env) }
