package nats

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/pgstream/pgstream/internal/bound"
	"github.com/pgstream/pgstream/internal/tlsfiles"
)

// Defaults of zero-valued Config fields, filled in by WithDefaults.
const (
	DefaultServer           = "nats://127.0.0.1:4222"
	DefaultSubjectTemplate  = "{prefix}.{schema}.{table}"
	DefaultSubjectPrefix    = "pgstream"
	DefaultStreamName       = "PGSTREAM"
	DefaultStreamSubject    = "{prefix}.>"
	DefaultDuplicateWindow  = 2 * time.Minute
	DefaultMaxPending       = 4096
	DefaultAckTimeout       = 10 * time.Second
	DefaultReconnectBufSize = 8 << 20
)

// Ranges Validate accepts. An acknowledgement takes a network round trip and a disk write: below
// 100ms a busy server times out publishes that succeeded. The duplicate window must outlast a
// restart, and JetStream keeps every message id of the window in memory.
const (
	MinAckTimeout      = 100 * time.Millisecond
	MaxAckTimeout      = 10 * time.Minute
	MinDuplicateWindow = time.Second
	MaxDuplicateWindow = 24 * time.Hour
)

// ErrConfig is wrapped by every error Validate returns.
var ErrConfig = errors.New("invalid nats sink config")

// Config configures the NATS JetStream sink. Every field's zero value selects the documented
// default.
type Config struct {
	// Servers lists the server URLs. Default ["nats://127.0.0.1:4222"]. A URL may hold user
	// information (nats://user:password@host:4222, nats://token@host:4222); it is redacted
	// (user:xxxxx, xxxxx) from every log line and error. As in nats.go, an entry may list several
	// URLs separated by commas. A URL the Go URL parser rejects is an error that does not quote it.
	Servers []string `mapstructure:"servers"`
	// SubjectTemplate names the subject of an event from the placeholders {prefix}, {schema} and
	// {table}. Default "{prefix}.{schema}.{table}". Schema and table names are escaped into
	// single subject tokens (see the package documentation).
	SubjectTemplate string `mapstructure:"subject_template"`
	// SubjectPrefix is the value of {prefix}, inserted as is: it may hold several tokens
	// ("a.b") but no wildcard or whitespace. Default "pgstream".
	SubjectPrefix string `mapstructure:"subject_prefix"`
	// Stream is the JetStream stream that stores the subjects.
	Stream StreamConfig `mapstructure:"stream"`
	// CredsFile, NKeyFile, Token and User/Password select one way to authenticate. Default none.
	CredsFile string `mapstructure:"creds_file"`
	NKeyFile  string `mapstructure:"nkey_file"`
	Token     string `mapstructure:"token"`
	User      string `mapstructure:"user"`
	Password  string `mapstructure:"password"`
	// TLS configures an encrypted connection. Disabled by default.
	TLS TLSConfig `mapstructure:"tls"`
	// MaxPending bounds the publishes sent and not yet acknowledged. Default 4096.
	MaxPending int `mapstructure:"max_pending"`
	// AckTimeout is how long a publish waits for its acknowledgement before it is sent again.
	// Default 10s; 100ms to 10m.
	AckTimeout time.Duration `mapstructure:"ack_timeout"`
	// ReconnectBufSize bounds the bytes buffered while the connection is down; a publish that
	// does not fit fails and is retried after a backoff. Default 8 MiB.
	ReconnectBufSize int `mapstructure:"reconnect_buf_size"`
}

// StreamConfig describes the stream. Only Name matters when Create is false.
type StreamConfig struct {
	// Name of the stream. Default "PGSTREAM".
	Name string `mapstructure:"name"`
	// Create creates the stream at Ping when it does not exist. Default false: a missing stream
	// is an error.
	Create bool `mapstructure:"create"`
	// Subjects of a created stream; {prefix} is expanded. Default ["{prefix}.>"].
	Subjects []string `mapstructure:"subjects"`
	// Storage of a created stream: "file" (default) or "memory".
	Storage string `mapstructure:"storage"`
	// Replicas of a created stream. Default 1.
	Replicas int `mapstructure:"replicas"`
	// DuplicateWindow of a created stream: how long JetStream remembers message ids to drop
	// re-sends. Default 2m; 1s to 24h.
	DuplicateWindow time.Duration `mapstructure:"duplicate_window"`
}

