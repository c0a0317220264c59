package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/pgstream/pgstream/internal/kafkatest"
	"github.com/pgstream/pgstream/lsn"
	"github.com/pgstream/pgstream/sinks"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// rowEvents builds, for each round r and key k, one event: create in round 0, delete in the
// last round, updates between. Each round is its own transaction.
func rowEvents(schema, table string, rounds, keys int, base lsn.LSN) []sinks.Batch {
	var out []sinks.Batch
	for r := 0; r < rounds; r++ {
		op := sinks.OpUpdate
		switch r {
		case 0:
			op = sinks.OpCreate
		case rounds - 1:
			op = sinks.OpDelete
		}
		commit := base + lsn.LSN(r+1)*0x1000
		var b sinks.Batch
		for k := 0; k < keys; k++ {
			b.Events = append(b.Events, sinks.Event{
				Op: op, Schema: schema, Table: table,
				LSN: commit - 0x800 + lsn.LSN(k), CommitLSN: commit, Seq: uint32(k), Xid: uint32(700 + r),
				Key:   fmt.Appendf(nil, `{"id":%d}`, k),
				Value: fmt.Appendf(nil, `{"op":%q,"id":%d,"round":%d}`, string(op), k, r),
			})
		}
		out = append(out, b)
	}
	return out
}

func newSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg, sinks.Env{Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func write(t *testing.T, s *Sink, batches []sinks.Batch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range batches {
		if err := s.Write(ctx, &batches[i]); err != nil {
			t.Fatalf("Write batch %d: %v", i, err)
		}
	}
}

func header(r *kgo.Record, k string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value), true
		}
	}
	return "", false
}

// checkRows checks records of rowEvents: every expected record once, each key on the partition
// the murmur2 partitioner gives, in commit order, with its headers.
func checkRows(t *testing.T, recs []*kgo.Record, batches []sinks.Batch, nparts int, tombstones bool) {
	t.Helper()
	want := 0
	type exp struct {
		ev        sinks.Event
		tombstone bool
	}
	perKey := map[string][]exp{}
	for _, b := range batches {
		for _, ev := range b.Events {
			perKey[string(ev.Key)] = append(perKey[string(ev.Key)], exp{ev: ev})
			want++
			if tombstones && ev.Op == sinks.OpDelete {
				perKey[string(ev.Key)] = append(perKey[string(ev.Key)], exp{ev: ev, tombstone: true})
				want++
			}
		}
	}
	if len(recs) != want {
		t.Fatalf("read %d records, want %d", len(recs), want)
	}
	got := map[string][]*kgo.Record{}
	for _, r := range recs {
		got[string(r.Key)] = append(got[string(r.Key)], r)
	}
	for key, exps := range perKey {
		rs := got[key]
		if len(rs) != len(exps) {
			t.Fatalf("key %s: %d records, want %d", key, len(rs), len(exps))
		}
		wantPart := int32(partitionOf([]byte(key), nparts))
		for i, r := range rs {
			e := exps[i]
			if r.Partition != wantPart {
				t.Errorf("key %s record %d on partition %d, want %d", key, i, r.Partition, wantPart)
			}
			if i > 0 && r.Offset <= rs[i-1].Offset {
				t.Errorf("key %s: offsets not increasing", key)
			}
			if e.tombstone {
				if r.Value != nil {
					t.Errorf("key %s: tombstone value %q, want null", key, r.Value)
				}
			} else if string(r.Value) != string(e.ev.Value) {
				t.Errorf("key %s record %d: value %s, want %s", key, i, r.Value, e.ev.Value)
			}
			for _, h := range []struct{ k, v string }{
				{HeaderID, e.ev.ID()},
				{HeaderOp, e.ev.Op.String()},
				{HeaderLSN, e.ev.LSN.String()},
				{HeaderCommitLSN, e.ev.CommitLSN.String()},
			} {
				if v, ok := header(r, h.k); !ok || v != h.v {
					t.Errorf("key %s record %d: header %s = %q (present %v), want %q", key, i, h.k, v, ok, h.v)
				}
			}
		}
	}
}

