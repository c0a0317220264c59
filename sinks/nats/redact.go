package nats

import (
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// redactMask replaces a password or token.
const redactMask = "xxxxx"

// redactURL returns a configured server entry with the user information of its URLs redacted:
// "nats://user:xxxxx@host" for a user and password, "nats://xxxxx@host" for a token (a user
// name without a password). As in nats.go, an entry may list several URLs separated by commas,
// and a URL without a scheme is host[:port] with optional user information. A URL's user
// information runs to its last '@', whatever characters it holds.
func redactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		rest, prefix := p, ""
		if j := strings.Index(p, "://"); j >= 0 {
			prefix, rest = p[:j+3], p[j+3:]
		}
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			parts[i] = prefix + maskUserinfo(rest[:at]) + rest[at:]
		}
	}
	return strings.Join(parts, ",")
}

// maskUserinfo returns "user:xxxxx" for "user:password" and "xxxxx" for a token.
func maskUserinfo(ui string) string {
	if user, _, ok := strings.Cut(ui, ":"); ok {
		return user + ":" + redactMask
	}
	return redactMask
}

// redactText returns s with the user information of every URL it quotes redacted, as redactURL
// does. A URL runs from its "://" to the next whitespace, comma, quote, backtick or angle
// bracket (nats.go quotes URLs re-encoded, so a password holds none of these there); its user
// information is everything up to the last '@' in that span, so a password holding an unencoded
// '@' is hidden whole. A span with an '@' past the host part loses the host too: redacting too
// much is the safe side.
func redactText(s string) string {
	if !strings.Contains(s, "@") || !strings.Contains(s, "://") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for {
		i := strings.Index(s, "://")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+3])
		s = s[i+3:]
		end := strings.IndexAny(s, " \t\r\n,\"'`<>")
		if end < 0 {
			end = len(s)
		}
		at := strings.LastIndexByte(s[:end], '@')
		if at < 0 {
			continue
		}
		b.WriteString(maskUserinfo(s[:at]))
		s = s[at:] // from the '@'
	}
}

// redactedError is an error whose message quoted a URL with user information. It keeps the
// original error for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr returns err with every URL's user information redacted from its message.
func redactErr(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if r := redactText(msg); r != msg {
		return &redactedError{msg: r, err: err}
	}
	return err
}

// redactLogger returns log with every URL's user information redacted from each message and
// from its string, error and stringer fields, whoever logs through it (the sink or one of
// nats.go's callbacks).
func redactLogger(log *zap.Logger) *zap.Logger {
	return log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return redactCore{c} }))
}

type redactCore struct{ zapcore.Core }

func (c redactCore) With(fs []zapcore.Field) zapcore.Core {
	return redactCore{c.Core.With(redactFields(fs))}
}

func (c redactCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c redactCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	e.Message = redactText(e.Message)
	return c.Core.Write(e, redactFields(fs))
}

func redactFields(fs []zapcore.Field) []zapcore.Field {
	out := fs
	for i, f := range fs {
		text, ok := fieldText(f)
		if !ok {
			continue
		}
		r := redactText(text)
		if r == text {
			continue
		}
		if &out[0] == &fs[0] {
			out = append([]zapcore.Field(nil), fs...)
		}
		out[i] = zap.String(f.Key, r)
	}
	return out
}

// fieldText returns the text a field is written as, for the field types that can quote a URL.
func fieldText(f zapcore.Field) (text string, ok bool) {
	defer func() {
		if recover() != nil { // a Stringer with a nil receiver; zap reports it itself
			text, ok = "", false
		}
	}()
	switch f.Type {
	case zapcore.StringType:
		return f.String, true
	case zapcore.ErrorType:
		if err, isErr := f.Interface.(error); isErr && err != nil {
			return err.Error(), true
		}
	case zapcore.StringerType:
		if st, isSt := f.Interface.(interface{ String() string }); isSt && st != nil {
			return st.String(), true
		}
	case zapcore.ByteStringType:
		if bs, isBS := f.Interface.([]byte); isBS {
			return string(bs), true
		}
	}
	return "", false
}
