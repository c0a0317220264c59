package kafkatest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
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

// Records returns every record of topic, in offset order per partition. It takes each partition's
// end offset (its high-water mark) and reads every partition from the start up to it: call it once
// the writer has acknowledged what the test expects, or has stopped. While the end offsets add up
// to fewer than want records, it takes them again. A reader that stopped at a count would be
// wrong when a topic may hold duplicates (at-least-once delivery after a crash): it would return
// before the last versions of some keys. It fails the test, naming each partition's end and how far
// it was read, when the topic does not reach want records or cannot be read within 60 seconds.
func Records(t testing.TB, brokers []string, topic string, want int) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatalf("new kafka client: %v", err)
	}
	defer admin.Close()
	ends, err := endOffsets(ctx, admin, topic)
	for err == nil && total(ends) < int64(want) {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("its partitions end at %v: %d records, want at least %d", ends, total(ends), want)
		case <-time.After(100 * time.Millisecond):
			ends, err = endOffsets(ctx, admin, topic)
		}
	}
	if err != nil {
		t.Fatalf("topic %s: %v", topic, err)
	}
	recs, err := readTo(ctx, brokers, topic, ends)
	if err != nil {
		t.Fatalf("topic %s: %v", topic, err)
	}
	return recs
}

// endOffsets returns the end offset of every partition of topic.
func endOffsets(ctx context.Context, cl *kgo.Client, topic string) (map[int32]int64, error) {
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	meta.Topics = append(meta.Topics, mt)
	mresp, err := meta.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	if len(mresp.Topics) != 1 {
		return nil, fmt.Errorf("metadata names %d topics", len(mresp.Topics))
	}
	if code := mresp.Topics[0].ErrorCode; code != 0 {
		if code == kerr.UnknownTopicOrPartition.Code {
			return map[int32]int64{}, nil // not created yet: no records
		}
		return nil, fmt.Errorf("metadata: %w", kerr.ErrorForCode(code))
	}
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	for _, p := range mresp.Topics[0].Partitions {
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Partition = p.Partition
		lp.Timestamp = -1 // the end
		lt.Partitions = append(lt.Partitions, lp)
	}
	req.Topics = append(req.Topics, lt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	ends := map[int32]int64{}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if rp.ErrorCode != 0 {
				return nil, fmt.Errorf("list offsets of partition %d: %w", rp.Partition, kerr.ErrorForCode(rp.ErrorCode))
			}
			ends[rp.Partition] = rp.Offset
		}
	}
	return ends, nil
}

func total(ends map[int32]int64) int64 {
	var n int64
	for _, e := range ends {
		n += e
	}
	return n
}

// readTo reads every partition of topic from the start until it has read the record before its
// end offset in ends.
func readTo(ctx context.Context, brokers []string, topic string, ends map[int32]int64) ([]*kgo.Record, error) {
	from := map[int32]kgo.Offset{}
	next := map[int32]int64{}
	for p, end := range ends {
		if end > 0 {
			from[p] = kgo.NewOffset().AtStart()
			next[p] = 0
		}
	}
	if len(from) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	if err != nil {
		return nil, fmt.Errorf("new kafka consumer: %w", err)
	}
	defer cl.Close()
	var out []*kgo.Record
	unread := func() bool {
		for p, n := range next {
			if n < ends[p] {
				return true
			}
		}
		return false
	}
	for unread() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read %d records by the deadline: partitions end at %v, read up to %v", len(out), ends, next)
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) { ferr = fmt.Errorf("fetch partition %d: %w", p, err) })
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < ends[r.Partition] {
				out = append(out, r)
				next[r.Partition] = r.Offset + 1
			}
		})
	}
	return out, nil
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

// RefuseProduce makes c answer every produce request with NOT_ENOUGH_REPLICAS, a retryable error,
// while down is set.
func RefuseProduce(c *kfake.Cluster, down *atomic.Bool) {
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !down.Load() {
			return nil, nil, false
		}
		return ProduceError(req, kerr.NotEnoughReplicas.Code), nil, true
	})
}
