package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/replication"
	"github.com/pgstream/pgstream/sinks"
)

// Config is the whole configuration file. See configs/pgstream.yaml for every key.
type Config struct {
	Source     sourceConfig            `mapstructure:"source"`
	Checkpoint checkpointSection       `mapstructure:"checkpoint"`
	Sinks      []map[string]any        `mapstructure:"sinks"`
	Pipeline   pipeline.Config         `mapstructure:"pipeline"`
	Snapshot   pipeline.SnapshotConfig `mapstructure:"snapshot"`
	WALGuard   pipeline.WALGuardConfig `mapstructure:"wal_guard"`
	HTTP       struct {
		// Listen is the address of the operations endpoint (/metrics, /healthz, /readyz, /status),
		// e.g. 127.0.0.1:9187. "" (the default) disables it.
		Listen string `mapstructure:"listen"`
	} `mapstructure:"http"`
	Log struct {
		Level  string `mapstructure:"level"`  // debug, info (default), warn, error
		Format string `mapstructure:"format"` // auto (default: console on a terminal, else json), console, json
	} `mapstructure:"log"`

	file string // the config file read, "" for none
}

// sourceConfig is the source section: the replication connection's keys and the heartbeat's.
type sourceConfig struct {
	replication.Config       `mapstructure:",squash"`
	pipeline.HeartbeatConfig `mapstructure:",squash"`
}

// envKeys are the scalar keys that PGSTREAM_* environment variables may set even when the config
// file does not mention them (PGSTREAM_SOURCE_URL sets source.url).
var envKeys = []string{
	"source.url", "source.primary_url", "source.password_file", "source.slot", "source.publication", "source.create_slot",
	"source.create_publication", "source.status_interval", "source.connect_timeout", "source.failover",
	"source.heartbeat_interval", "source.heartbeat_query", "source.heartbeat_to_sinks",
	"wal_guard.poll_interval", "wal_guard.min_safe_wal_size",
	"checkpoint.store", "checkpoint.path", "log.level", "log.format", "http.listen",
	"pipeline.max_batch_events", "pipeline.max_batch_bytes", "pipeline.max_in_flight_bytes",
	"pipeline.max_write_events", "pipeline.checkpoint_interval", "pipeline.shutdown_timeout",
	"pipeline.reconnect_min", "pipeline.reconnect_max", "pipeline.reconnect_attempts", "pipeline.stats_interval",
	"pipeline.transaction_markers",
	"snapshot.mode", "snapshot.workers", "snapshot.chunk_pages", "snapshot.progress_interval",
	"snapshot.new_tables", "snapshot.poll_interval", "snapshot.signal_table",
	"snapshot.max_rows_per_second",
}

// addConfigFlags registers the flags shared by run and check. Flags override the file and the
// environment.
func addConfigFlags(fs *pflag.FlagSet) {
	fs.StringP("config", "c", "", "configuration file (YAML)")
	fs.String("source.url", "", "PostgreSQL connection URL (overrides source.url)")
	fs.String("source.primary_url", "", "connection URL of the primary when source.url is a standby (overrides source.primary_url)")
	fs.String("source.slot", "", "replication slot name (overrides source.slot)")
	fs.String("source.publication", "", "publication name (overrides source.publication)")
	fs.String("checkpoint.path", "", "checkpoint file (overrides checkpoint.path)")
	fs.String("log.level", "", "log level: debug, info, warn, error")
	fs.String("log.format", "", "log format: auto, console, json")
	fs.String("http.listen", "", "address of the operations endpoint (/metrics, /healthz, /readyz, /status), e.g. 127.0.0.1:9187")
	fs.String("endpos", "", "stop cleanly once everything up to this LSN (X/Y) is delivered")
	fs.String("snapshot.mode", "", "initial (snapshot when there is no checkpoint, then stream), never, initial_only")
	fs.Int("snapshot.workers", 0, "connections reading snapshot chunks at once")
}

