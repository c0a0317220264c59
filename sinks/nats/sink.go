package nats

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pgstream/pgstream/internal/backoff"
	"github.com/pgstream/pgstream/internal/redact"
	"github.com/pgstream/pgstream/internal/retry"
	"github.com/pgstream/pgstream/sinks"
)

// Message header names besides jetstream.MsgIDHeader ("Nats-Msg-Id"), which holds the event id.
const (
	HeaderOp        = "pgstream.op"
	HeaderLSN       = "pgstream.lsn"
	HeaderCommitLSN = "pgstream.commit_lsn"
)

// Errors callers can test with errors.Is.
var (
	// ErrUnreachable: no server could be connected to.
	ErrUnreachable = errors.New("nats servers unreachable")
	// ErrStreamMissing: the stream does not exist and Stream.Create is false.
	ErrStreamMissing = errors.New("nats stream does not exist")
	// ErrSubjectsNotCovered: the stream's subjects do not include every subject the template
	// can produce.
	ErrSubjectsNotCovered = errors.New("nats stream subjects do not cover the configured subjects")
	// ErrPublish: JetStream refused a message for a reason retrying cannot change.
	ErrPublish = errors.New("nats publish rejected")
	// ErrClosed: Write or Ping was called after Close.
	ErrClosed = errors.New("nats sink closed")
)

// Sink publishes change events to a JetStream stream. Write and Ping must not be called
// concurrently with each other; Close may be called from another goroutine.
type Sink struct {
	failing sinks.Failing // the failure retry is retrying, for Health
	cfg     Config
	log     *zap.Logger
	pattern string // every subject the template can produce, with '*' for escaped names

	mu     sync.Mutex // guards nc, js and closed
	nc     *nats.Conn
	ncDone chan struct{} // closed by nats.go's last callback after the connection closed
	js     jetstream.JetStream
	closed bool

	subjects map[[2]string]string // (schema, table) -> subject

	// Per-Write state. Message data is copied into arena; it is reused by the next Write when
	// this one returned after every publish resolved, and dropped otherwise, since the client
	// may still hold it.
	arena   []byte
	msgs    []*nats.Msg
	futs    []jetstream.PubAckFuture
	pending []int
	failed  []int

	lastErr error // the last transient failure of a round

	// maxPending is the highest number of unacknowledged publishes seen after a publish.
	maxPending int
}

var (
	_ sinks.Sink     = (*Sink)(nil)
	_ sinks.Pinger   = (*Sink)(nil)
	_ sinks.Healther = (*Sink)(nil)
	_ sinks.Checker  = (*Sink)(nil)
)

// New checks cfg and builds the sink. It does no network I/O. Whatever the sink logs through log,
// and every error it returns, has the user information of server URLs redacted.
func New(cfg Config, env sinks.Env) (*Sink, error) {
	log := env.Logger()
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = redact.Brokers.Logger(log)
	return &Sink{
		cfg:      cfg,
		log:      log,
		pattern:  subjectPattern(cfg.SubjectTemplate, cfg.SubjectPrefix),
		subjects: make(map[[2]string]string),
	}, nil
}

// conn returns the JetStream context, connecting first if needed.
func (s *Sink) conn() (jetstream.JetStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.js != nil {
		return s.js, nil
	}
	done := make(chan struct{})
	opts, err := s.options(done)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(strings.Join(s.cfg.Servers, ","), opts...)
	if err != nil {
		return nil, redact.Brokers.Err(fmt.Errorf("%w: %s: %w", ErrUnreachable, s.servers(), err))
	}
	s.log.Debug("nats connected", zap.String("server", redact.Brokers.URL(nc.ConnectedUrl())))
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(s.cfg.MaxPending),
		jetstream.WithPublishAsyncTimeout(s.cfg.AckTimeout))
	if err != nil {
		nc.Close()
		<-done
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	s.nc, s.js, s.ncDone = nc, js, done
	return js, nil
}

// servers returns the configured server URLs, redacted, for messages.
func (s *Sink) servers() string {
	r := make([]string, len(s.cfg.Servers))
	for i, u := range s.cfg.Servers {
		r[i] = redact.Brokers.URL(u)
	}
	return strings.Join(r, ",")
}

