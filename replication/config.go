package replication

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstream/pgstream/internal/bound"
	"github.com/pgstream/pgstream/internal/pgsql"
	"github.com/pgstream/pgstream/internal/redact"
)

// Config describes the source database and the replication objects pgstream uses there.
// The zero value of every field but URL stands for a documented default, which WithDefaults fills in.
type Config struct {
	// URL is a postgres:// URL or a libpq key=value string. sslmode, sslrootcert, sslcert, sslkey,
	// target_session_attrs and the other libpq keys work as in libpq; PGHOST, PGPASSWORD, ~/.pgpass
	// and the other libpq environment variables fill what the URL leaves out. Several hosts
	// (postgres://a:5432,b:5432/db) are tried in turn, at every connection and reconnection; they
	// need target_session_attrs=read-write or primary, so that the one connected to is the primary.
	// Required.
	URL string `mapstructure:"url"`
	// PrimaryURL is the primary of the server URL names, in the same forms as URL. It is used only
	// while URL names a hot standby (logical decoding on a standby, PostgreSQL 16 and newer): what
	// pgstream writes and then reads back through the slot goes to the primary, as nothing can be
	// written on a standby. That is heartbeats, the watermarks around snapshot chunks read while
	// streaming, snapshot requests, the publication's creation, and pg_log_standby_snapshot() while
	// the slot is being created. PasswordFile and ConnectTimeout apply to it too (a standby has its
	// primary's roles and passwords). Default "": none, and those features are refused at start-up
	// when URL is a standby (docs/postgres.md).
	PrimaryURL string `mapstructure:"primary_url"`
	// PasswordFile names a file whose first line is the password. It overrides the URL, PGPASSWORD
	// and ~/.pgpass, on source.primary_url too. Default "": not used.
	PasswordFile string `mapstructure:"password_file"`
	// Slot is the logical replication slot (pgoutput). Slot names are 1 to 63 characters of a-z, 0-9
	// and _. Default "pgstream".
	Slot string `mapstructure:"slot"`
	// Publication is the publication named in START_REPLICATION. Default "pgstream".
	Publication string `mapstructure:"publication"`
	// Tables lists the tables a created publication covers, as "schema.table" or "table" (schema
	// public). Names are taken as they are stored in the catalog (no case folding, no quotes). Empty
	// (the default): a created publication is FOR ALL TABLES and an existing one is used as it is.
	// When tables are listed, an existing publication missing some of them gets them added (or, with
	// CreatePublication false, an error names the ALTER PUBLICATION statement to run).
	Tables []string `mapstructure:"tables"`
	// CreateSlot allows creating the slot when it is missing. Default (nil) true.
	CreateSlot *bool `mapstructure:"create_slot"`
	// CreatePublication allows creating or extending the publication. Default (nil) true.
	CreatePublication *bool `mapstructure:"create_publication"`
	// StatusInterval is the time between standby status updates. Default 10s.
	StatusInterval time.Duration `mapstructure:"status_interval"`
	// ConnectTimeout bounds each connection attempt (TCP, TLS and authentication). Default 10s.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// Failover makes the slot a failover slot (PostgreSQL 17 or newer): it is created with FAILOVER,
	// and an existing slot without it gets it (ALTER_REPLICATION_SLOT … (FAILOVER true)), so that
	// standbys with sync_replication_slots keep a copy of it to stream from after a promotion. An
	// older server is refused at start-up. List the standbys in URL too (postgres://a:5432,b:5432/db
	// with target_session_attrs=read-write) so that pgstream reconnects to the promoted one.
	// Default false.
	Failover bool `mapstructure:"failover"`

	// wrapConn, when set, wraps every dialed network connection (below TLS). Tests use it to
	// split reads and inject timeouts at chosen points.
	wrapConn func(net.Conn) net.Conn
	// urlKey names URL in errors: "" for source.url, or source.primary_url in a Config that
	// Primary returned.
	urlKey string
}

// Primary returns the configuration of connections to the primary: c with PrimaryURL as its URL,
// and false when PrimaryURL is empty. Its errors name source.primary_url.
func (c Config) Primary() (Config, bool) {
	if strings.TrimSpace(c.PrimaryURL) == "" {
		return Config{}, false
	}
	c.URL, c.PrimaryURL, c.urlKey = c.PrimaryURL, "", "source.primary_url"
	return c, true
}

// key is the configuration key of c.URL, for errors.
func (c *Config) key() string {
	if c.urlKey != "" {
		return c.urlKey
	}
	return "source.url"
}

