package pipeline

import (
	"errors"
	"fmt"
	"time"

	"github.com/pgstream/pgstream/internal/bound"
	"github.com/pgstream/pgstream/internal/snapshot"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/replication"
)

// Config tunes the pipeline. Every zero value means the documented default.
type Config struct {
	// MaxBatchEvents closes a batch after this many events, even inside a transaction. Default 4096.
	MaxBatchEvents int `mapstructure:"max_batch_events"`
	// MaxBatchBytes closes a batch once its encoded events reach this size. Default 1 MiB.
	MaxBatchBytes int `mapstructure:"max_batch_bytes"`
	// MaxInFlightBytes bounds the encoded bytes handed to sinks and not yet acknowledged by all of
	// them; reading from PostgreSQL pauses at this bound. Default 16 MiB.
	MaxInFlightBytes int `mapstructure:"max_in_flight_bytes"`
	// MaxWriteEvents bounds how many queued events a sink worker merges into one Write. Default 16384.
	MaxWriteEvents int `mapstructure:"max_write_events"`
	// CheckpointInterval is the longest the durable checkpoint lags behind what every sink has
	// acknowledged while changes flow. Default 1s; 10ms to 10m.
	CheckpointInterval time.Duration `mapstructure:"checkpoint_interval"`
	// ShutdownTimeout bounds how long a shutdown waits for sinks to acknowledge what they hold.
	// Default 30s; 1s to 1h.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// ReconnectMin and ReconnectMax bound the backoff between reconnect attempts after the server
	// went away. Defaults 500ms (10ms to 1m) and 30s (100ms to 1h, at least ReconnectMin).
	ReconnectMin time.Duration `mapstructure:"reconnect_min"`
	ReconnectMax time.Duration `mapstructure:"reconnect_max"`
	// ReconnectAttempts is how many consecutive failed reconnects end the run. 0 means retry forever.
	ReconnectAttempts int `mapstructure:"reconnect_attempts"`
	// StatsInterval is how often progress is logged at info level. Default 30s; 10ms to 24h, or
	// negative to disable.
	StatsInterval time.Duration `mapstructure:"stats_interval"`
	// TransactionMarkers adds a begin ("b") and an end ("e") event around each transaction's
	// changes (docs/format.md). Default false.
	TransactionMarkers bool `mapstructure:"transaction_markers"`
	// EndLSN, when set, ends the run cleanly once everything up to this position has been received
	// and delivered: after the first transaction committing at or past it, or a keepalive reporting
	// the server's WAL at or past it while nothing is open (pg_recvlogical's --endpos).
	EndLSN lsn.LSN `mapstructure:"-"`
	// Snapshot configures table snapshots; it is the top-level snapshot section of the config file.
	Snapshot SnapshotConfig `mapstructure:"-"`
	// WALGuard watches the slot's WAL retention; it is the top-level wal_guard section.
	WALGuard WALGuardConfig `mapstructure:"-"`
	// Heartbeat proves the whole path end to end; its keys are source.heartbeat_*.
	Heartbeat HeartbeatConfig `mapstructure:"-"`
}

// WALGuardConfig tunes the watch of the slot's WAL retention. Every zero value means the
// documented default.
type WALGuardConfig struct {
	// PollInterval is how often pg_replication_slots is read. Default 10s; 1s to 10m.
	PollInterval time.Duration `mapstructure:"poll_interval"`
	// MinSafeWALSize: while the slot's safe_wal_size (the WAL that can still be written before
	// the server may invalidate the slot) is below this many bytes, the slot is not ready, and an
	// initial snapshot being read inside the slot's exported snapshot gives way to streaming (its
	// remaining chunks are read while streaming). Default 0: a fifth of max_slot_wal_keep_size.
	MinSafeWALSize int64 `mapstructure:"min_safe_wal_size"`
}

// HeartbeatConfig tunes heartbeats: when no transaction arrives for Interval, a transactional
// logical message is written on an ordinary connection and must come back through the slot.
type HeartbeatConfig struct {
	// Interval is the quiet time after which a heartbeat is written. Default 1m; 1s to 24h, or
	// negative to turn heartbeats off.
	Interval time.Duration `mapstructure:"heartbeat_interval"`
	// Query, when set, is run instead of pg_logical_emit_message; any transaction that comes
	// through the slot afterwards counts as the heartbeat's return.
	Query string `mapstructure:"heartbeat_query"`
	// ToSinks delivers heartbeat messages to the sinks as op "m" events. Default false.
	ToSinks bool `mapstructure:"heartbeat_to_sinks"`
}

