package kafka

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"go.uber.org/zap"

	"github.com/pgstream/pgstream/internal/backoff"
	"github.com/pgstream/pgstream/internal/retry"
	"github.com/pgstream/pgstream/sinks"
)

// Record header names.
const (
	HeaderID        = "pgstream.id"
	HeaderOp        = "pgstream.op"
	HeaderLSN       = "pgstream.lsn"
	HeaderCommitLSN = "pgstream.commit_lsn"
)

// Errors callers can test with errors.Is.
var (
	// ErrUnknownTopic: the topic does not exist and auto-creation is off.
	ErrUnknownTopic = errors.New("kafka topic does not exist")
	// ErrUnreachable: Ping could not get metadata from any broker.
	ErrUnreachable = errors.New("kafka brokers unreachable")
	// ErrRetriesExhausted: a transient failure outlasted Config.MaxRetries.
	ErrRetriesExhausted = errors.New("kafka write retries exhausted")
	// ErrClosed: Write or Ping was called after Close.
	ErrClosed = errors.New("kafka sink closed")
)

// Error is a permanent failure writing to one or more topics: retrying cannot help, the
// configuration or the cluster must change. Fix says what to change.
type Error struct {
	Topics []string
	Err    error
	Fix    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("write kafka topic %s: %v; %s", strings.Join(e.Topics, ", "), e.Err, e.Fix)
}

func (e *Error) Unwrap() error { return e.Err }

// Sink writes change events to Kafka. Write, Ping and Close must not be called concurrently
// with one another; the pipeline calls them from one goroutine.
type Sink struct {
	failing   sinks.Failing // the failure retry is retrying, for Health
	cfg       Config
	log       *zap.Logger
	brokers   string
	transport *kafkago.Transport
	client    *kafkago.Client // shares the producer's transport and its metadata cache
	// freshClient returns a client on a new transport, whose metadata is read from the brokers
	// rather than from a cache, and the function that closes it.
	freshClient func() (*kafkago.Client, func())
	w           *kafkago.Writer
	bal         *balancer
	closed      bool

	topics map[[2]string]string // (schema, table) -> sanitized topic
	known  map[string]int       // verified topic -> partition count

	// The chunk being built. Record keys, values and header values are copied into arena; msgs
	// and hdrs point into it. They are reused after a chunk is acknowledged and dropped (left to
	// the garbage collector) when Write returns early, because the producer may still hold them.
	arena      []byte
	msgs       []kafkago.Message
	hdrs       []kafkago.Header
	parts      map[partKey]partStat
	chunkBytes int64
}

type partKey struct {
	topic string
	part  int
}

type partStat struct {
	n     int
	bytes int64
}

var (
	_ sinks.Sink     = (*Sink)(nil)
	_ sinks.Pinger   = (*Sink)(nil)
	_ sinks.Healther = (*Sink)(nil)
	_ sinks.Checker  = (*Sink)(nil)
)

// New checks cfg and builds the sink. It does no network I/O; it reads the TLS files.
func New(cfg Config, env sinks.Env) (*Sink, error) {
	log := env.Logger()
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	acks, _ := parseAcks(cfg.RequiredAcks)
	comp, _ := parseCompression(cfg.Compression)

	tc, err := cfg.TLS.Client("kafka.tls")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var mech sasl.Mechanism
	if cfg.SASL.Mechanism != "" {
		var err error
		if mech, err = saslMechanism(cfg.SASL); err != nil {
			return nil, err
		}
	}
	newTransport := func() *kafkago.Transport {
		return &kafkago.Transport{
			ClientID:    "pgstream",
			DialTimeout: 10 * time.Second,
			MetadataTTL: 2 * time.Second,
			TLS:         tc,
			SASL:        mech,
		}
	}
	t := newTransport()
	addr := kafkago.TCP(cfg.Brokers...)
	bal := &balancer{counts: make(map[string]int)}
	s := &Sink{
		cfg:       cfg,
		log:       log,
		brokers:   strings.Join(cfg.Brokers, ","),
		transport: t,
		client:    &kafkago.Client{Addr: addr, Timeout: cfg.WriteTimeout, Transport: t},
		freshClient: func() (*kafkago.Client, func()) {
			ft := newTransport()
			return &kafkago.Client{Addr: addr, Timeout: cfg.WriteTimeout, Transport: ft}, ft.CloseIdleConnections
		},
		bal: bal,
		w: &kafkago.Writer{
			Addr:         addr,
			Balancer:     bal,
			MaxAttempts:  1, // Write retries itself, respecting its context and the record order.
			BatchSize:    cfg.BatchSize,
			BatchBytes:   cfg.BatchBytes,
			BatchTimeout: cfg.BatchTimeout,
			WriteTimeout: cfg.WriteTimeout,
			ReadTimeout:  cfg.WriteTimeout,
			RequiredAcks: acks,
			Compression:  comp,
			Transport:    t,
		},
		topics: make(map[[2]string]string),
		known:  make(map[string]int),
		parts:  make(map[partKey]partStat),
	}
	return s, nil
}

