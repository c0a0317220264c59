package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/replication"
	"github.com/pgstream/pgstream/sinks/file"
	"github.com/pgstream/pgstream/sinks/kafka"
	natssink "github.com/pgstream/pgstream/sinks/nats"
	"github.com/pgstream/pgstream/sinks/stdout"
)

func load(t *testing.T, args ...string) (*Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	addConfigFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return loadConfig(fs)
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := load(t, "--config", "../../configs/pgstream.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.Slot != "pgstream" || cfg.Source.StatusInterval != 10*time.Second || len(cfg.Sinks) == 0 {
		t.Fatalf("unexpected config: %+v", cfg.Source)
	}
	if cfg.Pipeline.MaxInFlightBytes != 16<<20 || cfg.Checkpoint.where() == "" {
		t.Fatalf("pipeline/checkpoint: %+v %+v", cfg.Pipeline, cfg.Checkpoint)
	}
}

// TestLoadedConfigCarriesItsDefaults: a config that sets none of the source, pipeline and snapshot
// keys is loaded with every one of their defaults filled in, the snapshot section in both places
// it is read from.
func TestLoadedConfigCarriesItsDefaults(t *testing.T) {
	p := filepath.Join(t.TempDir(), "min.yaml")
	if err := os.WriteFile(p, []byte("source:\n  url: postgres://u@h/db\ncheckpoint:\n  path: c\nsinks:\n  - type: stdout\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := load(t, "--config", p)
	if err != nil {
		t.Fatal(err)
	}
	if want := (replication.Config{URL: "postgres://u@h/db"}).WithDefaults(); !reflect.DeepEqual(cfg.Source.Config, want) {
		t.Errorf("source:\n got %+v\nwant %+v", cfg.Source, want)
	}
	if want := (pipeline.Config{}).WithDefaults(); !reflect.DeepEqual(cfg.Pipeline, want) {
		t.Errorf("pipeline:\n got %+v\nwant %+v", cfg.Pipeline, want)
	}
	if want := (pipeline.SnapshotConfig{}).WithDefaults(); !reflect.DeepEqual(cfg.Snapshot, want) || cfg.Snapshot.Mode != pipeline.SnapshotInitial {
		t.Errorf("snapshot:\n got %+v\nwant %+v", cfg.Snapshot, want)
	}
}

func TestEnvironmentAndFlagsOverride(t *testing.T) {
	t.Setenv("PGSTREAM_SOURCE_SLOT", "from_env")
	t.Setenv("PGSTREAM_SOURCE_URL", "postgres://u@h:5432/envdb")
	cfg, err := load(t, "--config", "../../configs/pgstream.yaml", "--checkpoint.path", "/tmp/flag.ckpt")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.Slot != "from_env" || !strings.Contains(cfg.Source.URL, "envdb") {
		t.Fatalf("environment not applied: slot %q url %q", cfg.Source.Slot, cfg.Source.URL)
	}
	if cfg.Checkpoint.where() != "/tmp/flag.ckpt" {
		t.Fatalf("flag not applied: %q", cfg.Checkpoint.where())
	}
	t.Setenv("PGSTREAM_SOURCE_SLOT", "from_env")
	cfg, err = load(t, "--config", "../../configs/pgstream.yaml", "--source.slot", "from_flag")
	if err != nil || cfg.Source.Slot != "from_flag" {
		t.Fatalf("flag does not override environment: %v %v", cfg, err)
	}
}

// source.primary_url comes from the file, the environment (even when the file does not mention
// it) or a flag, and a malformed one is refused naming it.
func TestPrimaryURL(t *testing.T) {
	cfg, err := load(t, "--config", "../../configs/pgstream.yaml")
	if err != nil || cfg.Source.PrimaryURL != "" {
		t.Fatalf("example config: primary_url %q, %v", cfg.Source.PrimaryURL, err)
	}
	t.Setenv("PGSTREAM_SOURCE_PRIMARY_URL", "postgres://u@primary:5432/app")
	if cfg, err = load(t, "--config", "../../configs/pgstream.yaml"); err != nil || cfg.Source.PrimaryURL != "postgres://u@primary:5432/app" {
		t.Fatalf("from the environment: primary_url %q, %v", cfg.Source.PrimaryURL, err)
	}
	if cfg, err = load(t, "--config", "../../configs/pgstream.yaml", "--source.primary_url", "postgres://u@flag/app"); err != nil ||
		cfg.Source.PrimaryURL != "postgres://u@flag/app" {
		t.Fatalf("from a flag: primary_url %q, %v", cfg.Source.PrimaryURL, err)
	}
	t.Setenv("PGSTREAM_SOURCE_PRIMARY_URL", "postgres://u:se@cret@primary/app")
	if _, err = load(t, "--config", "../../configs/pgstream.yaml"); err == nil || !strings.Contains(err.Error(), "source.primary_url") ||
		strings.Contains(err.Error(), "cret") {
		t.Fatalf("a malformed primary_url: %v", err)
	}
}

func TestConfigWithoutFileFromEnvironment(t *testing.T) {
	t.Setenv("PGSTREAM_SOURCE_URL", "postgres://u@h:5432/db")
	t.Setenv("PGSTREAM_CHECKPOINT_PATH", "/tmp/x")
	_, err := load(t)
	if err == nil || !strings.Contains(err.Error(), "sinks") {
		t.Fatalf("want an error about missing sinks, got %v", err)
	}
}

func TestEndposFlag(t *testing.T) {
	cfg, err := load(t, "--config", "../../configs/pgstream.yaml", "--endpos", "1/2")
	if err != nil || cfg.Pipeline.EndLSN != 1<<32|2 {
		t.Fatalf("endpos: %v %v", cfg.Pipeline.EndLSN, err)
	}
	if _, err := load(t, "--config", "../../configs/pgstream.yaml", "--endpos", "nope"); err == nil {
		t.Fatal("bad endpos accepted")
	}
}

func TestSinkConfigErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ sinks, want string }{
		"typo":              {"  - type: file\n    paht: x\n", "paht"},
		"file needs a path": {"  - type: file\n", "path"},
		"bad pattern":       {"  - type: stdout\n    include: ['public.[']\n", "pattern"},
		"kafka brokers":     {"  - type: kafka\n", "brokers"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
		os.WriteFile(p, []byte("source:\n  url: postgres://u@h/db\ncheckpoint:\n  path: c\nsinks:\n"+tc.sinks), 0o600)
		_, err := load(t, "--config", p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v does not mention %q", name, err, tc.want)
		}
	}
}

func TestUsageAndVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := realMain([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "pgstream ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := realMain(nil, &out, &errb); code != 2 {
		t.Fatalf("no args: exit %d", code)
	}
	if code := realMain([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("unknown command: exit %d %q", code, errb.String())
	}
}

// durationKeys is every time.Duration key with its accepted range: lo and hi are accepted, just
// outside them is refused. also holds other keys the boundary values need (reconnect_max may not be
// below reconnect_min). off marks the keys where a negative value disables.
var durationKeys = []struct {
	key    string // as errors name it
	lo, hi string
	also   map[string]any
	off    bool
}{
	{key: "source.status_interval", lo: "100ms", hi: "1h"},
	{key: "source.connect_timeout", lo: "1s", hi: "10m"},
	{key: "pipeline.checkpoint_interval", lo: "10ms", hi: "10m"},
	{key: "pipeline.shutdown_timeout", lo: "1s", hi: "1h"},
	{key: "pipeline.reconnect_min", lo: "10ms", hi: "1m", also: map[string]any{"pipeline.reconnect_max": "1h"}},
	{key: "pipeline.reconnect_max", lo: "100ms", hi: "1h", also: map[string]any{"pipeline.reconnect_min": "10ms"}},
	{key: "pipeline.stats_interval", lo: "10ms", hi: "24h", off: true},
	{key: "snapshot.progress_interval", lo: "10ms", hi: "24h", off: true},
	{key: "snapshot.poll_interval", lo: "100ms", hi: "24h"},
	{key: "source.heartbeat_interval", lo: "1s", hi: "24h", off: true},
	{key: "wal_guard.poll_interval", lo: "1s", hi: "10m"},
	{key: "sinks[0].batch_timeout", lo: "100us", hi: "1s"},
	{key: "sinks[0].write_timeout", lo: "1s", hi: "10m"},
	{key: "sinks[0].ack_timeout", lo: "100ms", hi: "10m"},
	{key: "sinks[0].stream.duplicate_window", lo: "1s", hi: "24h"},
}

// sinkTypeOf names the sink type that owns a sinks[0] key of durationKeys.
var sinkTypeOf = map[string]string{
	"batch_timeout": "kafka", "write_timeout": "kafka", "ack_timeout": "nats", "stream.duplicate_window": "nats",
}

// writeConfigWith writes a valid configuration with the given keys set ("section.key", or
// "sinks[0].key" for the first sink, whose type follows from the key) and returns its path.
func writeConfigWith(t *testing.T, set map[string]any) string {
	t.Helper()
	doc := map[string]any{
		"source":     map[string]any{"url": "postgres://u@h/db"},
		"checkpoint": map[string]any{"path": "c"},
	}
	sink := map[string]any{"type": "stdout"}
	for k, v := range set {
		if rest, ok := strings.CutPrefix(k, "sinks[0]."); ok {
			sink["type"] = sinkTypeOf[rest]
			switch sink["type"] {
			case "kafka":
				sink["brokers"] = []string{"k:9092"}
			case "":
				t.Fatalf("no sink type for %s", k)
			}
			if sub, leaf, nested := strings.Cut(rest, "."); nested {
				sink[sub] = map[string]any{leaf: v}
			} else {
				sink[rest] = v
			}
			continue
		}
		section, key, _ := strings.Cut(k, ".")
		m, _ := doc[section].(map[string]any)
		if m == nil {
			m = map[string]any{}
			doc[section] = m
		}
		m[key] = v
	}
	doc["sinks"] = []any{sink}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "pgstream.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDurationKeysListed keeps durationKeys complete: every time.Duration field the configuration
// decodes is in it.
func TestDurationKeysListed(t *testing.T) {
	listed := map[string]bool{}
	for _, k := range durationKeys {
		listed[k.key] = true
	}
	var found []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			tag := f.Tag.Get("mapstructure")
			if tag == "" || tag == "-" {
				continue
			}
			if tag == ",squash" {
				walk(prefix, f.Type)
				continue
			}
			switch {
			case f.Type == reflect.TypeOf(time.Duration(0)):
				found = append(found, prefix+tag)
			case f.Type.Kind() == reflect.Struct:
				walk(prefix+tag+".", f.Type)
			}
		}
	}
	walk("", reflect.TypeOf(Config{}))
	walk("sinks[0].", reflect.TypeOf(kafka.Config{}))
	walk("sinks[0].", reflect.TypeOf(natssink.Config{}))
	walk("sinks[0].", reflect.TypeOf(file.Config{}))
	walk("sinks[0].", reflect.TypeOf(stdout.Config{}))
	for _, k := range found {
		if !listed[k] {
			t.Errorf("duration key %s is missing from durationKeys", k)
		}
	}
	if len(found) != len(durationKeys) {
		t.Errorf("found duration keys %v, durationKeys has %d", found, len(durationKeys))
	}
}

// TestDurationWithoutUnitRefused: a bare number is not read as nanoseconds, whatever the key and
// wherever the number comes from.
func TestDurationWithoutUnitRefused(t *testing.T) {
	for _, k := range durationKeys {
		for _, v := range []any{5, 0, -1, 1.5, "5", "0.5"} {
			t.Run(fmt.Sprintf("%s=%#v", k.key, v), func(t *testing.T) {
				_, err := load(t, "--config", writeConfigWith(t, map[string]any{k.key: v}))
				want := fmt.Sprintf("%s: %v has no unit; write e.g. %vs or 500ms", k.key, v, v)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("error %v\nwant one containing %q", err, want)
				}
			})
		}
	}
	for _, k := range durationKeys {
		if strings.HasPrefix(k.key, "sinks") {
			continue
		}
		t.Run("env "+k.key, func(t *testing.T) {
			t.Setenv("PGSTREAM_"+strings.ToUpper(strings.ReplaceAll(k.key, ".", "_")), "30")
			_, err := load(t, "--config", writeConfigWith(t, nil))
			if want := k.key + ": 30 has no unit; write e.g. 30s or 500ms"; err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v\nwant one containing %q", err, want)
			}
		})
	}
}