// Defaults filled in by WithDefaults.
const (
	DefaultSlot           = "pgstream"
	DefaultPublication    = "pgstream"
	DefaultStatusInterval = 10 * time.Second
	DefaultConnectTimeout = 10 * time.Second
)

// Ranges Validate accepts. A status update more often than every 100ms only loads the server; less
// often than hourly leaves the slot's position stale (pgstream shortens it to wal_sender_timeout/3
// anyway). A connection attempt needs more than a second over a slow link, and one that takes
// more than ten minutes will not succeed.
const (
	MinStatusInterval = 100 * time.Millisecond
	MaxStatusInterval = time.Hour
	MinConnectTimeout = time.Second
	MaxConnectTimeout = 10 * time.Minute
)

// ErrConfig is matched (errors.Is) by every error Validate returns.
var ErrConfig = errors.New("invalid source configuration")

var slotNameRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// WithDefaults returns a copy of c with every zero-valued field but URL set to its documented
// default. The copy shares Tables with c.
func (c Config) WithDefaults() Config {
	if c.Slot == "" {
		c.Slot = DefaultSlot
	}
	if c.Publication == "" {
		c.Publication = DefaultPublication
	}
	if c.CreateSlot == nil {
		t := true
		c.CreateSlot = &t
	}
	if c.CreatePublication == nil {
		t := true
		c.CreatePublication = &t
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = DefaultStatusInterval
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	return c
}

// Validate reports the first problem of c, naming the offending key, as an error wrapping
// ErrConfig. A zero-valued field stands for its default. Validate does not change c.
func (c Config) Validate() error {
	if err := c.validateURL(); err != nil {
		return err
	}
	if p, ok := c.Primary(); ok {
		if err := p.validateURL(); err != nil {
			return err
		}
	}
	c = c.WithDefaults()
	if !slotNameRE.MatchString(c.Slot) {
		return fmt.Errorf("%w: source.slot %q: a slot name is 1 to 63 characters of a-z, 0-9 and _", ErrConfig, c.Slot)
	}
	if len(c.Publication) > 63 || strings.ContainsRune(c.Publication, 0) {
		return fmt.Errorf("%w: source.publication %q: at most 63 bytes, no NUL", ErrConfig, c.Publication)
	}
	for i, t := range c.Tables {
		if _, _, err := SplitTable(t); err != nil {
			return fmt.Errorf("%w: source.tables[%d]: %v", ErrConfig, i, err)
		}
	}
	if err := bound.Duration("source.status_interval", c.StatusInterval, MinStatusInterval, MaxStatusInterval); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := bound.Duration("source.connect_timeout", c.ConnectTimeout, MinConnectTimeout, MaxConnectTimeout); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if c.PasswordFile != "" {
		if _, err := readPasswordFile(c.PasswordFile); err != nil {
			return fmt.Errorf("%w: source.password_file: %v", ErrConfig, err)
		}
	}
	return nil
}

// validateURL checks c.URL, named by its key.
func (c Config) validateURL() error {
	if strings.TrimSpace(c.URL) == "" {
		return fmt.Errorf("%w: %s is required (for example postgres://user@host:5432/db?sslmode=verify-full)", ErrConfig, c.key())
	}
	pc, err := parseURL(c.key(), c.URL)
	if err != nil {
		return err
	}
	if hosts := hostGroups(pc); len(hosts) > 1 && !targetsPrimary(pc) {
		return fmt.Errorf("%w: %s names %d hosts (%s) without target_session_attrs=read-write or primary: "+
			"pgstream could connect to a standby; add target_session_attrs=read-write to the URL", ErrConfig, c.key(), len(hosts), strings.Join(hostAddrs(hosts), ", "))
	}
	return nil
}

// SplitTable splits a configured table name, "schema.table" or "table" (schema public).
func SplitTable(s string) (schema, table string, err error) {
	if strings.ContainsRune(s, 0) {
		return "", "", fmt.Errorf("table %q contains NUL", s)
	}
	schema, table, ok := strings.Cut(s, ".")
	if !ok {
		schema, table = "public", s
	}
	if schema == "" || table == "" || strings.Contains(table, ".") {
		return "", "", fmt.Errorf("table %q: want schema.table or table", s)
	}
	return schema, table, nil
}

func readPasswordFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s: first line is empty", path)
	}
	return line, nil
}

// pgConfig builds the pgconn configuration. replication selects replication=database mode.
// sqlReadBuffer is the read buffer of ordinary connections.
const sqlReadBuffer = 256 << 10

