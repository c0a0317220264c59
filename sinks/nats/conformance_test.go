package nats_test

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pgstream/pgstream/internal/natstest"
	"github.com/pgstream/pgstream/sinks"
	natssink "github.com/pgstream/pgstream/sinks/nats"
	"github.com/pgstream/pgstream/sinks/sinktest"
)

// The NATS sink delivers exactly once within the stream's duplicate window: JetStream drops a
// message whose Nats-Msg-Id (the event id) it holds already.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server per subtest")
	}
	var srv *server.Server
	sinktest.Run(t, sinktest.Harness{
		Delivery: sinktest.ExactlyOnce,
		New: func(t *testing.T) (func() sinks.Sink, func() []sinktest.Record) {
			s := natstest.StartEmbedded(t)
			srv = s
			url := s.ClientURL()
			stream, prefix := natstest.Names("conformance")
			open := func() sinks.Sink {
				sk, err := natssink.New(natssink.Config{Servers: []string{url}, SubjectPrefix: prefix,
					Stream: natssink.StreamConfig{Name: stream, Create: true}}, sinks.Env{})
				if err != nil {
					t.Fatal(err)
				}
				return sk
			}
			read := func() []sinktest.Record {
				var out []sinktest.Record
				for _, m := range natstest.Messages(t, srv.ClientURL(), stream) {
					out = append(out, sinktest.Record{ID: m.ID, Value: m.Data})
				}
				return out
			}
			// The stream is created by Ping, as pgstream run does before the first write.
			return func() sinks.Sink {
				sk := open()
				if p, ok := sk.(sinks.Pinger); ok {
					if err := p.Ping(t.Context()); err != nil {
						t.Fatal(err)
					}
				}
				return sk
			}, read
		},
		Refuse: func(t *testing.T) func() {
			natstest.Stop(srv)
			return func() { srv = natstest.Restart(t, srv) }
		},
	})
}