func parseAcks(s string) (kafkago.RequiredAcks, error) {
	switch strings.ToLower(s) {
	case "all", "-1":
		return kafkago.RequireAll, nil
	case "one", "1":
		return kafkago.RequireOne, nil
	case "none", "0":
		return kafkago.RequireNone, nil
	}
	return 0, fmt.Errorf("%q is not all, one or none", s)
}

func parseCompression(s string) (kafkago.Compression, error) {
	switch strings.ToLower(s) {
	case "none":
		return 0, nil
	case "gzip":
		return kafkago.Gzip, nil
	case "snappy":
		return kafkago.Snappy, nil
	case "lz4":
		return kafkago.Lz4, nil
	case "zstd":
		return kafkago.Zstd, nil
	}
	return 0, fmt.Errorf("%q is not none, gzip, snappy, lz4 or zstd", s)
}

func saslMechanism(c SASLConfig) (sasl.Mechanism, error) {
	switch c.Mechanism {
	case "PLAIN":
		return plain.Mechanism{Username: c.Username, Password: c.Password}, nil
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		algo := scram.SHA256
		if c.Mechanism == "SCRAM-SHA-512" {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, c.Username, c.Password)
		if err != nil {
			return nil, fmt.Errorf("%w: kafka.sasl: %w", ErrConfig, err)
		}
		return m, nil
	}
	return nil, fmt.Errorf("%w: kafka.sasl.mechanism %q", ErrConfig, c.Mechanism)
}

// Ping fetches cluster metadata and, when a fixed topic is configured, checks (or creates) it.
func (s *Sink) Ping(ctx context.Context) error {
	if err := s.pingBrokers(ctx); err != nil {
		return err
	}
	if s.cfg.Topic != "" {
		// Through the retrying path: a topic created just now may take a moment to show up in
		// the brokers' metadata.
		if _, err := s.partitions(ctx, s.cfg.Topic); err != nil {
			return err
		}
	}
	return nil
}

// Check is Ping without changing anything on the cluster: a missing fixed topic that
// auto_create would have Ping create is not created; note then says so.
func (s *Sink) Check(ctx context.Context) (note string, err error) {
	if err := s.pingBrokers(ctx); err != nil {
		return "", err
	}
	if s.cfg.Topic == "" {
		return "", nil
	}
	_, err = s.topicMetadata(ctx, s.cfg.Topic, false)
	if errors.Is(err, errWouldCreate) {
		return fmt.Sprintf("topic %s missing; run would create it (auto_create.enabled: true)", s.cfg.Topic), nil
	}
	return "", err
}

// errWouldCreate: topicMetadata was told not to create a missing topic it would have created.
var errWouldCreate = errors.New("missing topic would be created")

// pingBrokers fetches cluster metadata.
func (s *Sink) pingBrokers(ctx context.Context) error {
	if s.closed {
		return ErrClosed
	}
	if _, err := s.client.Metadata(ctx, &kafkago.MetadataRequest{}); err != nil {
		var ke kafkago.Error
		if errors.As(err, &ke) {
			// The brokers answered: authentication or authorization failed.
			return fmt.Errorf("ping kafka brokers %s: %w; check kafka.sasl, kafka.tls and the ACLs", s.brokers, err)
		}
		hint := ""
		if s.cfg.SASL.Mechanism != "" || s.cfg.TLS.Enabled {
			hint = " (a broker closing the connection can mean failed authentication: check kafka.sasl and kafka.tls)"
		}
		return fmt.Errorf("%w: brokers %s: %w%s", ErrUnreachable, s.brokers, err, hint)
	}
	return nil
}

// Write delivers b and returns nil once the brokers have acknowledged every record (with
// RequiredAcks "none": once every record is sent). Records are handed to the producer in chunks
// holding at most one producer batch per partition, so a failure affects whole partitions of a
// chunk and the retried remainder keeps every partition's order.
func (s *Sink) Write(ctx context.Context, b *sinks.Batch) error {
	if s.closed {
		return ErrClosed
	}
	s.resetChunk()
	for i := range b.Events {
		ev := &b.Events[i]
		topic, err := s.topicFor(ev)
		if err != nil {
			return err
		}
		n, err := s.partitions(ctx, topic)
		if err != nil {
			return err
		}
		if err := s.add(ctx, ev, topic, n, false); err != nil {
			return err
		}
		if ev.Op == sinks.OpDelete && s.cfg.Tombstones && ev.Key != nil {
			if err := s.add(ctx, ev, topic, n, true); err != nil {
				return err
			}
		}
	}
	return s.flush(ctx)
}

