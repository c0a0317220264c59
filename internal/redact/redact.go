// Package redact hides the credentials that connection strings carry, wherever they may be
// quoted: in a configured URL, in free text (an error message, a log line), in an error kept for
// errors.Is, and in everything a zap logger writes. One Redactor describes one kind of
// connection string; Postgres and Brokers are the two pgstream uses.
//
// Redaction errs on the safe side: when the end of a secret is ambiguous, more is hidden.
package redact

import (
	"regexp"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Mask replaces a password or token.
const Mask = "xxxxx"

// Options says what a Redactor treats as a secret. The zero value hides the password of a URL's
// user information, and nothing else.
type Options struct {
	// Tokens: a user name without a password is a token and is hidden too ("nats://xxxxx@h").
	// False: it is kept ("postgres://app@h"), as a PostgreSQL role name is no secret.
	Tokens bool
	// Lists: a comma separates URLs. URL takes its input as a comma-separated list whose entries
	// may omit the scheme (host[:port] with optional user information, as NATS server lists are
	// written), and a URL quoted in text ends at a comma. False: a comma belongs to the URL (a
	// PostgreSQL multi-host URL).
	Lists bool
	// Leading: text that starts with a URL ("scheme://...") is that URL whole, whatever it holds,
	// so that a password with an unencoded space, quote or backtick is hidden entirely. False: a
	// URL at the start of text ends where any quoted URL ends.
	Leading bool
	// Params names key=value parameters whose values are secrets ("password"), matched without
	// regard to case, as a URL query parameter (?password=...) or as a key of a key=value string
	// (password = 'a b'). None: no parameter is hidden.
	Params []string
}

// A Redactor hides credentials of one kind of connection string. It is immutable and safe for
// concurrent use.
type Redactor struct {
	opts   Options
	ends   string         // the bytes that end a URL quoted in text
	params *regexp.Regexp // nil without Options.Params
}

// New returns a Redactor for o.
func New(o Options) *Redactor {
	r := &Redactor{opts: o, ends: " \t\r\n\"'`<>"}
	if o.Lists {
		r.ends += ","
	}
	if len(o.Params) > 0 {
		names := make([]string, len(o.Params))
		for i, p := range o.Params {
			names[i] = regexp.QuoteMeta(p)
		}
		r.params = regexp.MustCompile(`(?i)(\b(?:` + strings.Join(names, "|") + `)\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)`)
	}
	return r
}

var (
	// Postgres hides the secrets of PostgreSQL connection strings: a URL's password (its user name
	// is kept), the password and sslpassword parameters of a URL or a key=value string. A text
	// that starts with a URL is that URL whole.
	Postgres = New(Options{Leading: true, Params: []string{"password", "sslpassword"}})
	// Brokers hides the secrets of message-broker server lists written as URLs (NATS): a URL's
	// password, or its token (a user name alone), in a comma-separated list whose entries may
	// omit the scheme.
	Brokers = New(Options{Tokens: true, Lists: true})
)

// URL returns a configured URL (with Options.Lists, a comma-separated list of URLs) with its
// credentials hidden: "nats://user:xxxxx@host", and with Options.Tokens "nats://xxxxx@host". A
// URL's user information runs to its last '@', whatever characters it holds; an entry without
// a scheme is host[:port] with optional user information.
func (r *Redactor) URL(s string) string {
	if !r.opts.Lists {
		return r.hideParams(r.entry(s))
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = r.entry(p)
	}
	return r.hideParams(strings.Join(parts, ","))
}

// entry redacts one URL, with or without a scheme.
func (r *Redactor) entry(p string) string {
	rest, prefix := p, ""
	if j := strings.Index(p, "://"); j >= 0 {
		prefix, rest = p[:j+3], p[j+3:]
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		return prefix + r.userinfo(rest[:at]) + rest[at:]
	}
	return p
}

// Text returns s with the credentials of every URL it quotes hidden, and the values of
// Options.Params. A quoted URL runs from its "://" to the next whitespace, quote, backtick or
// angle bracket (and comma, with Options.Lists); its user information is everything up to the
// last '@' in that span, so a password holding an unencoded '@' is hidden whole. A span with an
// '@' past the host part loses the host too: redacting too much is the safe side.
func (r *Redactor) Text(s string) string {
	if strings.Contains(s, "://") && strings.Contains(s, "@") {
		s = r.quoted(s)
	}
	return r.hideParams(s)
}

func (r *Redactor) quoted(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	whole := r.opts.Leading && startsWithScheme(s)
	for {
		i := strings.Index(s, "://")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+3])
		s = s[i+3:]
		end := len(s)
		if !whole {
			if e := strings.IndexAny(s, r.ends); e >= 0 {
				end = e
			}
		}
		whole = false
		at := strings.LastIndexByte(s[:end], '@')
		if at < 0 {
			continue
		}
		b.WriteString(r.userinfo(s[:at]))
		s = s[at:] // from the '@'
	}
}

// userinfo returns "user:xxxxx" for "user:password"; for a user name alone, Mask with
// Options.Tokens and the name itself without.
func (r *Redactor) userinfo(ui string) string {
	if user, _, ok := strings.Cut(ui, ":"); ok {
		return user + ":" + Mask
	}
	if r.opts.Tokens {
		return Mask
	}
	return ui
}

// hideParams hides the values of Options.Params.
func (r *Redactor) hideParams(s string) string {
	if r.params == nil {
		return s
	}
	return r.params.ReplaceAllString(s, "${1}"+Mask)
}

// startsWithScheme reports whether s starts with a URL scheme and "://".
func startsWithScheme(s string) bool {
	i := strings.Index(s, "://")
	if i <= 0 {
		return false
	}
	for j, c := range s[:i] {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (j == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

// redactedError is an error whose message quoted a credential. It keeps the original error for
// errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Err returns err with its message redacted as Text does; errors.Is and errors.As still see
// the original. An error with nothing to hide is returned as it is; nil stays nil.
func (r *Redactor) Err(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if t := r.Text(msg); t != msg {
		return &redactedError{msg: t, err: err}
	}
	return err
}

// Logger returns log with every message redacted as Text does, and its string, error, stringer
// and byte-string fields too (those added by With included), whoever logs through it.
func (r *Redactor) Logger(log *zap.Logger) *zap.Logger {
	return log.WithOptions(zap.WrapCore(r.Core))
}

// Core returns c with every entry redacted as Logger describes.
func (r *Redactor) Core(c zapcore.Core) zapcore.Core { return core{Core: c, r: r} }

type core struct {
	zapcore.Core
	r *Redactor
}

func (c core) With(fs []zapcore.Field) zapcore.Core {
	return core{Core: c.Core.With(c.fields(fs)), r: c.r}
}

func (c core) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c core) Write(e zapcore.Entry, fs []zapcore.Field) error {
	e.Message = c.r.Text(e.Message)
	return c.Core.Write(e, c.fields(fs))
}

// fields returns fs with the text of each field redacted; fs itself is never modified.
func (c core) fields(fs []zapcore.Field) []zapcore.Field {
	out := fs
	for i, f := range fs {
		text, ok := fieldText(f)
		if !ok {
			continue
		}
		t := c.r.Text(text)
		if t == text {
			continue
		}
		if &out[0] == &fs[0] {
			out = append([]zapcore.Field(nil), fs...)
		}
		out[i] = zap.String(f.Key, t)
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
