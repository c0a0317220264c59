package pipeline

import (
	"errors"
	"fmt"
	"time"

	"github.com/pgstream/pgstream/internal/lsn"
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
	// acknowledged while changes flow. Default 1s.
	CheckpointInterval time.Duration `mapstructure:"checkpoint_interval"`
	// ShutdownTimeout bounds how long a shutdown waits for sinks to acknowledge what they hold.
	// Default 30s.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// ReconnectMin and ReconnectMax bound the backoff between reconnect attempts after the server
	// went away. Defaults 500ms and 30s.
	ReconnectMin time.Duration `mapstructure:"reconnect_min"`
	ReconnectMax time.Duration `mapstructure:"reconnect_max"`
	// ReconnectAttempts is how many consecutive failed reconnects end the run. 0 means retry forever.
	ReconnectAttempts int `mapstructure:"reconnect_attempts"`
	// StatsInterval is how often progress is logged at info level. Default 30s; negative disables.
	StatsInterval time.Duration `mapstructure:"stats_interval"`
	// TransactionMarkers adds a begin ("b") and an end ("e") event around each transaction's
	// changes (docs/format.md). Default false.
	TransactionMarkers bool `mapstructure:"transaction_markers"`
	// EndLSN, when set, ends the run cleanly once everything up to this position has been received
	// and delivered: after the first transaction committing at or past it, or a keepalive reporting
	// the server's WAL at or past it while nothing is open (pg_recvlogical's --endpos).
	EndLSN lsn.LSN `mapstructure:"-"`
}

// Validate fills in defaults and rejects values that cannot work.
func (c *Config) Validate() error {
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
	var errs []error
	if c.MaxBatchEvents < 0 || c.MaxBatchBytes < 0 || c.MaxInFlightBytes < 0 || c.MaxWriteEvents < 0 {
		errs = append(errs, errors.New("pipeline: batch and in-flight limits must be positive"))
	}
	if c.MaxInFlightBytes < c.MaxBatchBytes {
		errs = append(errs, fmt.Errorf("pipeline.max_in_flight_bytes (%d) must be at least pipeline.max_batch_bytes (%d)", c.MaxInFlightBytes, c.MaxBatchBytes))
	}
	if c.CheckpointInterval < 0 || c.ShutdownTimeout < 0 || c.ReconnectMin < 0 || c.ReconnectMax < c.ReconnectMin {
		errs = append(errs, errors.New("pipeline: intervals must be positive and reconnect_max >= reconnect_min"))
	}
	if c.ReconnectAttempts < 0 {
		errs = append(errs, errors.New("pipeline.reconnect_attempts must be 0 (forever) or positive"))
	}
	return errors.Join(errs...)
}
