// Package nats is the sink that publishes pgstream change events to a NATS JetStream stream with
// nats.go and its jetstream package.
//
// Each event becomes one message on the subject rendered from Config.SubjectTemplate, with the
// event's Value as data and the headers Nats-Msg-Id (the event id "<commit_lsn>/<seq>"),
// pgstream.op, pgstream.lsn and pgstream.commit_lsn. Because the id is deterministic, JetStream's
// duplicate window (Stream.DuplicateWindow) drops a message sent again after a retry or a
// restart of pgstream: within the window a change is stored exactly once.
//
// # Subjects
//
// {prefix} is inserted as configured. {schema} and {table} are each escaped into one subject
// token: every byte of '.', '*', '>', '%', an ASCII control character, space or DEL, and of a
// Unicode whitespace or non-printable rune or invalid UTF-8, is written as '%' followed by two
// upper-case hexadecimal digits; other characters are kept. An empty name (logical decoding
// messages and transaction markers carry no table) becomes "_". So table "my.table" in schema
// "public" gives "pgstream.public.my%2Etable".
//
// # Delivery
//
// Write publishes asynchronously with at most MaxPending messages unacknowledged and returns
// nil once JetStream acknowledged every message of the batch. Messages whose publish or
// acknowledgement fails (disconnection, ack timeout, no JetStream answer) are published again,
// in order and with the same Nats-Msg-Id, after a backoff, until acknowledged or the context
// ends. When the connection drops, nats.go reconnects without limit; meanwhile publishes go to a
// reconnect buffer bounded by ReconnectBufSize, and a publish that does not fit is retried
// later, so memory stays bounded. Rejections that retrying cannot fix (payload too large, a
// 4xx JetStream error) are returned wrapping ErrPublish. A re-published message can land after
// a later message of the same batch that succeeded the first time, so order per subject holds
// except across such a retry.
//
// Ping connects and checks the stream: a missing stream is created when Stream.Create is set
// and is ErrStreamMissing otherwise; a stream whose subjects do not cover the template's subjects
// is ErrSubjectsNotCovered.
//
// Buffer lifetimes: Write copies each Value into an arena owned by the Sink, reused by the next
// Write when every publish of this one resolved and dropped when Write returned early.
//
// Credentials: the sink's errors, its log lines and those of nats.go's callbacks quote server URLs
// with their user information redacted (redact.Brokers: an entry may list several URLs separated
// by commas, a URL without a scheme is host[:port], a user name without a password is a token).
//
// Write and Ping are called from one goroutine; Close may be called from any goroutine.
package nats
