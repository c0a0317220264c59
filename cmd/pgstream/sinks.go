package main

// The sink types pgstream's configuration knows: each package registers its type (package sinks).
// A new sink is a package under sinks/ and a line here.
import (
	_ "github.com/pgstream/pgstream/sinks/file"
	_ "github.com/pgstream/pgstream/sinks/kafka"
	_ "github.com/pgstream/pgstream/sinks/nats"
	_ "github.com/pgstream/pgstream/sinks/stdout"
)