func TestWriteRoundTrip(t *testing.T) {
	brokers := kafkatest.Start(t)
	kafkatest.CreateTopic(t, brokers, "pgstream.public.items", 4)
	// Small batches force many chunks per Write.
	s := newSink(t, Config{Brokers: brokers, BatchSize: 7, BatchBytes: 4096, MaxInFlightBytes: 16 << 10})
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	batches := rowEvents("public", "items", 4, 60, 0x1_0000_0000)
	batches = append(batches, sinks.Batch{}) // an empty batch only carries progress
	write(t, s, batches)
	recs := kafkatest.Records(t, brokers, "pgstream.public.items", 240)
	checkRows(t, recs, batches, 4, false)
}

func TestTombstones(t *testing.T) {
	brokers := kafkatest.Start(t)
	kafkatest.CreateTopic(t, brokers, "pgstream.public.gone", 3)
	s := newSink(t, Config{Brokers: brokers, Tombstones: true})
	batches := rowEvents("public", "gone", 2, 20, 0x100000)
	write(t, s, batches)
	recs := kafkatest.Records(t, brokers, "pgstream.public.gone", 60)
	checkRows(t, recs, batches, 3, true)
}

func TestFixedTopicAndTemplate(t *testing.T) {
	brokers := kafkatest.Start(t)
	kafkatest.CreateTopic(t, brokers, "all-changes", 2)
	kafkatest.CreateTopic(t, brokers, "cdc_app.orders_v__", 1)

	fixed := newSink(t, Config{Brokers: brokers, Topic: "all-changes"})
	a := rowEvents("public", "a", 1, 5, 0x100000)
	b := rowEvents("other", "b", 1, 5, 0x200000)
	write(t, fixed, append(a, b...))
	recs := kafkatest.Records(t, brokers, "all-changes", 10)
	if len(recs) != 10 {
		t.Fatalf("fixed topic: %d records, want 10", len(recs))
	}

	// The template's names are sanitized: ' ' and 'ü' become '_'.
	tmpl := newSink(t, Config{Brokers: brokers, TopicTemplate: "cdc_{prefix}.{table}_{schema}", TopicPrefix: "app"})
	c := rowEvents("ü", "orders v", 1, 3, 0x300000)
	write(t, tmpl, c)
	recs = kafkatest.Records(t, brokers, "cdc_app.orders_v__", 3)
	checkRows(t, recs, c, 1, false)
}

func TestAutoCreate(t *testing.T) {
	brokers := kafkatest.Start(t)
	s := newSink(t, Config{Brokers: brokers, AutoCreate: AutoCreateConfig{Enabled: true, Partitions: 3, ReplicationFactor: 1}})
	batches := rowEvents("public", "fresh", 3, 30, 0x100000)
	write(t, s, batches)
	recs := kafkatest.Records(t, brokers, "pgstream.public.fresh", 90)
	checkRows(t, recs, batches, 3, false)
	if s.known["pgstream.public.fresh"] != 3 {
		t.Fatalf("created topic has %d partitions, want 3", s.known["pgstream.public.fresh"])
	}
}

func TestMissingTopicWithoutAutoCreate(t *testing.T) {
	brokers := kafkatest.Start(t)
	s := newSink(t, Config{Brokers: brokers})
	batches := rowEvents("public", "absent", 1, 2, 0x100000)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := s.Write(ctx, &batches[0])
	if !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("Write = %v, want ErrUnknownTopic", err)
	}
	var ke *Error
	if !errors.As(err, &ke) || len(ke.Topics) != 1 || ke.Topics[0] != "pgstream.public.absent" {
		t.Fatalf("Write error %v does not name the topic", err)
	}
	if !strings.Contains(err.Error(), "kafka.auto_create.enabled") {
		t.Errorf("error %q does not name the fix", err)
	}
	// Ping checks a fixed topic the same way.
	p := newSink(t, Config{Brokers: brokers, Topic: "nope"})
	if err := p.Ping(ctx); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("Ping = %v, want ErrUnknownTopic", err)
	}
}

func TestCompression(t *testing.T) {
	brokers := kafkatest.Start(t)
	for _, c := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(c, func(t *testing.T) {
			topic := "z." + c
			kafkatest.CreateTopic(t, brokers, topic, 2)
			s := newSink(t, Config{Brokers: brokers, Topic: topic, Compression: c})
			batches := rowEvents("public", "z", 2, 25, 0x100000)
			write(t, s, batches)
			checkRows(t, kafkatest.Records(t, brokers, topic, 50), batches, 2, false)
		})
	}
}

func TestPingUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := newSink(t, Config{Brokers: []string{addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = s.Ping(ctx)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Ping = %v, want ErrUnreachable naming %s", err, addr)
	}
}

// failProduce makes the cluster answer the next n produce requests with code for every
// partition, and counts them.
func failProduce(c *kfake.Cluster, n int32, code int16, count *atomic.Int32) {
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if count.Add(1) >= n {
			c.DropControl() // takes precedence over KeepControl
		}
		return kafkatest.ProduceError(req, code), nil, true
	})
}

func TestTransientProduceFailures(t *testing.T) {
	c, brokers := kafkatest.StartCluster(t)
	kafkatest.CreateTopic(t, brokers, "pgstream.public.flaky", 4)
	var count atomic.Int32
	// Each produce request carries one partition, so the first failures hit some partitions of
	// a chunk and not others.
	failProduce(c, 5, kerr.NotEnoughReplicas.Code, &count)
	s := newSink(t, Config{Brokers: brokers, BatchSize: 10})
	batches := rowEvents("public", "flaky", 3, 40, 0x100000)
	write(t, s, batches)
	if got := count.Load(); got != 5 {
		t.Fatalf("%d produce requests failed, want 5", got)
	}
	checkRows(t, kafkatest.Records(t, brokers, "pgstream.public.flaky", 120), batches, 4, false)
}

func TestPermanentAndExhausted(t *testing.T) {
	c, brokers := kafkatest.StartCluster(t)
	kafkatest.CreateTopic(t, brokers, "pgstream.public.denied", 1)
	var count atomic.Int32
	failProduce(c, 1, kerr.TopicAuthorizationFailed.Code, &count)
	s := newSink(t, Config{Brokers: brokers})
	batches := rowEvents("public", "denied", 1, 3, 0x100000)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := s.Write(ctx, &batches[0])
	var ke *Error
	if !errors.As(err, &ke) || ke.Topics[0] != "pgstream.public.denied" || !strings.Contains(err.Error(), "WRITE") {
		t.Fatalf("Write = %v, want a permanent *Error naming the topic and the fix", err)
	}

	var count2 atomic.Int32
	failProduce(c, 1000, kerr.LeaderNotAvailable.Code, &count2)
	r := newSink(t, Config{Brokers: brokers, MaxRetries: 2})
	err = r.Write(ctx, &batches[0])
	if !errors.Is(err, ErrRetriesExhausted) {
		t.Fatalf("Write = %v, want ErrRetriesExhausted", err)
	}
	if got := count2.Load(); got != 3 {
		t.Errorf("%d produce attempts, want 3", got)
	}
}

func TestContextEndsRetry(t *testing.T) {
	c, brokers := kafkatest.StartCluster(t)
	kafkatest.CreateTopic(t, brokers, "pgstream.public.stuck", 1)
	var count atomic.Int32
	failProduce(c, 1<<30, kerr.RequestTimedOut.Code, &count)
	s := newSink(t, Config{Brokers: brokers})
	batches := rowEvents("public", "stuck", 1, 3, 0x100000)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := s.Write(ctx, &batches[0]); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Write = %v, want context.DeadlineExceeded", err)
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Brokers: []string{"k:9092"}}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		bad  bool
	}{
		{"defaults", func(*Config) {}, false},
		{"no brokers", func(c *Config) { c.Brokers = nil }, true},
		{"empty broker", func(c *Config) { c.Brokers = []string{" "} }, true},
		{"acks one", func(c *Config) { c.RequiredAcks = "one" }, false},
		{"acks bad", func(c *Config) { c.RequiredAcks = "two" }, true},
		{"compression bad", func(c *Config) { c.Compression = "brotli" }, true},
		{"topic dotdot", func(c *Config) { c.Topic = ".." }, true},
		{"topic long", func(c *Config) { c.Topic = strings.Repeat("x", 250) }, true},
		{"negative batch", func(c *Config) { c.BatchSize = -1 }, true},
		{"negative retries", func(c *Config) { c.MaxRetries = -1 }, true},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "c.pem" }, true},
		{"sasl unknown", func(c *Config) { c.SASL.Mechanism = "GSSAPI" }, true},
		{"sasl no user", func(c *Config) { c.SASL.Mechanism = "PLAIN" }, true},
		{"sasl scram", func(c *Config) { c.SASL = SASLConfig{Mechanism: "SCRAM-SHA-512", Username: "u"} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.Validate()
			if (err != nil) != tc.bad {
				t.Fatalf("Validate = %v, want error %v", err, tc.bad)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
		})
	}
}

