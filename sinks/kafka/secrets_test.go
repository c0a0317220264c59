package kafka

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pgstream/pgstream/internal/kafkatest"
	"github.com/pgstream/pgstream/internal/logtest"
	"github.com/pgstream/pgstream/sinks"
)

// A wrong SASL password gives an error that says to check kafka.sasl and never quotes the
// password, neither in the errors of Ping and Write nor in a debug log.
func TestSASLPasswordIsNeverQuoted(t *testing.T) {
	const secret = "Wr0ng-Kafka-Pa55"
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			_, brokers := kafkatest.StartCluster(t, kfake.EnableSASL(), kfake.Superuser(mech, "pg", "right-password"),
				kfake.SeedTopics(1, "pgstream.public.auth"))
			log, out := logtest.Debug()
			s, err := New(Config{Brokers: brokers, MaxRetries: 2, WriteTimeout: 5 * time.Second,
				SASL: SASLConfig{Mechanism: mech, Username: "pg", Password: secret}}, sinks.Env{Log: log})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			perr := s.Ping(ctx)
			if perr == nil || !strings.Contains(perr.Error(), "kafka.sasl") {
				t.Fatalf("Ping with a wrong password = %v, want an error naming kafka.sasl", perr)
			}
			b := rowEvents("public", "auth", 1, 3, 0x100000)[0]
			werr := s.Write(ctx, &b)
			if werr == nil {
				t.Fatal("Write with a wrong password succeeded")
			}
			t.Logf("Ping: %v\nWrite: %v\nlog:\n%s", perr, werr, out.String())
			for what, text := range map[string]string{"Ping": perr.Error(), "Write": werr.Error(), "log": out.String()} {
				if strings.Contains(text, secret) {
					t.Errorf("%s quotes the password: %s", what, text)
				}
			}
		})
	}
}

// Check reports a fixed topic that Ping would create, and creates nothing.
func TestCheckCreatesNothing(t *testing.T) {
	brokers := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "pgstream.fixed"
	s := newSink(t, Config{Brokers: brokers, Topic: topic, AutoCreate: AutoCreateConfig{Enabled: true}})
	for i := 0; i < 2; i++ { // the second Check finds the topic still missing
		note, err := s.Check(ctx)
		if err != nil || note != "topic "+topic+" missing; run would create it (auto_create.enabled: true)" {
			t.Fatalf("Check %d = %q, %v; want a note that run would create the topic", i, note, err)
		}
	}
	strict := newSink(t, Config{Brokers: brokers, Topic: topic})
	if _, err := strict.Check(ctx); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("Check without auto_create = %v, want ErrUnknownTopic", err)
	}
	kafkatest.CreateTopic(t, brokers, topic, 1)
	if note, err := s.Check(ctx); err != nil || note != "" {
		t.Fatalf("Check of an existing topic = %q, %v", note, err)
	}
}