func TestDurationNotADuration(t *testing.T) {
	for _, v := range []any{"soon", true, "5 s", []string{"5s"}} {
		for _, key := range []string{"source.status_interval", "sinks[0].ack_timeout"} {
			_, err := load(t, "--config", writeConfigWith(t, map[string]any{key: v}))
			if err == nil || !strings.Contains(err.Error(), key+": ") || !strings.Contains(err.Error(), "is not a duration; write e.g. 5s or 500ms") {
				t.Errorf("%#v: error %v does not name %s as not a duration", v, err, key)
			}
		}
	}
}

// TestDurationRanges: each duration key accepts the ends of its range and refuses what lies
// outside, naming the key, the value and the range.
func TestDurationRanges(t *testing.T) {
	for _, k := range durationKeys {
		t.Run(k.key, func(t *testing.T) {
			with := func(v string) map[string]any {
				m := map[string]any{k.key: v}
				for ak, av := range k.also {
					m[ak] = av
				}
				return m
			}
			lo, _ := time.ParseDuration(k.lo)
			hi, _ := time.ParseDuration(k.hi)
			for _, v := range []string{k.lo, k.hi} {
				if _, err := load(t, "--config", writeConfigWith(t, with(v))); err != nil {
					t.Errorf("%s = %s refused: %v", k.key, v, err)
				}
			}
			for _, d := range []time.Duration{lo - 1, hi + time.Millisecond, time.Nanosecond * 5} {
				_, err := load(t, "--config", writeConfigWith(t, with(d.String())))
				if err == nil {
					t.Errorf("%s = %s accepted", k.key, d)
					continue
				}
				// A sink's own Validate names its keys kafka.… or nats.…, after the sink's index.
				key := k.key
				if rest, ok := strings.CutPrefix(key, "sinks[0]."); ok {
					key = sinkTypeOf[rest] + "." + rest
				}
				rng := "use " + strings.Replace(k.lo, "us", "µs", 1) + " to " + k.hi
				for _, want := range []string{key + " " + d.String() + ": " + rng, strings.Split(k.key, ".")[0]} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s = %s: error %v does not contain %q", k.key, d, err, want)
					}
				}
			}
			neg := "-1s"
			_, err := load(t, "--config", writeConfigWith(t, with(neg)))
			if k.off && err != nil {
				t.Errorf("%s = %s (off) refused: %v", k.key, neg, err)
			}
			if !k.off && err == nil {
				t.Errorf("%s = %s accepted", k.key, neg)
			}
		})
	}
}