// loadConfig reads the file named by --config (if any), then PGSTREAM_* variables, then flags.
// Unknown keys are errors, so that a typo never silently falls back to a default.
func loadConfig(fs *pflag.FlagSet) (*Config, error) {
	v := viper.New()
	v.SetEnvPrefix("PGSTREAM")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for _, k := range envKeys {
		_ = v.BindEnv(k)
	}
	path, _ := fs.GetString("config")
	if path == "" {
		path = os.Getenv("PGSTREAM_CONFIG")
	}
	if path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("read config %s: %w", path, err)
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed && strings.Contains(f.Name, ".") { // section.key flags only; the rest are the command's own
			v.Set(f.Name, f.Value.String())
		}
	})
	var cfg Config
	if err := v.UnmarshalExact(&cfg, viper.DecodeHook(decodeHook())); err != nil {
		return nil, fmt.Errorf("config %s: %w", displayPath(path), explainDecode(err, "", ""))
	}
	cfg.file = path
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", displayPath(path), err)
	}
	if s, _ := fs.GetString("endpos"); s != "" {
		end, err := lsn.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("--endpos: %w", err)
		}
		cfg.Pipeline.EndLSN = end
	}
	return &cfg, nil
}

func displayPath(p string) string {
	if p == "" {
		return "(environment and flags)"
	}
	return p
}

