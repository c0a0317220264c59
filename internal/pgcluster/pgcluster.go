// Package pgcluster starts throwaway PostgreSQL clusters: initdb into a new temporary directory, a
// free port of 127.0.0.1 (see testport), wal_level=logical by default. It uses the server binaries installed on the
// machine (PGSTREAM_PG_BIN, else the newest /usr/lib/postgresql/*/bin, else `pg_config --bindir`) and
// never touches any other server. `pgstream demo` runs on one; tests use it through package pgtest,
// which ties a cluster's lifetime to a test. It must not import package testing: it is linked into
// the shipped binary.
//
// When the process runs as root (initdb refuses to), the cluster runs as the "postgres" user.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/internal/testport"
)

// Superuser credentials of every cluster. Host connections use SCRAM; the socket trusts.
const (
	User     = "postgres"
	Password = "postgres"
)

// pickPort chooses the port of a new cluster; a variable so that a test can hand out a taken one.
var pickPort = testport.Free

// Options configure a cluster. The zero value gives wal_level=logical.
type Options struct {
	// WalLevel is the wal_level setting; "" means "logical".
	WalLevel string
	// Settings are extra postgresql.conf lines, e.g. {"wal_sender_timeout": "2s"}.
	Settings map[string]string
	// BinDir holds the server binaries to use; "" means BinDir().
	BinDir string
}

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	Dir     string // temporary directory holding data/, the socket and the log
	Port    int
	BinDir  string
	Version int // server major version

	cred *syscall.Credential
	mu   sync.Mutex
}

// BinDir finds the PostgreSQL server binaries.
func BinDir() (string, error) {
	if d := os.Getenv("PGSTREAM_PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no PostgreSQL server binaries found: install them (scripts/setup.sh does: apt-get install postgresql) or set PGSTREAM_PG_BIN to the directory holding initdb")
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Start creates and starts a cluster. Call Close to stop it and remove its directory.
func Start(opts Options) (*Cluster, error) {
	bin := opts.BinDir
	if bin == "" {
		var err error
		if bin, err = BinDir(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "pgstream-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, BinDir: bin}
	if err := c.init(opts); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) init(opts Options) error {
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root needs a \"postgres\" user for the test cluster: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(c.Dir, uid, gid); err != nil {
			return err
		}
	}
	pwfile := filepath.Join(c.Dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(Password+"\n"), 0o644); err != nil {
		return err
	}
	if c.cred != nil {
		_ = os.Chown(pwfile, int(c.cred.Uid), int(c.cred.Gid))
	}
	if out, err := c.run("initdb", "-D", c.DataDir(), "-U", User, "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return fmt.Errorf("initdb: %v: %s", err, out)
	}
	walLevel := opts.WalLevel
	if walLevel == "" {
		walLevel = "logical"
	}
	conf := map[string]string{
		"listen_addresses":        "'127.0.0.1'",
		"unix_socket_directories": "'" + c.Dir + "'",
		"wal_level":               walLevel,
		"max_wal_senders":         "10",
		"max_replication_slots":   "10",
		"fsync":                   "off",
		"full_page_writes":        "off",
		"shared_buffers":          "64MB",
		"max_connections":         "50",
		"logging_collector":       "off",
		"log_min_messages":        "warning",
		"password_encryption":     "'scram-sha-256'",
	}
	for k, v := range opts.Settings {
		conf[k] = v
	}
	var sb strings.Builder
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&sb, "%s = %s\n", k, conf[k])
	}
	if err := c.appendConf(sb.String()); err != nil {
		return err
	}
	if err := c.startOnFreePort(); err != nil {
		return err
	}
	return c.readVersion()
}