// TLSConfig configures TLS towards the servers.
type TLSConfig = tlsfiles.Options

// WithDefaults returns a copy of c with every zero-valued field set to its documented default.
// The copy shares Servers and Stream.Subjects with c when they are set.
func (c Config) WithDefaults() Config {
	if len(c.Servers) == 0 {
		c.Servers = []string{DefaultServer}
	}
	if c.SubjectTemplate == "" {
		c.SubjectTemplate = DefaultSubjectTemplate
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.Stream.Name == "" {
		c.Stream.Name = DefaultStreamName
	}
	if len(c.Stream.Subjects) == 0 {
		c.Stream.Subjects = []string{DefaultStreamSubject}
	}
	if c.Stream.Storage == "" {
		c.Stream.Storage = "file"
	}
	if c.Stream.Replicas == 0 {
		c.Stream.Replicas = 1
	}
	if c.Stream.DuplicateWindow == 0 {
		c.Stream.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.ReconnectBufSize == 0 {
		c.ReconnectBufSize = DefaultReconnectBufSize
	}
	return c
}

// Validate reports the first problem of c, with defaults applied, as an error wrapping ErrConfig.
// A zero-valued field stands for its default. Validate does not change c.
func (c Config) Validate() error {
	d := c.WithDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	for i, s := range d.Servers {
		if strings.TrimSpace(s) == "" {
			return bad("nats.servers holds an empty URL")
		}
		// nats.go splits an entry at commas and would quote a URL it cannot parse whole, user
		// information included; the parser's own message can quote part of a password too.
		for _, u := range strings.Split(s, ",") {
			u = strings.TrimSpace(u)
			if u != "" && !strings.Contains(u, "://") {
				u = "nats://" + u
			}
			if _, err := url.Parse(u); u != "" && err != nil {
				return bad("nats.servers[%d] is not a valid URL: check the host and port, and percent-encode %s in the user name and password (for example p%%40ss for p@ss)",
					i, "'@', ':', '/', '?', '#', ',' and '%'")
			}
		}
	}
	if err := checkSubject(d.SubjectPrefix, false); err != nil {
		return bad("nats.subject_prefix: %v", err)
	}
	if err := checkSubject(renderSubject(d.SubjectTemplate, d.SubjectPrefix, "s", "t"), false); err != nil {
		return bad("nats.subject_template: %v", err)
	}
	if d.Stream.Name == "" || strings.ContainsAny(d.Stream.Name, ".*> \t\r\n/\\") {
		return bad("nats.stream.name %q must be non-empty without '.', '*', '>', '/', '\\' or whitespace", d.Stream.Name)
	}
	for _, sub := range d.Stream.Subjects {
		if err := checkSubject(expandPrefix(sub, d.SubjectPrefix), true); err != nil {
			return bad("nats.stream.subjects: %v", err)
		}
	}
	if d.Stream.Storage != "file" && d.Stream.Storage != "memory" {
		return bad("nats.stream.storage %q is not file or memory", d.Stream.Storage)
	}
	if d.Stream.Replicas < 0 {
		return bad("nats.stream.replicas must not be negative")
	}
	if err := bound.Duration("nats.stream.duplicate_window", d.Stream.DuplicateWindow, MinDuplicateWindow, MaxDuplicateWindow); err != nil {
		return bad("%v", err)
	}
	if d.MaxPending < 0 {
		return bad("nats.max_pending must not be negative")
	}
	if err := bound.Duration("nats.ack_timeout", d.AckTimeout, MinAckTimeout, MaxAckTimeout); err != nil {
		return bad("%v", err)
	}
	if d.ReconnectBufSize < 0 {
		return bad("nats.reconnect_buf_size must not be negative")
	}
	auth := 0
	for _, set := range []bool{d.CredsFile != "", d.NKeyFile != "", d.Token != "", d.User != ""} {
		if set {
			auth++
		}
	}
	if auth > 1 {
		return bad("set only one of nats.creds_file, nats.nkey_file, nats.token and nats.user")
	}
	if d.Password != "" && d.User == "" {
		return bad("nats.password needs nats.user")
	}
	if err := d.TLS.Validate("nats.tls"); err != nil {
		return bad("%s", err)
	}
	return nil
}
