package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgstream/pgstream/internal/health"
	"github.com/pgstream/pgstream/internal/kafkatest"
	"github.com/pgstream/pgstream/internal/natstest"
	"github.com/pgstream/pgstream/internal/pipeline"
	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/sinks/kafka"
	natssink "github.com/pgstream/pgstream/sinks/nats"
)

type natsMsg struct {
	id    string
	subj  string
	event event
}

// streamMessages reads every message of a JetStream stream, in stream order.
func streamMessages(t testing.TB, url, stream string) []natsMsg {
	t.Helper()
	var out []natsMsg
	for _, m := range natstest.Messages(t, url, stream) {
		var e event
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Fatalf("bad payload %q: %v", m.Data, err)
		}
		e.Raw = string(m.Data)
		out = append(out, natsMsg{id: m.ID, subj: m.Subject, event: e})
	}
	return out
}

func deleteStream(url, stream string) {
	nc, err := nats.Connect(url)
	if err != nil {
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = js.DeleteStream(ctx, stream)
}

func streamCount(t testing.TB, url, stream string) int {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(time.Second))
	if err != nil {
		return -1
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

// waitStreamCount waits until the stream holds at least want messages.
func waitStreamCount(t testing.TB, url, stream string, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := streamCount(t, url, stream)
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s holds %d messages after %s, want %d", stream, n, timeout, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func newNATSSink(t testing.TB, url, prefix, stream string, include, exclude []string) pipeline.SinkSpec {
	t.Helper()
	s, err := natssink.New(natssink.Config{Servers: []string{url}, SubjectPrefix: prefix,
		Stream: natssink.StreamConfig{Name: stream, Create: true}}, sinks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteStream(url, stream) })
	f, err := pipeline.NewFilter(include, exclude)
	if err != nil {
		t.Fatal(err)
	}
	return pipeline.SinkSpec{Name: "nats", Sink: s, Filter: f}
}

// Several sinks at once, each with its own filter; transaction markers on.
func TestFanOutToKafkaNATSAndFile(t *testing.T) {
	db := newDB(t)
	exec1(t, db, `CREATE TABLE orders (id int PRIMARY KEY, v int); CREATE TABLE customers (id int PRIMARY KEY, name text)`)
	brokers := kafkatest.Start(t)
	url := natstest.URL(t)
	stream, prefix := natstest.Names("fan")
	ks, err := kafka.New(kafka.Config{Brokers: brokers, TopicPrefix: prefix,
		AutoCreate: kafka.AutoCreateConfig{Enabled: true, Partitions: 3, ReplicationFactor: 1}}, sinks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	onlyOrders, _ := pipeline.NewFilter([]string{"public.orders"}, nil)
	nspec := newNATSSink(t, url, prefix, stream, nil, []string{"orders"})
	r := startPipeline(t, db, runOpts{
		extra: []pipeline.SinkSpec{{Name: "kafka", Sink: ks, Filter: onlyOrders}, nspec},
		pcfg:  pipeline.Config{TransactionMarkers: true},
	})
	r.waitStreaming()
	const n = 30
	for i := 1; i <= n; i++ {
		sql := fmt.Sprintf(`BEGIN; INSERT INTO orders VALUES (%d, 0); INSERT INTO customers VALUES (%d, 'c%d'); UPDATE orders SET v = 1 WHERE id = %d;`, i, i, i, i)
		if i > 1 {
			sql += fmt.Sprintf(`DELETE FROM customers WHERE id = %d;`, i-1)
		}
		exec1(t, db, sql+"COMMIT")
	}
	// File: every change plus a begin and an end marker per transaction.
	wantFile := n*3 + (n - 1) + 2*n
	evs := waitEvents(t, r.path, 60*time.Second, atLeast(wantFile))
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	evs = readEvents(t, r.path)
	if len(evs) != wantFile {
		t.Fatalf("file has %d events, want %d", len(evs), wantFile)
	}
	if evs[0].Op != "b" || evs[len(evs)-1].Op != "e" || !strings.HasSuffix(evs[0].ID, "/b") {
		t.Fatalf("markers: first %s last %s", evs[0].Raw, evs[len(evs)-1].Raw)
	}
	if !strings.Contains(evs[4].Raw, `"event_count":3`) {
		t.Fatalf("first end marker: %s", evs[4].Raw)
	}

	// Kafka: only orders, keyed by the primary key, insert before update on every key.
	recs := kafkatest.Records(t, brokers, prefix+".public.orders", 2*n)
	if len(recs) != 2*n {
		t.Fatalf("kafka has %d records, want %d", len(recs), 2*n)
	}
	perKey := map[string][]string{}
	partOf := map[string]int32{}
	for _, rec := range recs {
		var e event
		if err := json.Unmarshal(rec.Value, &e); err != nil {
			t.Fatal(err)
		}
		k := string(rec.Key)
		if p, ok := partOf[k]; ok && p != rec.Partition {
			t.Fatalf("key %s on partitions %d and %d", k, p, rec.Partition)
		}
		partOf[k] = rec.Partition
		perKey[k] = append(perKey[k], e.Op)
		if hdr(rec, "pgstream.id") != e.ID {
			t.Fatalf("header id %q, event id %q", hdr(rec, "pgstream.id"), e.ID)
		}
	}
	for i := 1; i <= n; i++ {
		k := fmt.Sprintf(`{"id":%d}`, i)
		if got := strings.Join(perKey[k], ""); got != "cu" {
			t.Fatalf("key %s: ops %q, want cu", k, got)
		}
	}

	// NATS: everything but orders, each once.
	msgs := streamMessages(t, url, strings.ToUpper(prefix))
	wantNATS := n + (n - 1) + 2*n
	if len(msgs) != wantNATS {
		t.Fatalf("nats has %d messages, want %d", len(msgs), wantNATS)
	}
	for _, m := range msgs {
		if m.event.Source.Table == "orders" {
			t.Fatalf("excluded table reached NATS: %s", m.event.Raw)
		}
		if m.id != m.event.ID {
			t.Fatalf("Nats-Msg-Id %q != id %q", m.id, m.event.ID)
		}
	}
}

func hdr(r *kgo.Record, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// The broker goes away for longer than wal_sender_timeout while changes keep coming: nothing is
// lost, nothing crashes, memory stays bounded, and the replication session survives.
func TestNATSOutageLongerThanWalSenderTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	db := newDB(t)
	exec1(t, db, `CREATE TABLE t (id int PRIMARY KEY, pad text)`)
	srv := natstest.StartEmbedded(t)
	url := srv.ClientURL()
	stream, prefix := natstest.Names("out")
	nspec := newNATSSink(t, url, prefix, stream, nil, nil)
	r := startPipeline(t, db, runOpts{extra: []pipeline.SinkSpec{nspec}})
	r.waitStreaming()
	exec1(t, db, `INSERT INTO t SELECT g, 'before' FROM generate_series(1, 100) g`)
	waitStreamCount(t, url, stream, 100, 60*time.Second)
	_, pidBefore := slotState(t, r.slot)

	natstest.Stop(srv)
	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	const rows = 60000 // ~30 MB of events, more than the in-flight bound and the reconnect buffer
	exec1(t, db, fmt.Sprintf(`INSERT INTO t SELECT g, repeat('p', 400) FROM generate_series(101, %d) g`, 100+rows))
	var peak uint64
	for end := time.Now().Add(2 * walSenderTimeout); time.Now().Before(end); {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc)
		time.Sleep(100 * time.Millisecond)
	}
	srv = natstest.Restart(t, srv)
	defer natstest.Stop(srv)

	waitStreamCount(t, url, stream, 100+rows, 300*time.Second)
	if err := r.stop(); err != nil {
		t.Fatalf("pipeline failed across the outage: %v", err)
	}
	msgs := streamMessages(t, url, stream)
	ids := map[string]bool{}
	for _, m := range msgs {
		ids[m.id] = true
	}
	if len(msgs) != 100+rows || len(ids) != 100+rows {
		t.Fatalf("stream holds %d messages (%d distinct), want %d each", len(msgs), len(ids), 100+rows)
	}
	_, pidAfter := slotState(t, r.slot)
	if pidAfter != "" && pidAfter != pidBefore {
		t.Fatalf("walsender changed from %s to %s during the outage", pidBefore, pidAfter)
	}
	growth := int64(peak) - int64(base.HeapAlloc)
	t.Logf("heap grew by %.1f MiB during the outage", float64(growth)/(1<<20))
	if growth > 64<<20 {
		t.Fatalf("heap grew by %d MiB while the broker was down: not bounded", growth>>20)
	}
}

// SIGKILLs with Kafka and NATS as sinks: JetStream ends up with each change exactly once, Kafka
// with each at least once and in order per key.
func TestSIGKILLWithKafkaAndNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	db := newDB(t)
	exec1(t, db, `CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL)`)
	slot := "kill_" + db
	exec1(t, db, fmt.Sprintf(`CREATE PUBLICATION pgs_%s FOR ALL TABLES`, slot))
	exec1(t, db, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, slot))
	brokers := kafkatest.Start(t)
	url := natstest.URL(t)
	stream, prefix := natstest.Names("kill")
	t.Cleanup(func() { deleteStream(url, stream) })
	dir := t.TempDir()
	cfg := writeConfig(t, dir, db, slot, fmt.Sprintf(`  - type: kafka
    brokers: [%s]
    topic_prefix: %s
    auto_create: {enabled: true, partitions: 4, replication_factor: 1}
  - type: nats
    servers: [%s]
    subject_prefix: %s
    stream: {name: %s, create: true, duplicate_window: 5m}
`, strings.Join(brokers, ","), prefix, url, prefix, stream))
	next := 1
	wl := sqlWorkload(t, cluster, db, 2*time.Millisecond, func(int) (string, func()) {
		sql := "BEGIN;"
		for j := 0; j < 5; j++ {
			sql += fmt.Sprintf("INSERT INTO items VALUES (%d, 0);", next)
			next++
		}
		return sql + "UPDATE items SET v = v + 1 WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT 5);COMMIT;", nil
	})
	// Each round kills pgstream at a random moment after it has stored changes of its own: a kill
	// before it streams anything would show nothing.
	stored := 0
	for round := 0; round < 3; round++ {
		p := startBinary(t, "run", "--config", cfg)
		waitUntil(t, 60*time.Second, fmt.Sprintf("round %d: pgstream stores new changes in JetStream", round), p.exited, func() bool {
			return streamCount(t, url, stream) > stored
		})
		time.Sleep(time.Duration(rand.IntN(500)) * time.Millisecond)
		if msg, ok := p.exited(); ok {
			t.Fatalf("round %d: %s", round, msg)
		}
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		stored = streamCount(t, url, stream)
		t.Logf("round %d: killed with %d changes in JetStream", round, stored)
	}
	wl.MustStop(t)
	rows, err := cluster.QueryRows(db, "SELECT id, v FROM items ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	final := map[string]int{}
	want := 0
	for _, r := range rows {
		v, _ := strconv.Atoi(r[1])
		final[fmt.Sprintf(`{"id":%s}`, r[0])] = v
		want += v + 1 // the insert, then one update per version
	}
	p := startBinary(t, "run", "--config", cfg)
	// The kills may have left every change in JetStream already: the count alone does not show
	// that this run has started streaming.
	waitStreamingOn(t, cluster, slot, p)
	waitStreamCount(t, url, stream, want, 180*time.Second)
	stopBinary(t, p)

	msgs := streamMessages(t, url, stream)
	seen := map[string]bool{}
	for _, m := range msgs {
		if seen[m.id] {
			t.Fatalf("JetStream holds %s twice", m.id)
		}
		seen[m.id] = true
	}
	if len(msgs) != want {
		t.Fatalf("JetStream holds %d changes, want exactly %d", len(msgs), want)
	}

	recs := kafkatest.Records(t, brokers, prefix+".public.items", want)
	type kv struct {
		off int64
		id  string
		v   int
	}
	byKey := map[string][]kv{}
	for _, rec := range recs {
		var e event
		_ = json.Unmarshal(rec.Value, &e)
		v, _ := strconv.Atoi(num(e.row("after")["v"]))
		byKey[string(rec.Key)] = append(byKey[string(rec.Key)], kv{rec.Offset, e.ID, v})
	}
	var bad []string
	for k, fv := range final {
		list := byKey[k]
		sort.Slice(list, func(i, j int) bool { return list[i].off < list[j].off })
		var versions []int
		ids := map[string]bool{}
		for _, x := range list {
			if !ids[x.id] {
				ids[x.id] = true
				versions = append(versions, x.v)
			}
		}
		inOrder := len(versions) == fv+1
		for i, v := range versions {
			inOrder = inOrder && v == i
		}
		if !inOrder {
			bad = append(bad, fmt.Sprintf("key %s: kafka has versions %v, want 0..%d in order", k, versions, fv))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		t.Fatalf("%d of %d keys are wrong in kafka (%d records read):\n%s", len(bad), len(final), len(recs), strings.Join(bad[:min(len(bad), 20)], "\n"))
	}
	t.Logf("%d changes; kafka %d records (%d re-sent), JetStream %d", want, len(recs), len(recs)-want, len(msgs))
}

// Kafka refuses every produce for twice wal_sender_timeout, then recovers: every change arrives,
// in order per key, and the replication session survives.
func TestKafkaOutageLongerThanWalSenderTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	db := newDB(t)
	exec1(t, db, `CREATE TABLE t (id int PRIMARY KEY, v int)`)
	c, brokers := kafkatest.StartCluster(t)
	prefix := "kout" + db
	kafkatest.CreateTopic(t, brokers, prefix+".public.t", 3)
	ks, err := kafka.New(kafka.Config{Brokers: brokers, TopicPrefix: prefix}, sinks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	r := startPipeline(t, db, runOpts{extra: []pipeline.SinkSpec{{Name: "kafka", Sink: ks}}})
	r.waitStreaming()
	_, pidBefore := slotState(t, r.slot)

	var down atomic.Bool
	down.Store(true)
	kafkatest.RefuseProduce(c, &down)
	const n = 200
	for i := 1; i <= n; i++ {
		exec1(t, db, fmt.Sprintf(`INSERT INTO t VALUES (%d, 0); UPDATE t SET v = 1 WHERE id = %d`, i, i))
	}
	written := time.Now()
	// The stream goes on into the file sink while Kafka refuses every produce.
	waitEvents(t, r.path, 60*time.Second, atLeast(2*n))
	// Kafka stays down, with every change pending for it, for twice wal_sender_timeout.
	if rest := 2*walSenderTimeout - time.Since(written); rest > 0 {
		time.Sleep(rest)
	}
	if got := kafkatest.Records(t, brokers, prefix+".public.t", 0); len(got) != 0 {
		t.Fatalf("%d records were stored while the broker refused every produce", len(got))
	}
	down.Store(false)
	recs := kafkatest.Records(t, brokers, prefix+".public.t", 2*n)
	if err := r.stop(); err != nil {
		t.Fatalf("pipeline failed across the outage: %v", err)
	}
	ops := map[string]string{}
	for _, rec := range recs {
		var e event
		_ = json.Unmarshal(rec.Value, &e)
		ops[string(rec.Key)] += e.Op
	}
	for i := 1; i <= n; i++ {
		k := fmt.Sprintf(`{"id":%d}`, i)
		if got := ops[k]; !strings.HasPrefix(got, "cu") || strings.Trim(got, "cu") != "" {
			t.Fatalf("key %s: ops %q, want insert then update", k, got)
		}
	}
	_, pidAfter := slotState(t, r.slot)
	if pidAfter != "" && pidAfter != pidBefore {
		t.Fatalf("walsender changed from %s to %s during the outage", pidBefore, pidAfter)
	}
}

// TestSnapshotSIGKILLJetStreamKeepsOneCopy kills the binary twice during the snapshot of a table
// into JetStream: the chunks read again after each restart give the same row versions the same
// ids, so the stream's duplicate window keeps exactly one message per row.
func TestSnapshotSIGKILLJetStreamKeepsOneCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	db := newDB(t)
	const rows = 80000
	createSnapshotTables(t, db, []string{"dedup"}, rows)
	url := natstest.URL(t)
	stream, prefix := natstest.Names("snap")
	t.Cleanup(func() { deleteStream(url, stream) })
	dir := t.TempDir()
	slot := "dedup_" + db
	cfg := writeConfigSnapshot(t, dir, db, slot, fmt.Sprintf(`  - type: nats
    servers: [%s]
    subject_prefix: %s
    stream: {name: %s, create: true, duplicate_window: 5m}
`, url, prefix, stream), "  mode: initial\n  chunk_pages: 32\n", "warn")
	ckpt := filepath.Join(dir, "checkpoint.json")
	// Each round kills pgstream at a random moment after it has stored rows of its own (or, should
	// the snapshot be over, at once): a kill before it reads anything would show nothing.
	stored := 0
	for round := 0; round < 2; round++ {
		p := startBinary(t, "run", "--config", cfg)
		waitUntil(t, 60*time.Second, fmt.Sprintf("round %d: pgstream stores new rows in JetStream", round), p.exited, func() bool {
			return streamCount(t, url, stream) > stored || snapshotPending(t, ckpt) == 0
		})
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		stored = streamCount(t, url, stream)
		t.Logf("round %d: killed with %d messages in JetStream, %d table snapshot(s) unfinished", round, stored, snapshotPending(t, ckpt))
	}
	p := startBinary(t, "run", "--config", cfg)
	waitUntil(t, 180*time.Second, "the snapshot finishes after the kills", p.exited, func() bool {
		return snapshotPending(t, ckpt) == 0
	})
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	msgs := streamMessages(t, url, stream)
	ids := map[string]bool{}
	for _, m := range msgs {
		if m.event.Op != "r" || ids[m.id] {
			t.Fatalf("unexpected message %s (id %s, seen %v)", m.event.Raw, m.id, ids[m.id])
		}
		ids[m.id] = true
	}
	fileLines := len(readEvents(t, filepath.Join(dir, "changes.jsonl")))
	if len(msgs) != rows {
		t.Fatalf("JetStream holds %d messages for %d rows (the file sink has %d lines)", len(msgs), rows, fileLines)
	}
	t.Logf("JetStream: %d messages for %d rows; the file sink: %d lines (%d sent again)", len(msgs), rows, fileLines, fileLines-rows)
}