// Close stops the producer and releases the connections. Records of a Write that returned early
// (its context ended) may still be sent while Close waits for the producer, for at most
// WriteTimeout per partition batch.
func (s *Sink) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.w.Close()
	s.transport.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("close kafka writer: %w", err)
	}
	return nil
}

func (s *Sink) topicFor(ev *sinks.Event) (string, error) {
	if s.cfg.Topic != "" {
		return s.cfg.Topic, nil
	}
	k := [2]string{ev.Schema, ev.Table}
	if t, ok := s.topics[k]; ok {
		return t, nil
	}
	t := renderTopic(s.cfg.TopicTemplate, s.cfg.TopicPrefix, ev.Schema, ev.Table)
	if err := checkTopic(t); err != nil {
		return "", &Error{Topics: []string{t}, Err: err, Fix: "change kafka.topic_template or kafka.topic"}
	}
	s.topics[k] = t
	return t, nil
}

// partitions returns the partition count of a topic, verifying (or creating) it the first time,
// retrying transient failures.
func (s *Sink) partitions(ctx context.Context, topic string) (int, error) {
	if n, ok := s.known[topic]; ok {
		return n, nil
	}
	var n int
	err := s.retry(ctx, "verify topic "+topic, func() error {
		var err error
		n, err = s.verifyTopic(ctx, topic)
		return err
	})
	return n, err
}

// verifyTopic asks for the topic's metadata once, creating the topic when it is missing and
// auto-creation is on. Permanent failures are *Error.
func (s *Sink) verifyTopic(ctx context.Context, topic string) (int, error) {
	return s.topicMetadata(ctx, topic, true)
}

// topicMetadata is verifyTopic; with create false, a topic it would create is errWouldCreate.
func (s *Sink) topicMetadata(ctx context.Context, topic string, create bool) (int, error) {
	client, closeClient := s.freshClient()
	defer closeClient()
	created := false
	for {
		md, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
		if err != nil {
			return 0, fmt.Errorf("fetch metadata of topic %s from %s: %w", topic, s.brokers, err)
		}
		var terr error
		n := 0
		for _, t := range md.Topics {
			if t.Name == topic {
				terr, n = t.Error, len(t.Partitions)
			}
		}
		switch {
		case terr == nil && n > 0:
			s.known[topic] = n
			return n, nil
		case terr == nil || errors.Is(terr, kafkago.UnknownTopicOrPartition):
			if created {
				return 0, fmt.Errorf("topic %s created, metadata not yet available", topic)
			}
			if !s.cfg.AutoCreate.Enabled {
				return 0, &Error{Topics: []string{topic}, Err: ErrUnknownTopic,
					Fix: "create the topic or set kafka.auto_create.enabled"}
			}
			if !create {
				return 0, errWouldCreate
			}
			if err := s.createTopic(ctx, topic); err != nil {
				return 0, err
			}
			created = true
		case isPermanent(terr):
			return 0, s.permanent([]string{topic}, terr)
		default:
			return 0, fmt.Errorf("metadata of topic %s: %w", topic, terr)
		}
	}
}

