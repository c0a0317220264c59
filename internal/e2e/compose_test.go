package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/kafkatest"
	"github.com/pgstream/pgstream/internal/natstest"
)

// The configuration shipped for docker-compose, with its hosts pointed at local brokers, runs as it
// is: a workload lands in Kafka and JetStream complete, and the brokers' latest state per row equals
// the table.
func TestComposeConfigAgainstLocalBrokers(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	db := newDB(t)
	exec1(t, db, `CREATE TABLE invoices (id bigint PRIMARY KEY, customer text, total numeric(12,2), paid boolean, lines jsonb)`)
	brokers := kafkatest.Start(t)
	url := natstest.URL(t)
	data, err := os.ReadFile("../../configs/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The compose config listens on a fixed port on every interface; a test listens on a free
	// loopback port, so that runs side by side do not collide.
	const listen = "listen: 0.0.0.0:9187"
	if !strings.Contains(string(data), listen) {
		t.Fatalf("configs/compose.yaml no longer has %q: update this test's replacement", listen)
	}
	stream, prefix := natstest.Names("cmp")
	t.Cleanup(func() { deleteStream(url, stream) })
	cfg := strings.NewReplacer(
		"kafka:9092", brokers[0],
		"nats://nats:4222", url,
		"name: PGSTREAM", "name: "+stream,
		"topic_prefix: pgstream", "topic_prefix: "+prefix,
		"subject_prefix: pgstream", "subject_prefix: "+prefix,
		listen, "listen: 127.0.0.1:0",
	).Replace(string(data))
	dir := t.TempDir()
	path := filepath.Join(dir, "compose.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)

	slot := "cmp_" + db
	p := startBinaryEnv(t, []string{"PGSTREAM_SOURCE_URL=" + cluster.URL(db)},
		"run", "--config", path, "--checkpoint.path", filepath.Join(dir, "ck.json"), "--source.slot", slot, "--source.publication", "pub_"+slot)
	// The slot is active from the start of its creation, before the changes it will hold begin.
	waitSlotStreaming(t, cluster, slot, p.exited)
	exec1(t, db, `INSERT INTO invoices SELECT g, 'cust-' || (g % 17), g * 1.25, g % 3 = 0, jsonb_build_array(g, 'x') FROM generate_series(1, 300) g`)
	exec1(t, db, `UPDATE invoices SET paid = true, total = total + 0.01 WHERE id % 5 = 0`)
	exec1(t, db, `DELETE FROM invoices WHERE id % 7 = 0`)
	exec1(t, db, `BEGIN; UPDATE invoices SET customer = 'renamed' WHERE id = 1; UPDATE invoices SET id = 1001 WHERE id = 2; COMMIT`)
	want := 300 + 60 + 42 + 2
	waitStreamCount(t, url, stream, want, 120*time.Second)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.done; err != nil {
		t.Fatalf("pgstream: %v\n%s", err, p.stderr)
	}
	msgs := streamMessages(t, url, stream)
	if len(msgs) != want {
		t.Fatalf("JetStream holds %d changes, want %d", len(msgs), want)
	}
	// Materialize the latest state per id from the stream and compare with the table.
	state := map[string]string{}
	for _, m := range msgs {
		e := m.event
		if b := e.row("before"); b != nil {
			delete(state, num(b["id"]))
		}
		if a := e.row("after"); a != nil {
			state[num(a["id"])] = fmt.Sprintf("%v|%v|%v|%s", a["customer"], a["total"], a["paid"], compactJSON(a["lines"]))
		} else if e.Op == "d" {
			delete(state, num(e.row("before")["id"]))
		}
	}
	rows, err := cluster.QueryRows(db, `SELECT id, customer, total::text, paid::text, lines::text FROM invoices`)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(state) {
		t.Fatalf("stream state has %d rows, table %d", len(state), len(rows))
	}
	for _, r := range rows {
		paid := map[string]string{"t": "true", "f": "false", "true": "true", "false": "false"}[r[3]]
		want := fmt.Sprintf("%s|%s|%s|%s", r[1], r[2], paid, strings.ReplaceAll(r[4], " ", ""))
		if state[r[0]] != want {
			t.Fatalf("row %s: stream %q, table %q", r[0], state[r[0]], want)
		}
	}
	recs := kafkatest.Records(t, brokers, prefix+".public.invoices", want)
	if len(recs) < want {
		t.Fatalf("kafka holds %d records, want at least %d", len(recs), want)
	}
}

func compactJSON(v any) string {
	s := fmt.Sprint(v)
	if arr, ok := v.([]any); ok {
		parts := make([]string, len(arr))
		for i, x := range arr {
			if str, ok := x.(string); ok {
				parts[i] = `"` + str + `"`
			} else {
				parts[i] = fmt.Sprint(x)
			}
		}
		s = "[" + strings.Join(parts, ",") + "]"
	}
	return s
}