func decodeHook() mapstructure.DecodeHookFunc {
	return mapstructure.ComposeDecodeHookFunc(
		durationHook,
		mapstructure.StringToSliceHookFunc(","),
	)
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	bareNumberRE = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$`)
)

// durationError is a value a time.Duration key cannot take. It does not know the key: explainDecode
// adds it from the mapstructure error around it.
type durationError struct {
	value  string // as written
	bare   bool   // a number without a unit
	sample string // the value with a unit, for the advice
}

func (e *durationError) Error() string {
	if e.bare {
		return fmt.Sprintf("%s has no unit; write e.g. %s or 500ms", e.value, e.sample)
	}
	return fmt.Sprintf("%s is not a duration; write e.g. 5s or 500ms (units ns, us, ms, s, m, h)", e.value)
}

// durationHook decodes every time.Duration key, in the top-level sections and in sink entries alike.
// Only a string with a unit is a duration ("10s", "1m30s"). A bare number, from YAML or a string of
// digits from the environment or a flag, is refused: time.Duration would read "status_interval: 5"
// as five nanoseconds.
func durationHook(from, to reflect.Value) (any, error) {
	if to.Type() != durationType || from.Type() == durationType {
		return from.Interface(), nil
	}
	switch from.Kind() {
	case reflect.String:
		s := strings.TrimSpace(from.String())
		if bareNumberRE.MatchString(s) {
			return nil, bareDuration(s)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, &durationError{value: strconv.Quote(from.String())}
		}
		return d, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return nil, bareDuration(fmt.Sprint(from.Interface()))
	}
	return nil, &durationError{value: fmt.Sprintf("%v", from.Interface())}
}

func bareDuration(s string) *durationError {
	sample := s + "s"
	if _, err := time.ParseDuration(sample); err != nil {
		sample = "5s"
	}
	return &durationError{value: s, bare: true, sample: sample}
}

// explainDecode rewrites each duration error in err, a tree of mapstructure errors, as "key: what
// is wrong", the key prefixed with keyPrefix. Other errors keep their text after otherPrefix.
func explainDecode(err error, keyPrefix, otherPrefix string) error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var de *mapstructure.DecodeError
		var dur *durationError
		if errors.As(e, &de) && errors.As(e, &dur) {
			out = append(out, fmt.Errorf("%s%s: %w", keyPrefix, de.Name(), dur))
			return
		}
		if otherPrefix != "" {
			e = fmt.Errorf("%s%w", otherPrefix, e)
		}
		out = append(out, e)
	}
	walk(err)
	return errors.Join(out...)
}

// validate fills in the defaults of the source, pipeline and snapshot sections, so that the loaded
// config reads as it will be used, and reports every problem of the whole config.
func (c *Config) validate() error {
	c.Source.Config = c.Source.Config.WithDefaults()
	c.Pipeline.Snapshot, c.Pipeline.WALGuard, c.Pipeline.Heartbeat = c.Snapshot, c.WALGuard, c.Source.HeartbeatConfig
	c.Pipeline = c.Pipeline.WithDefaults()
	c.Snapshot, c.WALGuard, c.Source.HeartbeatConfig = c.Pipeline.Snapshot, c.Pipeline.WALGuard, c.Pipeline.Heartbeat
	var errs []error
	if err := c.Source.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Pipeline.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.Checkpoint.config(); err != nil {
		errs = append(errs, err)
	}
	if len(c.Sinks) == 0 {
		errs = append(errs, errors.New("sinks: at least one sink is required, e.g. sinks: [{type: file, path: ./changes.jsonl}]"))
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			errs = append(errs, fmt.Errorf("http.listen %q: want host:port, e.g. 127.0.0.1:9187 (an empty host listens on every interface)", c.HTTP.Listen))
		}
	}
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q: use debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "", "auto", "console", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: use auto, console or json", c.Log.Format))
	}
	for i := range c.Sinks {
		h, err := parseSinkHeader(i, c.Sinks[i])
		if err == nil {
			_, err = sinkConfig(h, i)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sinkHeader holds the keys every sink entry has; the rest belongs to the sink type's own Config.
type sinkHeader struct {
	Type    string
	Name    string
	Include []string
	Exclude []string
	Rest    map[string]any
}

func parseSinkHeader(i int, raw map[string]any) (sinkHeader, error) {
	h := sinkHeader{Rest: map[string]any{}}
	for k, v := range raw {
		switch strings.ToLower(k) {
		case "type":
			s, ok := v.(string)
			if !ok {
				return h, fmt.Errorf("sinks[%d].type must be a string", i)
			}
			h.Type = strings.ToLower(s)
		case "name":
			h.Name = fmt.Sprint(v)
		case "include", "exclude":
			list, err := stringList(v)
			if err != nil {
				return h, fmt.Errorf("sinks[%d].%s: %w", i, k, err)
			}
			if strings.ToLower(k) == "include" {
				h.Include = list
			} else {
				h.Exclude = list
			}
		default:
			h.Rest[k] = v
		}
	}
	if h.Type == "" {
		return h, fmt.Errorf("sinks[%d].type is missing: use %s", i, sinks.TypeList())
	}
	if _, ok := sinks.Lookup(h.Type); !ok {
		return h, fmt.Errorf("sinks[%d].type %q is unknown: use %s", i, h.Type, sinks.TypeList())
	}
	if h.Name == "" {
		h.Name = fmt.Sprintf("%s#%d", h.Type, i)
	}
	if _, err := pipeline.NewFilter(h.Include, h.Exclude); err != nil {
		return h, fmt.Errorf("sinks[%d] (%s): %w", i, h.Name, err)
	}
	return h, nil
}

func stringList(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		return strings.Split(x, ","), nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("expected a list of strings, got %T", e)
			}
			out = append(out, s)
		}
		return out, nil
	case []string:
		return x, nil
	}
	return nil, fmt.Errorf("expected a list of strings, got %T", v)
}

// decodeSinkConfig decodes a sink entry's own keys into out, rejecting unknown keys.
func decodeSinkConfig(h sinkHeader, i int, out any) error {
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           out,
		ErrorUnused:      true,
		WeaklyTypedInput: true,
		DecodeHook:       decodeHook(),
		TagName:          "mapstructure",
	})
	if err != nil {
		return err
	}
	if err := dec.Decode(h.Rest); err != nil {
		return explainDecode(err, fmt.Sprintf("sinks[%d].", i), fmt.Sprintf("sinks[%d] (%s, type %s): ", i, h.Name, h.Type))
	}
	if v, ok := out.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("sinks[%d] (%s, type %s): %w", i, h.Name, h.Type, err)
		}
	}
	return nil
}