// Snapshot modes.
const (
	// SnapshotInitial snapshots the published tables when there is no checkpoint yet, then streams.
	SnapshotInitial = "initial"
	// SnapshotNever never snapshots on its own: streaming starts at the slot's position.
	SnapshotNever = "never"
	// SnapshotInitialOnly snapshots like SnapshotInitial, then stops; a later run streams from the
	// snapshot's consistent point.
	SnapshotInitialOnly = "initial_only"
)

// SnapshotConfig tunes table snapshots. Every zero value means the documented default.
type SnapshotConfig struct {
	// Mode is initial (default), never or initial_only.
	Mode string `mapstructure:"mode"`
	// Workers is how many connections read chunks at once. Default 2.
	Workers int `mapstructure:"workers"`
	// ChunkPages is the size of a chunk in heap pages (8 KiB each by default). Default 1024. A chunk
	// read while streaming (a resumed or online snapshot) is held in memory until its high watermark
	// comes through the stream, so this bounds that memory.
	ChunkPages int `mapstructure:"chunk_pages"`
	// ProgressInterval is how often snapshot progress is logged. Default 10s; 10ms to 24h, or
	// negative to disable.
	ProgressInterval time.Duration `mapstructure:"progress_interval"`
	// NewTables snapshots, while streaming, each table that joins the publication. Default true,
	// except with Mode never.
	NewTables *bool `mapstructure:"new_tables"`
	// PollInterval is how often the publication's tables are listed to find new ones. Default 10s;
	// 100ms to 24h.
	PollInterval time.Duration `mapstructure:"poll_interval"`
	// MaxRowsPerSecond caps how many rows all snapshot readers together read per second, to bound
	// the load a snapshot puts on the server. 0 (the default) means no cap.
	MaxRowsPerSecond int `mapstructure:"max_rows_per_second"`
	// SignalTable ("schema.table", or "table" in public) is a published table whose inserted rows
	// request re-snapshots: its column "tables" holds the names, comma-separated or as a text
	// array. "" (the default) means none.
	SignalTable string `mapstructure:"signal_table"`
}

// WithDefaults returns a copy of c with every zero-valued field set to its documented default.
func (c SnapshotConfig) WithDefaults() SnapshotConfig {
	if c.Mode == "" {
		c.Mode = SnapshotInitial
	}
	if c.Workers == 0 {
		c.Workers = 2
	}
	if c.ChunkPages == 0 {
		c.ChunkPages = snapshot.DefaultChunkPages
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = 10 * time.Second
	}
	if c.NewTables == nil {
		on := c.Mode != SnapshotNever
		c.NewTables = &on
	}
	if c.PollInterval == 0 {
		c.PollInterval = 10 * time.Second
	}
	return c
}

// Validate rejects values that cannot work, naming each key and its value; it reports every
// problem. A zero-valued field stands for its default. Validate does not change c.
func (c SnapshotConfig) Validate() error {
	c = c.WithDefaults()
	var errs []error
	switch c.Mode {
	case SnapshotInitial, SnapshotNever, SnapshotInitialOnly:
	default:
		errs = append(errs, fmt.Errorf("snapshot.mode %q: use initial, never or initial_only", c.Mode))
	}
	if c.Workers < 1 || c.Workers > 64 {
		errs = append(errs, fmt.Errorf("snapshot.workers %d: use 1 to 64", c.Workers))
	}
	if c.MaxRowsPerSecond < 0 {
		errs = append(errs, fmt.Errorf("snapshot.max_rows_per_second %d: use 0 (no cap) or a positive number", c.MaxRowsPerSecond))
	}
	if c.ChunkPages < 1 || c.ChunkPages > 1<<20 {
		errs = append(errs, fmt.Errorf("snapshot.chunk_pages %d: use 1 to 1048576", c.ChunkPages))
	}
	errs = append(errs,
		bound.DurationOrOff("snapshot.progress_interval", c.ProgressInterval, 10*time.Millisecond, 24*time.Hour),
		bound.Duration("snapshot.poll_interval", c.PollInterval, 100*time.Millisecond, 24*time.Hour))
	if c.SignalTable != "" {
		if _, _, err := replication.SplitTable(c.SignalTable); err != nil {
			errs = append(errs, fmt.Errorf("snapshot.signal_table: %w", err))
		}
	}
	return errors.Join(errs...)
}