// startOnFreePort starts the cluster on a free port. Two clusters starting at once may pick the
// same port: the one that loses picks another.
func (c *Cluster) startOnFreePort() error {
	for attempt := 1; ; attempt++ {
		port, err := pickPort()
		if err != nil {
			return err
		}
		c.Port = port
		// The last setting of a parameter in postgresql.conf wins.
		if err := c.appendConf(fmt.Sprintf("port = %d\n", port)); err != nil {
			return err
		}
		taken, err := c.startOnce()
		if err == nil {
			break
		}
		if !taken || attempt == 10 {
			return err
		}
	}
	return nil
}

func (c *Cluster) readVersion() error {
	ver, err := c.Query("postgres", "SHOW server_version_num")
	if err != nil {
		return err
	}
	n, _ := strconv.Atoi(ver)
	c.Version = n / 10000
	return nil
}

func (c *Cluster) appendConf(lines string) error {
	f, err := os.OpenFile(filepath.Join(c.DataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(lines)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// DataDir is the cluster's data directory.
func (c *Cluster) DataDir() string { return filepath.Join(c.Dir, "data") }

// LogFile is the server's log.
func (c *Cluster) LogFile() string { return filepath.Join(c.Dir, "server.log") }

func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.BinDir, name), args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd.CombinedOutput()
}

// Start starts a stopped cluster on its port and waits until it accepts connections. Should
// something else hold the port, it tries again for up to 30 seconds.
func (c *Cluster) Start() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		taken, err := c.startOnce()
		if !taken || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startOnce runs pg_ctl start; taken reports a failure because the port was in use.
func (c *Cluster) startOnce() (taken bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cred != nil {
		// The log file must be writable by the server's user.
		if f, err := os.OpenFile(c.LogFile(), os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			f.Close()
			_ = os.Chown(c.LogFile(), int(c.cred.Uid), int(c.cred.Gid))
		}
	}
	var logStart int64
	if st, err := os.Stat(c.LogFile()); err == nil {
		logStart = st.Size()
	}
	out, err := c.run("pg_ctl", "-D", c.DataDir(), "-l", c.LogFile(), "-w", "-t", "60", "start")
	if err != nil {
		log, _ := os.ReadFile(c.LogFile())
		if int64(len(log)) >= logStart {
			log = log[logStart:] // this attempt's part
		}
		taken = bytes.Contains(log, []byte("Address already in use"))
		return taken, fmt.Errorf("pg_ctl start on port %d: %v: %s\n%s", c.Port, err, out, log)
	}
	return false, nil
}

// Stop stops the cluster with the given pg_ctl shutdown mode ("fast", "immediate", "smart").
func (c *Cluster) Stop(mode string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	out, err := c.run("pg_ctl", "-D", c.DataDir(), "-m", mode, "-w", "-t", "60", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	return nil
}

// Restart stops the cluster (mode "fast" or "immediate") and starts it again on the same port.
func (c *Cluster) Restart(mode string) error {
	if err := c.Stop(mode); err != nil {
		return err
	}
	return c.Start()
}

// Close stops the cluster, if running, and removes its directory.
func (c *Cluster) Close() {
	if c.Port != 0 {
		_ = c.Stop("immediate")
	}
	_ = os.RemoveAll(c.Dir)
}

// URL is a connection string for db as the superuser over TCP (SCRAM, sslmode=disable).
func (c *Cluster) URL(db string) string {
	return c.URLAs(User, Password, db)
}

// URLAs is a connection string for db as user with password over TCP.
func (c *Cluster) URLAs(user, password, db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", user, password, c.Port, db)
}

// Connect opens an ordinary connection to db as the superuser.
func (c *Cluster) Connect(ctx context.Context, db string) (*pgconn.PgConn, error) {
	return pgconn.Connect(ctx, c.URL(db))
}

// Exec runs one or more SQL statements in db and returns the first error.
func (c *Cluster) Exec(db, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := c.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql).ReadAll()
	return err
}

// Query runs sql in db and returns the first column of the first row as text ("" for none or NULL).
func (c *Cluster) Query(db, sql string) (string, error) {
	rows, err := c.QueryRows(db, sql)
	if err != nil || len(rows) == 0 || len(rows[0]) == 0 {
		return "", err
	}
	return rows[0][0], nil
}

// QueryRows runs sql in db and returns every row as text (NULL as "").
func (c *Cluster) QueryRows(db, sql string) ([][]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := c.Connect(ctx, db)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	res := conn.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	out := make([][]string, len(res.Rows))
	for i, r := range res.Rows {
		out[i] = make([]string, len(r))
		for j, v := range r {
			out[i][j] = string(v)
		}
	}
	return out, nil
}

// CreateDB creates a database and returns its name.
func (c *Cluster) CreateDB(name string) error {
	return c.Exec("postgres", "CREATE DATABASE "+name)
}

// Promote promotes a cluster started as a standby and waits until it accepts writes.
func (c *Cluster) Promote() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	out, err := c.run("pg_ctl", "-D", c.DataDir(), "-w", "-t", "60", "promote")
	if err != nil {
		return fmt.Errorf("pg_ctl promote: %v: %s", err, out)
	}
	return nil
}