// createTopic creates topic through the producer's transport, which then refreshes its metadata.
func (s *Sink) createTopic(ctx context.Context, topic string) error {
	parts, rf := s.cfg.AutoCreate.Partitions, s.cfg.AutoCreate.ReplicationFactor
	if parts == 0 {
		parts = -1
	}
	if rf == 0 {
		rf = -1
	}
	res, err := s.client.CreateTopics(ctx, &kafkago.CreateTopicsRequest{
		Topics: []kafkago.TopicConfig{{Topic: topic, NumPartitions: parts, ReplicationFactor: rf}},
	})
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	if err := res.Errors[topic]; err != nil && !errors.Is(err, kafkago.TopicAlreadyExists) {
		if isPermanent(err) {
			return &Error{Topics: []string{topic}, Err: err,
				Fix: "grant CREATE on the cluster or topic, fix kafka.auto_create, or create the topic"}
		}
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	s.log.Info("created kafka topic", zap.String("topic", topic), zap.Int("partitions", parts),
		zap.Int("replication_factor", rf))
	return nil
}

// recordSize over-estimates the bytes kafka-go counts for a record against BatchBytes: the
// record framing, key, value and the four headers (id, op, lsn, commit_lsn).
func recordSize(ev *sinks.Event, tombstone bool) int64 {
	n := int64(32 + len(ev.Key))
	if !tombstone {
		n += int64(len(ev.Value))
	}
	const idLen, opLen, lsnLen = 17 + 1 + 10, 1, 17
	n += 4*10 + int64(len(HeaderID)+len(HeaderOp)+len(HeaderLSN)+len(HeaderCommitLSN))
	n += idLen + opLen + 2*lsnLen
	return n
}

// add appends the record of ev (or its tombstone) to the chunk, writing the chunk first when the
// record would give a partition a second producer batch or exceed MaxInFlightBytes.
func (s *Sink) add(ctx context.Context, ev *sinks.Event, topic string, nparts int, tombstone bool) error {
	size := recordSize(ev, tombstone)
	pk := partKey{topic, partitionOf(ev.Key, nparts)}
	st := s.parts[pk]
	if len(s.msgs) > 0 && (st.n+1 > s.cfg.BatchSize || st.bytes+size > s.cfg.BatchBytes ||
		s.chunkBytes+size > s.cfg.MaxInFlightBytes) {
		if err := s.flush(ctx); err != nil {
			return err
		}
		st = partStat{}
	}

	// Appending may move the arena; records already built keep pointing at the old array,
	// which nothing writes to again.
	a := s.arena
	start := len(a)
	a = append(a, ev.Key...)
	keyEnd := len(a)
	if !tombstone {
		a = append(a, ev.Value...)
	}
	valEnd := len(a)
	a = ev.AppendID(a)
	idEnd := len(a)
	a = append(a, byte(ev.Op))
	opEnd := len(a)
	a = ev.LSN.AppendText(a)
	lsnEnd := len(a)
	a = ev.CommitLSN.AppendText(a)
	end := len(a)
	s.arena = a

	h := len(s.hdrs)
	s.hdrs = append(s.hdrs,
		kafkago.Header{Key: HeaderID, Value: a[valEnd:idEnd:idEnd]},
		kafkago.Header{Key: HeaderOp, Value: a[idEnd:opEnd:opEnd]},
		kafkago.Header{Key: HeaderLSN, Value: a[opEnd:lsnEnd:lsnEnd]},
		kafkago.Header{Key: HeaderCommitLSN, Value: a[lsnEnd:end:end]},
	)
	m := kafkago.Message{Topic: topic, Headers: s.hdrs[h : h+4 : h+4]}
	if ev.Key != nil {
		m.Key = a[start:keyEnd:keyEnd]
	}
	if !tombstone {
		m.Value = a[keyEnd:valEnd:valEnd]
	}
	s.msgs = append(s.msgs, m)
	s.parts[pk] = partStat{st.n + 1, st.bytes + size}
	s.chunkBytes += size
	return nil
}

// flush hands the chunk to the producer and waits for it, retrying the failed part.
func (s *Sink) flush(ctx context.Context) error {
	if len(s.msgs) == 0 {
		return nil
	}
	msgs := s.msgs
	err := s.retry(ctx, "write records", func() error {
		err := s.w.WriteMessages(ctx, msgs...)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		var werrs kafkago.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(msgs) {
			n := 0
			var cause error
			for i, e := range werrs {
				if e == nil {
					continue
				}
				if isPermanent(e) {
					return s.permanent([]string{msgs[i].Topic}, e)
				}
				if errors.Is(e, kafkago.UnknownTopicOrPartition) {
					// Check again whether the topic still exists before retrying.
					delete(s.known, msgs[i].Topic)
				}
				msgs[n] = msgs[i]
				n++
				cause = e
			}
			msgs = msgs[:n]
			if n == 0 {
				return nil
			}
			for t := range s.knownMissing(msgs) {
				if _, err := s.verifyTopic(ctx, t); err != nil {
					return err
				}
			}
			return fmt.Errorf("%d of %d records failed: %w", n, len(werrs), cause)
		}
		var tooLarge kafkago.MessageTooLargeError
		if errors.As(err, &tooLarge) {
			return &Error{Topics: []string{tooLarge.Message.Topic}, Err: kafkago.MessageSizeTooLarge,
				Fix: "raise kafka.batch_bytes (and the topic's max.message.bytes)"}
		}
		if isPermanent(err) {
			return s.permanent(chunkTopics(msgs), err)
		}
		if errors.Is(err, kafkago.UnknownTopicOrPartition) {
			// The producer's metadata lookup failed: check the topics again before retrying.
			for _, t := range chunkTopics(msgs) {
				delete(s.known, t)
				if _, verr := s.verifyTopic(ctx, t); verr != nil {
					return verr
				}
			}
		}
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			// The producer may still be sending the chunk: its memory must not be reused.
			s.arena, s.msgs, s.hdrs = nil, nil, nil
		}
		return err
	}
	for t, n := range s.bal.counts {
		if k, ok := s.known[t]; ok && k != n {
			s.log.Warn("kafka topic partition count changed", zap.String("topic", t),
				zap.Int("was", k), zap.Int("now", n))
			s.known[t] = n
		}
	}
	s.resetChunk()
	return nil
}

// knownMissing returns the topics of msgs that are no longer verified.
func (s *Sink) knownMissing(msgs []kafkago.Message) map[string]struct{} {
	var out map[string]struct{}
	for i := range msgs {
		if _, ok := s.known[msgs[i].Topic]; !ok {
			if out == nil {
				out = make(map[string]struct{})
			}
			out[msgs[i].Topic] = struct{}{}
		}
	}
	return out
}

func (s *Sink) resetChunk() {
	s.arena = s.arena[:0]
	clear(s.msgs)
	s.msgs = s.msgs[:0]
	clear(s.hdrs)
	s.hdrs = s.hdrs[:0]
	clear(s.parts)
	s.chunkBytes = 0
}

func chunkTopics(msgs []kafkago.Message) []string {
	seen := make(map[string]struct{})
	var out []string
	for i := range msgs {
		if _, ok := seen[msgs[i].Topic]; !ok {
			seen[msgs[i].Topic] = struct{}{}
			out = append(out, msgs[i].Topic)
		}
	}
	sort.Strings(out)
	return out
}

// retry runs fn until it succeeds, fails permanently (*Error), ctx ends, or MaxRetries transient
// failures have happened, sleeping with exponential backoff between attempts.
func (s *Sink) retry(ctx context.Context, what string, fn func() error) error {
	return retry.Loop{Backoff: retryBackoff, Log: s.log, Message: "kafka write failed, retrying", Permanent: isError,
		MaxRetries: s.cfg.MaxRetries, Exhausted: ErrRetriesExhausted, Failing: &s.failing}.Do(ctx, what, fn)
}

// isError reports whether err is a permanent failure, an *Error.
func isError(err error) bool {
	var perm *Error
	return errors.As(err, &perm)
}

// Health reports the failure the sink is retrying (a broker refusing or unreachable, with since
// when), or nil while its requests succeed. Safe for concurrent use.
func (s *Sink) Health() error { return s.failing.Err() }

// retryBackoff is the wait between attempts of a failed request.
var retryBackoff = backoff.Policy{Min: 50 * time.Millisecond, Max: 5 * time.Second}

// isPermanent reports whether err is a broker answer that no retry can change.
func isPermanent(err error) bool {
	var ke kafkago.Error
	if errors.As(err, &ke) {
		return !ke.Temporary() && ke != kafkago.UnknownTopicOrPartition
	}
	var tooLarge kafkago.MessageTooLargeError
	if errors.As(err, &tooLarge) {
		return true
	}
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	var cerr x509.CertificateInvalidError
	return errors.As(err, &uerr) || errors.As(err, &herr) || errors.As(err, &cerr)
}

func (s *Sink) permanent(topics []string, err error) error {
	fix := "check the broker logs"
	var ke kafkago.Error
	if errors.As(err, &ke) {
		switch ke {
		case kafkago.TopicAuthorizationFailed, kafkago.ClusterAuthorizationFailed:
			fix = "grant the pgstream principal WRITE (and DESCRIBE) on the topic"
		case kafkago.SASLAuthenticationFailed, kafkago.UnsupportedSASLMechanism, kafkago.IllegalSASLState:
			fix = "check kafka.sasl"
		case kafkago.MessageSizeTooLarge, kafkago.RecordListTooLarge:
			fix = "raise the topic's max.message.bytes or lower kafka.batch_bytes"
		case kafkago.InvalidTopic:
			fix = "change kafka.topic_template or kafka.topic"
		case kafkago.InvalidRequiredAcks:
			fix = "change kafka.required_acks"
		case kafkago.UnsupportedCompressionType:
			fix = "change kafka.compression"
		case kafkago.InvalidReplicationFactor, kafkago.InvalidPartitionNumber:
			fix = "change kafka.auto_create"
		}
	} else {
		fix = "check kafka.tls"
	}
	return &Error{Topics: topics, Err: err, Fix: fix}
}