// TestValidateErrorsNameKeyAndValue: every refusal names the key (both keys when two disagree) and
// the value written.
func TestValidateErrorsNameKeyAndValue(t *testing.T) {
	for _, tc := range []struct {
		set  map[string]any
		want []string
	}{
		{map[string]any{"pipeline.max_batch_events": -1}, []string{"pipeline.max_batch_events -1: must be positive"}},
		{map[string]any{"pipeline.max_batch_bytes": -5}, []string{"pipeline.max_batch_bytes -5: must be positive"}},
		{map[string]any{"pipeline.max_in_flight_bytes": -7}, []string{"pipeline.max_in_flight_bytes -7: must be positive"}},
		{map[string]any{"pipeline.max_write_events": -2}, []string{"pipeline.max_write_events -2: must be positive"}},
		{map[string]any{"pipeline.max_in_flight_bytes": 1000, "pipeline.max_batch_bytes": 2000},
			[]string{"pipeline.max_in_flight_bytes 1000: must be at least pipeline.max_batch_bytes 2000"}},
		{map[string]any{"pipeline.reconnect_min": "10s", "pipeline.reconnect_max": "2s"},
			[]string{"pipeline.reconnect_max 2s: must be at least pipeline.reconnect_min 10s"}},
		{map[string]any{"pipeline.reconnect_attempts": -1}, []string{"pipeline.reconnect_attempts -1: use 0 (retry forever) or more"}},
		{map[string]any{"pipeline.checkpoint_interval": "-1s", "pipeline.shutdown_timeout": "-2s"},
			[]string{"pipeline.checkpoint_interval -1s: use 10ms to 10m", "pipeline.shutdown_timeout -2s: use 1s to 1h"}},
		{map[string]any{"snapshot.poll_interval": "-1s", "snapshot.signal_table": "a.b.c"},
			[]string{"snapshot.poll_interval -1s: use 100ms to 24h", "snapshot.signal_table"}},
	} {
		_, err := load(t, "--config", writeConfigWith(t, tc.set))
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%v: error %v\nwant one containing %q", tc.set, err, want)
			}
		}
	}
}

