package kafka

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pgstream/pgstream/internal/bound"
	"github.com/pgstream/pgstream/internal/tlsfiles"
)

// Defaults of zero-valued Config fields, filled in by WithDefaults.
const (
	DefaultTopicTemplate    = "{prefix}.{schema}.{table}"
	DefaultTopicPrefix      = "pgstream"
	DefaultBatchSize        = 1000
	DefaultBatchBytes       = 1 << 20
	DefaultBatchTimeout     = 2 * time.Millisecond
	DefaultMaxInFlightBytes = 64 << 20
	DefaultWriteTimeout     = 30 * time.Second
)

// Ranges Validate accepts. Write waits for BatchTimeout on every call, so more than a second is a
// mistake; a produce attempt needs a second at least, and one not done in ten minutes never will be.
const (
	MinBatchTimeout = 100 * time.Microsecond
	MaxBatchTimeout = time.Second
	MinWriteTimeout = time.Second
	MaxWriteTimeout = 10 * time.Minute
)

// ErrConfig is wrapped by every error Validate returns.
var ErrConfig = errors.New("invalid kafka sink config")

// Config configures the Kafka sink. Every field's zero value selects the documented default.
type Config struct {
	// Brokers lists the bootstrap brokers as host:port. Required.
	Brokers []string `mapstructure:"brokers"`
	// Topic, when set, is the one topic every event is written to; it overrides TopicTemplate.
	// It must be a legal topic name: it is checked, not sanitized.
	Topic string `mapstructure:"topic"`
	// TopicTemplate names the topic of an event from the placeholders {prefix}, {schema} and
	// {table}. Default "{prefix}.{schema}.{table}". Characters Kafka does not allow in a topic
	// name (anything but [a-zA-Z0-9._-]) are replaced by '_'; an event without a table (a logical
	// decoding message, a transaction marker) renders {schema} and {table} as "_".
	TopicTemplate string `mapstructure:"topic_template"`
	// TopicPrefix is the value of {prefix}. Default "pgstream".
	TopicPrefix string `mapstructure:"topic_prefix"`
	// RequiredAcks is "all" (default: every in-sync replica), "one" (the leader) or "none" (no
	// acknowledgement: a write then counts as delivered once it is sent, so a broker failure loses
	// it, and records of one key that successive writes sent may land out of order).
	RequiredAcks string `mapstructure:"required_acks"`
	// BatchSize is the most records the producer puts in one request to one partition.
	// Default 1000.
	BatchSize int `mapstructure:"batch_size"`
	// BatchBytes is the most bytes the producer puts in one request to one partition; a single
	// record larger than this is rejected. Default 1 MiB (Kafka's default message.max.bytes).
	BatchBytes int64 `mapstructure:"batch_bytes"`
	// BatchTimeout is how long the producer waits for a partition's batch to fill before sending
	// it. Write is synchronous, so this is added to the latency of every Write. Default 2ms;
	// 100µs to 1s.
	BatchTimeout time.Duration `mapstructure:"batch_timeout"`
	// Compression is "none" (default), "gzip", "snappy", "lz4" or "zstd".
	Compression string `mapstructure:"compression"`
	// MaxInFlightBytes bounds the bytes of records handed to the producer and not yet
	// acknowledged. Default 64 MiB.
	MaxInFlightBytes int64 `mapstructure:"max_in_flight_bytes"`
	// Tombstones makes a delete also write a record with the same key and a null value, so that
	// compacted topics drop the row. Default false.
	Tombstones bool `mapstructure:"tombstones"`
	// AutoCreate creates missing topics. When disabled (default), writing to a missing topic is
	// a permanent error.
	AutoCreate AutoCreateConfig `mapstructure:"auto_create"`
	// TLS configures an encrypted connection. Disabled by default.
	TLS TLSConfig `mapstructure:"tls"`
	// SASL configures authentication. No authentication by default.
	SASL SASLConfig `mapstructure:"sasl"`
	// WriteTimeout bounds one produce attempt. Default 30s; 1s to 10m.
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	// MaxRetries is how many times Write retries a transient failure of one chunk of records
	// before it returns ErrRetriesExhausted. Default 0: retry until the context ends.
	MaxRetries int `mapstructure:"max_retries"`
}

