package kafka_test

import (
	"sync/atomic"
	"testing"

	"github.com/pgstream/pgstream/internal/kafkatest"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/sinks/kafka"
	"github.com/pgstream/pgstream/sinks/sinktest"
)

// The Kafka sink delivers at least once: a batch written again after a crash is in the topic
// twice, with the same pgstream.id headers, and each key's records stay in order in its partition.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an in-process Kafka per subtest")
	}
	var down *atomic.Bool
	const topic = "conformance"
	sinktest.Run(t, sinktest.Harness{
		Delivery:  sinktest.AtLeastOnce,
		KeepsKeys: true,
		New: func(t *testing.T) (func() sinks.Sink, func() []sinktest.Record) {
			c, brokers := kafkatest.StartCluster(t)
			kafkatest.CreateTopic(t, brokers, topic, 3)
			down = new(atomic.Bool)
			kafkatest.RefuseProduce(c, down)
			open := func() sinks.Sink {
				s, err := kafka.New(kafka.Config{Brokers: brokers, Topic: topic}, sinks.Env{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			read := func() []sinktest.Record {
				var out []sinktest.Record
				for _, r := range kafkatest.Records(t, brokers, topic, 0) {
					rec := sinktest.Record{Key: r.Key, Value: r.Value}
					for _, h := range r.Headers {
						if h.Key == kafka.HeaderID {
							rec.ID = string(h.Value)
						}
					}
					out = append(out, rec)
				}
				return out
			}
			return open, read
		},
		Refuse: func(*testing.T) func() {
			d := down
			d.Store(true)
			return func() { d.Store(false) }
		},
	})
}