// StandbyOptions configure a physical standby of a cluster.
type StandbyOptions struct {
	// Slot is the physical replication slot on the primary that the standby streams from
	// (primary_slot_name); it is created when missing. "" means "standby".
	Slot string
	// Settings are extra postgresql.conf lines of the standby, e.g. {"sync_replication_slots": "on"}.
	Settings map[string]string
}

// StartStandby makes a hot standby of c from a cold copy of its data directory: c is stopped
// (fast), copied and started again, and the copy starts as a standby streaming from c through a
// physical slot, with hot_standby_feedback on. Close the standby like any cluster. Settings of c
// carry over to the standby unless opts overrides them.
func (c *Cluster) StartStandby(opts StandbyOptions) (*Cluster, error) {
	slot := opts.Slot
	if slot == "" {
		slot = "standby"
	}
	if err := c.Exec("postgres", "SELECT pg_create_physical_replication_slot('"+slot+"', true) "+
		"WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = '"+slot+"')"); err != nil {
		return nil, fmt.Errorf("create physical slot %s: %w", slot, err)
	}
	dir, err := os.MkdirTemp("", "pgstream-pg-")
	if err != nil {
		return nil, err
	}
	s := &Cluster{Dir: dir, BinDir: c.BinDir, cred: c.cred}
	fail := func(err error) (*Cluster, error) {
		s.Close()
		return nil, err
	}
	if s.cred != nil {
		if err := os.Chown(dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fail(err)
		}
	}
	if err := c.Stop("fast"); err != nil {
		return fail(err)
	}
	out, cpErr := exec.Command("cp", "-a", c.DataDir(), s.DataDir()).CombinedOutput()
	if err := c.Start(); err != nil {
		return fail(err)
	}
	if cpErr != nil {
		return fail(fmt.Errorf("copy the data directory: %v: %s", cpErr, out))
	}
	sig := filepath.Join(s.DataDir(), "standby.signal")
	if err := os.WriteFile(sig, nil, 0o600); err != nil {
		return fail(err)
	}
	if s.cred != nil {
		_ = os.Chown(sig, int(s.cred.Uid), int(s.cred.Gid))
	}
	conf := map[string]string{
		"unix_socket_directories": "'" + dir + "'",
		"hot_standby":             "on",
		"hot_standby_feedback":    "on",
		"primary_slot_name":       "'" + slot + "'",
		"primary_conninfo": fmt.Sprintf("'host=127.0.0.1 port=%d user=%s password=%s dbname=postgres application_name=%s'",
			c.Port, User, Password, slot),
	}
	for k, v := range opts.Settings {
		conf[k] = v
	}
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "%s = %s\n", k, conf[k])
	}
	if err := s.appendConf(sb.String()); err != nil {
		return fail(err)
	}
	if err := s.startOnFreePort(); err != nil {
		return fail(err)
	}
	if err := s.readVersion(); err != nil {
		return fail(err)
	}
	return s, nil
}