func TestRenderTopic(t *testing.T) {
	for _, tc := range []struct{ tmpl, prefix, schema, table, want string }{
		{DefaultTopicTemplate, "pgstream", "public", "users", "pgstream.public.users"},
		{DefaultTopicTemplate, "p", "My Schema", "tä/b", "p.My_Schema.t__b"},
		{DefaultTopicTemplate, "p", "", "", "p._._"},
		{"{table}", "p", "s", "a-b_c.d", "a-b_c.d"},
		{"x{prefix}{prefix}", "q", "s", "t", "xqq"},
		{"{unknown}.{table}", "q", "s", "t", "_unknown_.t"},
	} {
		if got := renderTopic(tc.tmpl, tc.prefix, tc.schema, tc.table); got != tc.want {
			t.Errorf("renderTopic(%q, %q, %q, %q) = %q, want %q", tc.tmpl, tc.prefix, tc.schema, tc.table, got, tc.want)
		}
	}
}

// TestMurmur2 checks the hash against the values of Kafka's Java client.
func TestMurmur2(t *testing.T) {
	for in, want := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		if got := int32(murmur2([]byte(in))); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", in, got, want)
		}
	}
}

func BenchmarkWrite(b *testing.B) {
	brokers := kafkatest.Start(b)
	kafkatest.CreateTopic(b, brokers, "pgstream.public.bench", 8)
	s, err := New(Config{Brokers: brokers}, sinks.Env{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	value := []byte(`{"op":"u","source":{"lsn":"0/0"},"after":{"payload":"` + strings.Repeat("x", 240) + `"}}`)
	var batch sinks.Batch
	for k := 0; k < 1000; k++ {
		batch.Events = append(batch.Events, sinks.Event{
			Op: sinks.OpUpdate, Schema: "public", Table: "bench", CommitLSN: 0x100000, Seq: uint32(k),
			Key: []byte(`{"id":` + strconv.Itoa(k) + `}`), Value: value,
		})
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Write(ctx, &batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch.Events))/b.Elapsed().Seconds(), "events/s")
}

func TestSASL(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			_, brokers := kafkatest.StartCluster(t, kfake.EnableSASL(), kfake.Superuser(mech, "pg", "secret"),
				kfake.SeedTopics(2, "pgstream.public.auth"))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()

			s := newSink(t, Config{Brokers: brokers, SASL: SASLConfig{Mechanism: mech, Username: "pg", Password: "secret"}})
			if err := s.Ping(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			batches := rowEvents("public", "auth", 1, 10, 0x100000)
			if err := s.Write(ctx, &batches[0]); err != nil {
				t.Fatalf("Write: %v", err)
			}

			bad := newSink(t, Config{Brokers: brokers, SASL: SASLConfig{Mechanism: mech, Username: "pg", Password: "wrong"}})
			err := bad.Ping(ctx)
			// kfake closes the connection on a failed authentication, as some brokers do.
			if err == nil || !strings.Contains(err.Error(), "kafka.sasl") {
				t.Fatalf("Ping with a wrong password = %v, want an authentication error naming kafka.sasl", err)
			}
		})
	}
}

// TestMaxInFlightBytes checks that no produce request carries more than MaxInFlightBytes of
// records: with one partition every chunk is one request.
func TestMaxInFlightBytes(t *testing.T) {
	c, brokers := kafkatest.StartCluster(t, kfake.SeedTopics(1, "pgstream.public.bounded"))
	var requests, maxBytes atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		requests.Add(1)
		for _, rt := range req.(*kmsg.ProduceRequest).Topics {
			for _, rp := range rt.Partitions {
				if n := int64(len(rp.Records)); n > maxBytes.Load() {
					maxBytes.Store(n)
				}
			}
		}
		return nil, nil, false // observe only
	})
	const limit = 4096
	s := newSink(t, Config{Brokers: brokers, MaxInFlightBytes: limit})
	batches := rowEvents("public", "bounded", 2, 100, 0x100000)
	write(t, s, batches)
	checkRows(t, kafkatest.Records(t, brokers, "pgstream.public.bounded", 200), batches, 1, false)
	t.Logf("%d produce requests, largest %d bytes of records", requests.Load(), maxBytes.Load())
	if maxBytes.Load() > limit {
		t.Errorf("a produce request carried %d bytes of records, more than %d", maxBytes.Load(), limit)
	}
	if requests.Load() < 4 {
		t.Errorf("%d produce requests for 200 records bounded to %d bytes in flight", requests.Load(), limit)
	}
}