func (c *Config) pgConfig(replication bool) (*pgconn.Config, error) {
	pc, err := parseURL(c.key(), c.URL)
	if err != nil {
		return nil, err
	}
	if c.PasswordFile != "" {
		pw, err := readPasswordFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%w: source.password_file: %v", ErrConfig, err)
		}
		pc.Password = pw // fallback hosts share it
	}
	if pc.RuntimeParams == nil {
		pc.RuntimeParams = map[string]string{}
	}
	// The settings pgoutput formats values with.
	maps.Copy(pc.RuntimeParams, pgsql.SessionParams())
	if pc.RuntimeParams["application_name"] == "" {
		pc.RuntimeParams["application_name"] = "pgstream"
	}
	delete(pc.RuntimeParams, "replication")
	if replication {
		pc.RuntimeParams["replication"] = "database"
	}
	timeout := c.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	pc.ConnectTimeout = timeout
	d := &net.Dialer{
		Timeout: timeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     30 * time.Second,
			Interval: 10 * time.Second,
			Count:    3,
		},
	}
	pc.DialFunc = d.DialContext
	if wrap := c.wrapConn; wrap != nil {
		pc.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return wrap(conn), nil
		}
	}
	if !replication {
		// Snapshot reads stream COPY data as fast as the server sends it; pgproto3 reads at most
		// 8 KiB per system call on its own, a larger buffer in front of it takes what the socket holds.
		pc.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
			return pgproto3.NewFrontend(bufio.NewReaderSize(r, sqlReadBuffer), w)
		}
	}
	return pc, nil
}

// encodeHint is the fix for a URL whose user information holds a character that ends it.
const encodeHint = "percent-encode @ in the password as %40 (postgres://user:p%40ss@host/db), and / ? # as %2F %3F %23"

// parseURL parses a source.url or source.primary_url, named key in its errors. Its errors wrap
// ErrConfig and quote neither the URL nor a part of it: a URL that cannot be parsed is ambiguous, so no redaction can be sure to catch its
// password.
//
// A URL whose password holds an unencoded '@' parses, but as the wrong host: pgconn ends the
// user information at the first '@' (postgres://u:p@ss@host is password "p" on host "ss@host"),
// and the connection error would then print the rest of the password as a host name. A host
// holding '@' is refused here for that reason.
func parseURL(key, s string) (*pgconn.Config, error) {
	pc, err := pgconn.ParseConfig(s)
	if err != nil {
		isURL := strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
		var pce *pgconn.ParseConfigError
		if !isURL || !errors.As(err, &pce) {
			return nil, fmt.Errorf("%w: %s: %s", ErrConfig, key, RedactURL(err.Error()))
		}
		hint := ""
		if strings.Contains(s, "@") {
			hint = "; if the password holds @, /, ? or #, " + encodeHint
		}
		return nil, fmt.Errorf("%w: %s cannot be parsed as a URL (%s)%s", ErrConfig, key, parseConfigReason(pce), hint)
	}
	hosts := []string{pc.Host}
	for _, fb := range pc.Fallbacks {
		hosts = append(hosts, fb.Host)
	}
	for _, h := range hosts {
		if strings.Contains(h, "@") {
			return nil, fmt.Errorf("%w: %s: a host name holds '@', so the password most likely holds an unencoded '@': %s", ErrConfig, key, encodeHint)
		}
	}
	return pc, nil
}

// parseConfigReason returns what pgconn found wrong with a connection string, without the
// string it quotes and without its underlying error, which can quote a character of it.
func parseConfigReason(e *pgconn.ParseConfigError) string {
	full := e.Error()
	if inner := e.Unwrap(); inner != nil {
		full = strings.TrimSuffix(full, " ("+inner.Error()+")")
	}
	if i := strings.LastIndex(full, "`: "); i >= 0 {
		return full[i+len("`: "):]
	}
	return "malformed"
}

// connectErr turns a pgconn connection failure into an *Error naming the address (every host of
// a multi-host URL) and the fix.
func connectErr(pc *pgconn.Config, err error) error {
	return classifyConnect(strings.Join(hostAddrs(hostGroups(pc)), ", "), pc.User, pc.Database, err)
}

// displayHost is a host name as messages show it: anything up to a last '@' is left out, as it
// can only be part of a password (parseURL refuses such hosts; this is a second guard).
func displayHost(h string) string {
	if i := strings.LastIndexByte(h, '@'); i >= 0 {
		return h[i+1:]
	}
	return h
}

// RedactURL returns s with every password replaced by "xxxxx": the password of each URL's user
// information, a password or sslpassword query parameter, and a password=... or sslpassword=...
// key of a key=value string. It works on any text: a URL, a key=value string, an error message
// quoting either. The rules are redact.Postgres's.
func RedactURL(s string) string { return redact.Postgres.Text(s) }