// options builds the connection options; done is closed by the connection's closed callback,
// the last callback nats.go runs.
func (s *Sink) options(done chan struct{}) ([]nats.Option, error) {
	log := s.log
	opts := []nats.Option{
		nats.Name("pgstream"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.ReconnectBufSize(s.cfg.ReconnectBufSize),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", zap.Error(err))
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(done) }),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			// ConnectedUrlRedacted would show a token: it hides passwords only.
			log.Info("nats reconnected", zap.String("server", redact.Brokers.URL(nc.ConnectedUrl())))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("nats async error", zap.Error(err))
		}),
	}
	c := s.cfg
	switch {
	case c.CredsFile != "":
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: nats.nkey_file: %w", ErrConfig, err)
		}
		opts = append(opts, o)
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	tc, err := c.TLS.Client("nats.tls")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if tc != nil {
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// Ping connects, then checks that the stream exists (creating it when Stream.Create is set) and
// that its subjects cover every subject the template can produce.
func (s *Sink) Ping(ctx context.Context) error {
	_, err := s.checkStream(ctx, true)
	return redact.Brokers.Err(err)
}

// Check is Ping without changing anything on the server: a missing stream that Ping would
// create is not created; note then says so, and the configured subjects are checked instead.
func (s *Sink) Check(ctx context.Context) (note string, err error) {
	note, err = s.checkStream(ctx, false)
	return note, redact.Brokers.Err(err)
}

func (s *Sink) checkStream(ctx context.Context, create bool) (note string, err error) {
	js, err := s.conn()
	if err != nil {
		return "", err
	}
	name := s.cfg.Stream.Name
	st, err := js.Stream(ctx, name)
	var subjects []string
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && !s.cfg.Stream.Create:
		return "", fmt.Errorf("%w: stream %q; create it or set nats.stream.create", ErrStreamMissing, name)
	case errors.Is(err, jetstream.ErrStreamNotFound) && !create:
		subjects = s.streamConfig().Subjects
		note = fmt.Sprintf("stream %s missing; run would create it (stream.create: true) with subjects %q", name, subjects)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		st, err = js.CreateStream(ctx, s.streamConfig())
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			st, err = js.Stream(ctx, name)
		}
		if err != nil {
			return "", fmt.Errorf("create nats stream %q: %w", name, err)
		}
		s.log.Info("created nats stream", zap.String("stream", name))
		subjects = st.CachedInfo().Config.Subjects
	case err != nil:
		return "", fmt.Errorf("check nats stream %q: %w", name, err)
	default:
		subjects = st.CachedInfo().Config.Subjects
	}
	for _, f := range subjects {
		if covers(f, s.pattern) {
			return note, nil
		}
	}
	if note != "" {
		return "", fmt.Errorf("%w: stream %q would be created with subjects %q, pgstream publishes to %q; change nats.stream.subjects or nats.subject_template / nats.subject_prefix",
			ErrSubjectsNotCovered, name, subjects, s.pattern)
	}
	return "", fmt.Errorf("%w: stream %q has subjects %q, pgstream publishes to %q; change nats.stream.subjects on the stream or nats.subject_template / nats.subject_prefix",
		ErrSubjectsNotCovered, name, subjects, s.pattern)
}

func (s *Sink) streamConfig() jetstream.StreamConfig {
	c := s.cfg.Stream
	subjects := make([]string, len(c.Subjects))
	for i, sub := range c.Subjects {
		subjects[i] = expandPrefix(sub, s.cfg.SubjectPrefix)
	}
	storage := jetstream.FileStorage
	if c.Storage == "memory" {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:       c.Name,
		Subjects:   subjects,
		Storage:    storage,
		Replicas:   c.Replicas,
		Duplicates: c.DuplicateWindow,
	}
}

// Close closes the connection. Publishes not yet acknowledged are abandoned.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.nc != nil {
		s.nc.Close()
		<-s.ncDone // no callback runs after Close returns
	}
	return nil
}

func (s *Sink) subject(ev *sinks.Event) string {
	k := [2]string{ev.Schema, ev.Table}
	if sub, ok := s.subjects[k]; ok {
		return sub
	}
	sub := renderSubject(s.cfg.SubjectTemplate, s.cfg.SubjectPrefix, ev.Schema, ev.Table)
	s.subjects[k] = sub
	return sub
}

// Write publishes every event of b asynchronously, at most MaxPending unacknowledged at a time,
// and returns nil once JetStream acknowledged all of them. Publishes that fail (disconnection,
// ack timeout, no JetStream response) are sent again, in order and with the same Nats-Msg-Id,
// after a backoff, until acknowledged or ctx ends; the stream's duplicate window drops the
// copies of messages it had already stored.
func (s *Sink) Write(ctx context.Context, b *sinks.Batch) error {
	if len(b.Events) == 0 {
		return nil
	}
	return redact.Brokers.Err(s.write(ctx, b))
}

func (s *Sink) write(ctx context.Context, b *sinks.Batch) error {
	var js jetstream.JetStream
	if err := s.retry(ctx, "connect", func() error {
		var err error
		js, err = s.conn()
		return err
	}); err != nil {
		return err
	}
	s.build(b)
	s.pending = s.pending[:0]
	for i := range s.msgs {
		s.pending = append(s.pending, i)
	}
	err := s.retry(ctx, "publish", func() error {
		failed, err := s.round(ctx, js, s.pending)
		if err != nil {
			return err
		}
		s.pending, s.failed = failed, s.pending[:0]
		if len(failed) > 0 {
			return fmt.Errorf("%d of %d messages not acknowledged: %w", len(failed), len(s.msgs), s.lastErr)
		}
		return nil
	})
	if err != nil {
		// Unresolved publishes may still reference the data.
		s.arena, s.msgs, s.futs = nil, nil, nil
		return err
	}
	return nil
}