// TestSecretFileWarnings: a file holding a password that other users can read is warned about:
// the config file, source.password_file and the password file pgconn reads (which libpq would
// ignore with such permissions).
func TestSecretFileWarnings(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("PGPASSWORD", "")
	os.Unsetenv("PGPASSWORD")
	t.Setenv("PGPASSFILE", "")
	os.Unsetenv("PGPASSFILE")
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfgYAML := func(url, extra string) string {
		return "source:\n  url: " + url + "\n" + extra + "checkpoint:\n  path: c\nsinks:\n  - type: stdout\n"
	}
	warnings := func(t *testing.T, cfgPath string) string {
		t.Helper()
		cfg, err := load(t, "--config", cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, w := range secretFileWarnings(cfg) {
			fmt.Fprintf(&b, "%s | %s | %s\n", w.Subject, w.Message, w.Fix)
		}
		return b.String()
	}
	noPW := "postgres://app@db.example:5432/shop"

	t.Run("config file with a password", func(t *testing.T) {
		for _, tc := range []struct {
			name, url, extra string
		}{
			{"url", "postgres://app:s3cret@db.example:5432/shop", ""},
			{"url parameter", noPW + "?password=s3cret", ""},
			{"key=value", "'host=db.example user=app password=s3cret dbname=shop'", ""},
			{"kafka sasl", noPW, ""},
		} {
			yml := cfgYAML(tc.url, tc.extra)
			if tc.name == "kafka sasl" {
				yml += "  - type: kafka\n    brokers: [k:9092]\n    sasl: {mechanism: PLAIN, username: u, password: s3cret}\n"
			}
			p := write("c.yaml", yml, 0o644)
			got := warnings(t, p)
			for _, want := range []string{p, "holds a password", "mode 0644", "chmod 600 " + p} {
				if !strings.Contains(got, want) {
					t.Errorf("%s: warnings %q lack %q", tc.name, got, want)
				}
			}
			if strings.Contains(got, "s3cret") {
				t.Errorf("%s: a warning shows the password: %s", tc.name, got)
			}
			os.Chmod(p, 0o600)
			if got := warnings(t, p); got != "" {
				t.Errorf("%s: mode 0600 warned: %s", tc.name, got)
			}
		}
		if got := warnings(t, write("c.yaml", cfgYAML(noPW, ""), 0o644)); got != "" {
			t.Errorf("a config without a password warned: %s", got)
		}
	})
	t.Run("password_file", func(t *testing.T) {
		pw := write("pw", "s3cret\n", 0o640)
		p := write("c.yaml", cfgYAML(noPW, "  password_file: "+pw+"\n"), 0o600)
		got := warnings(t, p)
		for _, want := range []string{"source.password_file " + pw, "mode 0640", "chmod 600 " + pw} {
			if !strings.Contains(got, want) {
				t.Errorf("warnings %q lack %q", got, want)
			}
		}
		os.Chmod(pw, 0o400)
		if got := warnings(t, p); got != "" {
			t.Errorf("mode 0400 warned: %s", got)
		}
	})
	t.Run("pgpass", func(t *testing.T) {
		home := write(".pgpass", "db.example:5432:shop:app:s3cret\n", 0o644)
		other := write("other.pgpass", "*:*:*:*:s3cret\n", 0o604)
		p := write("c.yaml", cfgYAML(noPW, ""), 0o600)
		for _, tc := range []struct {
			name, path string
			setup      func(t *testing.T) string // returns the config file
		}{
			{"~/.pgpass", home, func(t *testing.T) string { return p }},
			{"PGPASSFILE", other, func(t *testing.T) string { t.Setenv("PGPASSFILE", other); return p }},
			{"passfile=", other, func(t *testing.T) string {
				return write("c2.yaml", cfgYAML(noPW+"?passfile="+other, ""), 0o600)
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got := warnings(t, tc.setup(t))
				for _, want := range []string{tc.path, "libpq", "ignores", "chmod 600 " + tc.path} {
					if !strings.Contains(got, want) {
						t.Errorf("warnings %q lack %q", got, want)
					}
				}
			})
		}
		// Not warned: a password given elsewhere, a password file without a line for this
		// connection, a private one.
		t.Setenv("PGPASSWORD", "given")
		if got := warnings(t, p); got != "" {
			t.Errorf("PGPASSWORD set: %s", got)
		}
		os.Unsetenv("PGPASSWORD")
		pw := write("pw", "s3cret\n", 0o600)
		if got := warnings(t, write("c3.yaml", cfgYAML(noPW, "  password_file: "+pw+"\n"), 0o600)); got != "" {
			t.Errorf("source.password_file set: %s", got)
		}
		if got := warnings(t, write("c4.yaml", cfgYAML("postgres://app@elsewhere:5432/shop", ""), 0o600)); got != "" {
			t.Errorf("no line for this connection: %s", got)
		}
		os.Chmod(home, 0o600)
		if got := warnings(t, p); got != "" {
			t.Errorf("mode 0600: %s", got)
		}
	})
	t.Run("check prints them", func(t *testing.T) {
		os.Chmod(filepath.Join(dir, ".pgpass"), 0o644)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		write(".pgpass", fmt.Sprintf("127.0.0.1:%d:shop:app:s3cret\n", port), 0o644)
		p := write("c.yaml", cfgYAML(fmt.Sprintf("postgres://app@127.0.0.1:%d/shop?sslmode=disable", port), "  connect_timeout: 5s\n"), 0o600)
		var out, errb bytes.Buffer
		realMain([]string{"check", "--config", p, "--log.format", "json"}, &out, &errb)
		if !strings.Contains(out.String(), "WARN  password file "+filepath.Join(dir, ".pgpass")) || !strings.Contains(out.String(), "fix: chmod 600") {
			t.Errorf("check output lacks the warning:\n%s", out.String())
		}
		if !strings.Contains(errb.String(), `"level":"warn"`) || !strings.Contains(errb.String(), "libpq") {
			t.Errorf("check log lacks the warning:\n%s", errb.String())
		}
	})
}

// TestCheckpointStoreKey: the checkpoint section picks its store type with store (file when
// absent), and the rest of the section belongs to that type, as a sink entry's keys do.
func TestCheckpointStoreKey(t *testing.T) {
	write := func(section string) string {
		p := filepath.Join(t.TempDir(), "c.yaml")
		doc := "source:\n  url: postgres://u@h/db\ncheckpoint:\n" + section + "sinks:\n  - type: stdout\n"
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, section := range []string{"  path: ./cp.json\n", "  store: file\n  path: ./cp.json\n", "  store: FILE\n  path: ./cp.json\n"} {
		cfg, err := load(t, "--config", write(section))
		if err != nil || cfg.Checkpoint.where() != "./cp.json" {
			t.Fatalf("%q: where %q, %v", section, cfg.Checkpoint.where(), err)
		}
	}
	for section, want := range map[string]string{
		"  store: etcd\n  path: ./cp.json\n": `checkpoint.store "etcd" is unknown: use file`,
		"  pathh: ./cp.json\n":               "pathh",
		"  store: file\n":                    "checkpoint.path is required",
	} {
		if _, err := load(t, "--config", write(section)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: load = %v, want an error saying %q", section, err, want)
		}
	}
	t.Setenv("PGSTREAM_CHECKPOINT_PATH", "/tmp/env.ckpt")
	cfg, err := load(t, "--config", write("  store: file\n"))
	if err != nil || cfg.Checkpoint.where() != "/tmp/env.ckpt" {
		t.Fatalf("PGSTREAM_CHECKPOINT_PATH: where %q, %v", cfg.Checkpoint.where(), err)
	}
}