// TestSnapshotIntoKafkaKeepsKeyOrder snapshots a table into Kafka while a workload updates it: each
// key's snapshot read lands on the key's partition before any later change of the key, and the
// latest record per key equals the database's row.
func TestSnapshotIntoKafkaKeepsKeyOrder(t *testing.T) {
	db := newDB(t)
	const rows = 3000
	createSnapshotTables(t, db, []string{"ksnap"}, rows)
	brokers := kafkatest.Start(t)
	prefix := "ks" + db
	ks, err := kafka.New(kafka.Config{Brokers: brokers, TopicPrefix: prefix,
		AutoCreate: kafka.AutoCreateConfig{Enabled: true, Partitions: 4, ReplicationFactor: 1}}, sinks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	wl := snapshotWorkload(t, db, []string{"ksnap"}, rows)
	r := startPipeline(t, db, runOpts{extra: []pipeline.SinkSpec{{Name: "kafka", Sink: ks}},
		pcfg: pipeline.Config{Snapshot: pipeline.SnapshotConfig{Mode: pipeline.SnapshotInitial, ChunkPages: 4}}})
	r.waitStreaming()
	time.Sleep(500 * time.Millisecond)
	wl.MustStop(t)
	evs := markDone(t, db, r.path, r.ckpt, 120*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, e := range evs {
		if e.Source.Table == "ksnap" {
			want++
		}
	}
	recs := kafkatest.Records(t, brokers, prefix+".public.ksnap", want)
	if len(recs) != want {
		t.Fatalf("kafka holds %d records of ksnap, the file sink %d", len(recs), want)
	}
	state := map[string]string{}
	seen := map[string]string{}
	for _, rec := range recs {
		var e event
		if err := json.Unmarshal(rec.Value, &e); err != nil {
			t.Fatal(err)
		}
		k := string(rec.Key)
		if e.Op == "r" && seen[k] != "" {
			t.Fatalf("key %s: snapshot read after a %q change on its partition: %s", k, seen[k], e.Raw)
		}
		if e.Op != "r" {
			seen[k] = e.Op
		}
		switch e.Op {
		case "r", "c", "u":
			a := e.row("after")
			state[fmt.Sprint(a["id"])] = fmt.Sprintf("%v|%v", a["v"], a["pad"])
		case "d":
			delete(state, fmt.Sprint(e.row("before")["id"]))
		}
	}
	compareState(t, map[string]map[string]string{"public.ksnap": state}, dbState(t, db, []string{"ksnap"}))
}

// TestReadinessNamesAFailingSink makes Kafka refuse every produce: the sink retries inside its
// Write, and readiness names it with the broker's error until the broker accepts again.
func TestReadinessNamesAFailingSink(t *testing.T) {
	db := newDB(t)
	exec1(t, db, `CREATE TABLE t (id int PRIMARY KEY, v int)`)
	c, brokers := kafkatest.StartCluster(t)
	prefix := "kready" + db
	kafkatest.CreateTopic(t, brokers, prefix+".public.t", 1)
	ks, err := kafka.New(kafka.Config{Brokers: brokers, TopicPrefix: prefix}, sinks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	board := health.NewBoard(nil)
	r := startPipeline(t, db, runOpts{extra: []pipeline.SinkSpec{{Name: "kafka", Sink: ks}}, health: board})
	r.waitStreaming()
	waitReady := func(want bool, mention string) []health.Status {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			ready, comps := board.Ready()
			named := mention == ""
			for _, s := range comps {
				if s.Name == "sink:kafka" && strings.Contains(s.Reason, mention) {
					named = true
				}
			}
			if ready == want && named {
				return comps
			}
			if time.Now().After(deadline) {
				t.Fatalf("readiness did not become %v naming %q within 60s: %+v", want, mention, comps)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitReady(true, "")

	var down atomic.Bool
	down.Store(true)
	kafkatest.RefuseProduce(c, &down)
	exec1(t, db, `INSERT INTO t VALUES (1, 0)`)
	comps := waitReady(false, "failing since")
	for _, s := range comps {
		if s.Name != "sink:kafka" && !s.OK {
			t.Fatalf("component %s not ready although only Kafka refuses: %+v", s.Name, comps)
		}
	}
	down.Store(false)
	waitReady(true, "")
	kafkatest.Records(t, brokers, prefix+".public.t", 1)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// refuseProduce makes the kfake cluster answer every produce with NotEnoughReplicas while down is
// set, as a broker that lost its in-sync replicas does.
// SIGTERM while pgstream is still reaching a sink at start-up (a Kafka broker that accepts the
// connection and never answers) is a stop that was asked for: pgstream exits 0 at once instead of
// reporting the interrupted wait as a failure.
func TestStopWhileReachingASinkIsClean(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	defer func() {
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	}()
	db := newDB(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, db, "stop_"+db, fmt.Sprintf("  - type: kafka\n    brokers: [%s]\n    topic: t\n", ln.Addr()))
	p := startBinary(t, "run", "--config", cfg)
	select {
	case c := <-accepted:
		accepted <- c
	case err := <-p.done:
		t.Fatalf("pgstream exited before reaching the broker: %v\n%s", err, p.stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("pgstream never connected to the broker\n%s", p.stderr)
	}
	stopBinary(t, p)
}