// AutoCreateConfig configures creation of missing topics.
type AutoCreateConfig struct {
	// Enabled turns creation on. Default false.
	Enabled bool `mapstructure:"enabled"`
	// Partitions of a created topic. Default 0: the broker's num.partitions.
	Partitions int `mapstructure:"partitions"`
	// ReplicationFactor of a created topic. Default 0: the broker's default.replication.factor.
	ReplicationFactor int `mapstructure:"replication_factor"`
}

// TLSConfig configures TLS towards the brokers.
type TLSConfig = tlsfiles.Options

// SASLConfig configures SASL authentication.
type SASLConfig struct {
	// Mechanism is "" (default: none), "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512".
	Mechanism string `mapstructure:"mechanism"`
	Username  string `mapstructure:"username"`
	Password  string `mapstructure:"password"`
}

// WithDefaults returns a copy of c with every zero-valued field set to its documented default.
func (c Config) WithDefaults() Config {
	if c.TopicTemplate == "" {
		c.TopicTemplate = DefaultTopicTemplate
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = DefaultTopicPrefix
	}
	if c.RequiredAcks == "" {
		c.RequiredAcks = "all"
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.Compression == "" {
		c.Compression = "none"
	}
	if c.MaxInFlightBytes == 0 {
		c.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
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
	if len(d.Brokers) == 0 {
		return bad("kafka.brokers is required")
	}
	for _, b := range d.Brokers {
		if strings.TrimSpace(b) == "" {
			return bad("kafka.brokers holds an empty address")
		}
	}
	if d.Topic != "" {
		if err := checkTopic(d.Topic); err != nil {
			return bad("kafka.topic: %v", err)
		}
	} else {
		// Render the template with sample names to catch an unusable template early.
		if err := checkTopic(renderTopic(d.TopicTemplate, d.TopicPrefix, "s", "t")); err != nil {
			return bad("kafka.topic_template: %v", err)
		}
	}
	if _, err := parseAcks(d.RequiredAcks); err != nil {
		return bad("kafka.required_acks: %v", err)
	}
	if _, err := parseCompression(d.Compression); err != nil {
		return bad("kafka.compression: %v", err)
	}
	if d.BatchSize < 0 {
		return bad("kafka.batch_size must not be negative")
	}
	if d.BatchBytes < 0 {
		return bad("kafka.batch_bytes must not be negative")
	}
	if err := bound.Duration("kafka.batch_timeout", d.BatchTimeout, MinBatchTimeout, MaxBatchTimeout); err != nil {
		return bad("%v", err)
	}
	if d.MaxInFlightBytes < 0 {
		return bad("kafka.max_in_flight_bytes must not be negative")
	}
	if err := bound.Duration("kafka.write_timeout", d.WriteTimeout, MinWriteTimeout, MaxWriteTimeout); err != nil {
		return bad("%v", err)
	}
	if d.MaxRetries < 0 {
		return bad("kafka.max_retries must not be negative")
	}
	if d.AutoCreate.Partitions < 0 || d.AutoCreate.ReplicationFactor < 0 {
		return bad("kafka.auto_create partitions and replication_factor must not be negative")
	}
	if err := d.TLS.Validate("kafka.tls"); err != nil {
		return bad("%s", err)
	}
	switch d.SASL.Mechanism {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if d.SASL.Username == "" {
			return bad("kafka.sasl.username is required with mechanism %s", d.SASL.Mechanism)
		}
	default:
		return bad("kafka.sasl.mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", d.SASL.Mechanism)
	}
	return nil
}
