package natstest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var nameSeq atomic.Int64

// Names returns a JetStream stream name and a subject prefix for one test, both starting with base
// and unique on a server shared by several test processes: they carry this process's id and a
// sequence number, so two processes that number their databases alike never meet.
func Names(base string) (stream, prefix string) {
	tag := fmt.Sprintf("%s_%d_%d", strings.ToLower(base), os.Getpid(), nameSeq.Add(1))
	return strings.ToUpper(tag), tag
}

// Msg is one message of a stream as Messages reads it.
type Msg struct {
	ID      string // the Nats-Msg-Id header
	Subject string
	Header  nats.Header
	Data    []byte
}

// Messages reads every message of stream on the server at url, in stream order. It fails the test
// when they cannot all be read within 60 seconds.
func Messages(t testing.TB, url, stream string) []Msg {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	total := int(info.State.Msgs)
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	var out []Msg
	for len(out) < total {
		// Asking for no more than is left returns as soon as it has arrived.
		batch, err := c.Fetch(min(1000, total-len(out)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatalf("stream %s: %v", stream, err)
		}
		for m := range batch.Messages() {
			out = append(out, Msg{ID: m.Headers().Get(jetstream.MsgIDHeader), Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
		}
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d messages of %s", len(out), total, stream)
		}
	}
	return out
}
