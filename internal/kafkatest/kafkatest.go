package kafkatest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Start starts a one-broker cluster and returns its bootstrap addresses.
func Start(t testing.TB) []string {
	t.Helper()
	_, brokers := StartCluster(t)
	return brokers
}

// StartCluster starts a one-broker cluster with extra options and returns it, for tests that
// inject faults with ControlKey, and its bootstrap addresses. The cluster is closed at cleanup.
func StartCluster(t testing.TB, opts ...kfake.Opt) (*kfake.Cluster, []string) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

// CreateTopic creates topic with the given number of partitions.
func CreateTopic(t testing.TB, brokers []string, topic string, partitions int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatalf("new kafka client: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req := kmsgCreateTopic(topic, partitions)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("create topic %s: %+v", topic, resp.Topics)
	}
}

// Records reads topic from the start until it has want records, then keeps polling briefly to
// catch records beyond want, and returns everything read in partition-offset order per partition.
// It fails the test when fewer than want records arrive within 60 seconds.
func Records(t testing.TB, brokers []string, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatalf("new kafka consumer: %v", err)
	}
	defer cl.Close()

	var out []*kgo.Record
	deadline := time.Now().Add(60 * time.Second)
	extra := time.Time{}
	for {
		now := time.Now()
		if len(out) >= want && extra.IsZero() {
			extra = now.Add(300 * time.Millisecond)
		}
		if !extra.IsZero() && now.After(extra) {
			return out
		}
		if now.After(deadline) {
			t.Fatalf("topic %s: read %d records, want %d", topic, len(out), want)
		}
		stop := deadline
		if !extra.IsZero() {
			stop = extra
		}
		ctx, cancel := context.WithDeadline(context.Background(), stop)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachError(func(tp string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				t.Fatalf("fetch %s/%d: %v", tp, p, err)
			}
		})
		out = append(out, fs.Records()...)
	}
}

func kmsgCreateTopic(topic string, partitions int32) *kmsg.CreateTopicsRequest {
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic = topic
	rt.NumPartitions = partitions
	rt.ReplicationFactor = 1
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10000
	return req
}

// DeleteTopic deletes topic.
func DeleteTopic(t testing.TB, brokers []string, topic string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatalf("new kafka client: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.TopicNames = []string{topic}
	rt := kmsg.NewDeleteTopicsRequestTopic()
	rt.Topic = &topic
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10000
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("delete topic %s: %v", topic, err)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("delete topic %s: %+v", topic, resp.Topics)
	}
}

// ProduceError answers a produce request with code for every partition it names, as a broker that
// refuses the write does. Tests return it from a kfake ControlKey function.
func ProduceError(req kmsg.Request, code int16) kmsg.Response {
	pr := req.(*kmsg.ProduceRequest)
	resp := pr.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range pr.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
