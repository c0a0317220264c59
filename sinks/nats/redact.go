package nats

import (
	"go.uber.org/zap"

	"github.com/pgstream/pgstream/internal/redact"
)

// The sink's redaction follows nats.go's server lists: an entry may list several URLs separated
// by commas, a URL without a scheme is host[:port] with optional user information, and a user
// name without a password is a token (redact.Brokers).

// redactURL returns a configured server entry with the user information of its URLs redacted:
// "nats://user:xxxxx@host", or "nats://xxxxx@host" for a token.
func redactURL(u string) string { return redact.Brokers.URL(u) }

// redactText returns s with the user information of every URL it quotes redacted.
func redactText(s string) string { return redact.Brokers.Text(s) }

// redactErr returns err with every URL's user information redacted from its message.
func redactErr(err error) error { return redact.Brokers.Err(err) }

// redactLogger returns log with every URL's user information redacted from each message and
// from its fields, whoever logs through it (the sink or one of nats.go's callbacks).
func redactLogger(log *zap.Logger) *zap.Logger { return redact.Brokers.Logger(log) }