// WithDefaults returns a copy of c with every zero-valued field, Snapshot's included, set to its
// documented default.
func (c Config) WithDefaults() Config {
	setInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	setInt(&c.MaxBatchEvents, 4096)
	setInt(&c.MaxBatchBytes, 1<<20)
	setInt(&c.MaxInFlightBytes, 16<<20)
	setInt(&c.MaxWriteEvents, 16384)
	setDur(&c.CheckpointInterval, time.Second)
	setDur(&c.ShutdownTimeout, 30*time.Second)
	setDur(&c.ReconnectMin, 500*time.Millisecond)
	setDur(&c.ReconnectMax, 30*time.Second)
	setDur(&c.StatsInterval, 30*time.Second)
	setDur(&c.WALGuard.PollInterval, 10*time.Second)
	setDur(&c.Heartbeat.Interval, time.Minute)
	c.Snapshot = c.Snapshot.WithDefaults()
	return c
}

// Validate rejects values that cannot work, naming each key and its value; it reports every
// problem, Snapshot's included. A zero-valued field stands for its default. Validate does not
// change c.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	for _, l := range [...]struct {
		key string
		v   int
	}{
		{"pipeline.max_batch_events", c.MaxBatchEvents},
		{"pipeline.max_batch_bytes", c.MaxBatchBytes},
		{"pipeline.max_in_flight_bytes", c.MaxInFlightBytes},
		{"pipeline.max_write_events", c.MaxWriteEvents},
	} {
		if l.v < 0 {
			errs = append(errs, fmt.Errorf("%s %d: must be positive (leave it out for the default)", l.key, l.v))
		}
	}
	if c.MaxInFlightBytes < c.MaxBatchBytes {
		errs = append(errs, fmt.Errorf("pipeline.max_in_flight_bytes %d: must be at least pipeline.max_batch_bytes %d", c.MaxInFlightBytes, c.MaxBatchBytes))
	}
	errs = append(errs,
		bound.Duration("pipeline.checkpoint_interval", c.CheckpointInterval, 10*time.Millisecond, 10*time.Minute),
		bound.Duration("pipeline.shutdown_timeout", c.ShutdownTimeout, time.Second, time.Hour),
		bound.Duration("pipeline.reconnect_min", c.ReconnectMin, 10*time.Millisecond, time.Minute),
		bound.Duration("pipeline.reconnect_max", c.ReconnectMax, 100*time.Millisecond, time.Hour),
		bound.DurationOrOff("pipeline.stats_interval", c.StatsInterval, 10*time.Millisecond, 24*time.Hour))
	if c.ReconnectMax < c.ReconnectMin {
		errs = append(errs, fmt.Errorf("pipeline.reconnect_max %s: must be at least pipeline.reconnect_min %s",
			bound.Format(c.ReconnectMax), bound.Format(c.ReconnectMin)))
	}
	if c.ReconnectAttempts < 0 {
		errs = append(errs, fmt.Errorf("pipeline.reconnect_attempts %d: use 0 (retry forever) or more", c.ReconnectAttempts))
	}
	if err := c.Snapshot.Validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, bound.Duration("wal_guard.poll_interval", c.WALGuard.PollInterval, time.Second, 10*time.Minute),
		bound.DurationOrOff("source.heartbeat_interval", c.Heartbeat.Interval, time.Second, 24*time.Hour))
	if c.WALGuard.MinSafeWALSize < 0 {
		errs = append(errs, fmt.Errorf("wal_guard.min_safe_wal_size %d: use 0 (a fifth of max_slot_wal_keep_size) or a positive number of bytes", c.WALGuard.MinSafeWALSize))
	}
	return errors.Join(errs...)
}