func TestTopicDeletedWhileRunning(t *testing.T) {
	brokers := kafkatest.Start(t)
	kafkatest.CreateTopic(t, brokers, "pgstream.public.vanish", 2)
	s := newSink(t, Config{Brokers: brokers})
	batches := rowEvents("public", "vanish", 2, 5, 0x100000)
	write(t, s, batches[:1])
	kafkatest.DeleteTopic(t, brokers, "pgstream.public.vanish")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Write(ctx, &batches[1]); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("Write = %v, want ErrUnknownTopic", err)
	}
}

func TestRecordTooLarge(t *testing.T) {
	brokers := kafkatest.Start(t)
	kafkatest.CreateTopic(t, brokers, "pgstream.public.big", 1)
	s := newSink(t, Config{Brokers: brokers, BatchBytes: 1024})
	batches := rowEvents("public", "big", 1, 3, 0x100000)
	batches[0].Events[1].Value = []byte(`"` + strings.Repeat("x", 2000) + `"`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := s.Write(ctx, &batches[0])
	var ke *Error
	if !errors.As(err, &ke) || ke.Topics[0] != "pgstream.public.big" || !strings.Contains(err.Error(), "kafka.batch_bytes") {
		t.Fatalf("Write = %v, want a permanent *Error naming the topic and kafka.batch_bytes", err)
	}
}

func TestRequiredAcks(t *testing.T) {
	brokers := kafkatest.Start(t)
	for _, acks := range []string{"all", "one", "none"} {
		t.Run(acks, func(t *testing.T) {
			topic := "acks." + acks
			kafkatest.CreateTopic(t, brokers, topic, 2)
			s := newSink(t, Config{Brokers: brokers, Topic: topic, RequiredAcks: acks})
			batches := rowEvents("public", "a", 2, 20, 0x100000)
			write(t, s, batches)
			recs := kafkatest.Records(t, brokers, topic, 40)
			if acks == "none" {
				checkRowsAnyOrder(t, recs, batches)
				return
			}
			checkRows(t, recs, batches, 2, false)
		})
	}
}

// checkRowsAnyOrder checks records written with required_acks none, where the records of one key
// that successive writes sent may land in any order (nothing waits for the broker between them):
// every event is there exactly once, with its value.
func checkRowsAnyOrder(t *testing.T, recs []*kgo.Record, batches []sinks.Batch) {
	t.Helper()
	want := map[string]string{}
	for _, b := range batches {
		for _, ev := range b.Events {
			want[ev.ID()] = string(ev.Value)
		}
	}
	if len(recs) != len(want) {
		t.Fatalf("read %d records, want %d", len(recs), len(want))
	}
	for _, r := range recs {
		id, _ := header(r, HeaderID)
		v, ok := want[id]
		if !ok {
			t.Fatalf("record with id %q: not written, or read twice", id)
		}
		if v != string(r.Value) {
			t.Errorf("record %s: value %s, want %s", id, r.Value, v)
		}
		delete(want, id)
	}
}

// TestPingCreatesFixedTopic is the first start with a fixed topic that does not exist yet and
// auto_create on: Ping creates it and waits until its metadata can be read.
func TestPingCreatesFixedTopic(t *testing.T) {
	brokers := kafkatest.Start(t)
	s := newSink(t, Config{Brokers: brokers, Topic: "cdc.fixed", AutoCreate: AutoCreateConfig{Enabled: true, Partitions: 2, ReplicationFactor: 1}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping with a missing fixed topic and auto_create: %v", err)
	}
	if s.known["cdc.fixed"] != 2 {
		t.Fatalf("created topic has %d partitions, want 2", s.known["cdc.fixed"])
	}
}