// build turns the events into messages whose data lives in the arena.
func (s *Sink) build(b *sinks.Batch) {
	size := 0
	for i := range b.Events {
		size += len(b.Events[i].Value)
	}
	if cap(s.arena) < size {
		s.arena = make([]byte, 0, size)
	}
	a := s.arena[:0]
	clear(s.msgs)
	s.msgs = s.msgs[:0]
	var buf [40]byte
	for i := range b.Events {
		ev := &b.Events[i]
		start := len(a)
		a = append(a, ev.Value...) // fits: the arena was sized for every value
		m := &nats.Msg{
			Subject: s.subject(ev),
			Data:    a[start:len(a):len(a)],
			Header: nats.Header{
				jetstream.MsgIDHeader: {string(ev.AppendID(buf[:0]))},
				HeaderOp:              {ev.Op.String()},
				HeaderLSN:             {string(ev.LSN.AppendText(buf[:0]))},
				HeaderCommitLSN:       {string(ev.CommitLSN.AppendText(buf[:0]))},
			},
		}
		s.msgs = append(s.msgs, m)
	}
	s.arena = a
	if cap(s.futs) < len(s.msgs) {
		s.futs = make([]jetstream.PubAckFuture, len(s.msgs))
	}
	s.futs = s.futs[:len(s.msgs)]
	clear(s.futs)
}

// round publishes the messages at idx in order, keeping at most MaxPending unacknowledged, and
// waits for all of them. It returns the indexes that failed transiently, in order, or an error
// for a permanent failure or the end of ctx. A publish that cannot be sent stops the round: it
// and every later message count as failed.
func (s *Sink) round(ctx context.Context, js jetstream.JetStream, idx []int) ([]int, error) {
	failed := s.failed[:0]
	head := 0 // idx[head:sent] are published and unresolved
	sent := 0
	wait := func(i int) error {
		f := s.futs[i]
		select {
		case <-f.Ok():
			return nil
		case err := <-f.Err():
			if permanent(err) {
				return fmt.Errorf("%w: subject %s: %w", ErrPublish, s.msgs[i].Subject, err)
			}
			s.lastErr = err
			failed = append(failed, i)
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	for ; sent < len(idx); sent++ {
		for sent-head >= s.cfg.MaxPending {
			if err := wait(idx[head]); err != nil {
				return nil, err
			}
			head++
		}
		i := idx[sent]
		f, err := js.PublishMsgAsync(s.msgs[i])
		if err != nil {
			if permanent(err) {
				return nil, fmt.Errorf("%w: subject %s: %w", ErrPublish, s.msgs[i].Subject, err)
			}
			s.lastErr = err
			break
		}
		s.futs[i] = f
		if n := js.PublishAsyncPending(); n > s.maxPending {
			s.maxPending = n
		}
	}
	for ; head < sent; head++ {
		if err := wait(idx[head]); err != nil {
			return nil, err
		}
	}
	return append(failed, idx[sent:]...), nil
}

// permanent reports whether a publish or acknowledgement error cannot be fixed by sending again.
func permanent(err error) bool {
	switch {
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrHeadersNotSupported):
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 4xx: the request is wrong (message too large, wrong stream, ...). 503 and the rest are
		// the server being unavailable for now.
		return apiErr.Code >= 400 && apiErr.Code < 500
	}
	return false
}

// retry runs fn until it succeeds, fails permanently, or ctx ends, with exponential backoff.
func (s *Sink) retry(ctx context.Context, what string, fn func() error) error {
	return retry.Loop{Backoff: retryBackoff, Log: s.log, Message: "nats write failed, retrying", Permanent: isFinal,
		Failing: &s.failing}.Do(ctx, what, fn)
}

// isFinal reports whether err ends a retry: a rejection, a closed sink or a configuration error.
func isFinal(err error) bool {
	return errors.Is(err, ErrPublish) || errors.Is(err, ErrClosed) || errors.Is(err, ErrConfig)
}

// Health reports the failure the sink is retrying (a broker refusing or unreachable, with since
// when), or nil while its requests succeed. Safe for concurrent use.
func (s *Sink) Health() error { return redact.Brokers.Err(s.failing.Err()) }

// retryBackoff is the wait between attempts of a failed request.
var retryBackoff = backoff.Policy{Min: 50 * time.Millisecond, Max: 2 * time.Second}
