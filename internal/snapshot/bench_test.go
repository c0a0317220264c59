package snapshot

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/pgtest"
	"github.com/pgstream/pgstream/sinks"
)

// The benchmark's table is created once per test binary, however often the benchmark runs.
var (
	benchOnce sync.Once
	benchErr  error
)

const benchRows = 200000

func setupBench(c *pgtest.Cluster) error {
	if err := c.CreateDB("bench"); err != nil {
		return err
	}
	if err := c.Exec("bench", `CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE TABLE t (id int8 PRIMARY KEY, name text, price numeric, ratio float8, active bool, created timestamptz,
	doc jsonb, tags text[], blob bytea, m mood);
CREATE PUBLICATION pub FOR TABLE t;
INSERT INTO t SELECT i, 'Grüße, "world" ' || i || E'\t!', i * 1.25, i / 7.0, i % 2 = 0,
	'2024-01-02 03:04:05.123456+00'::timestamptz + i * interval '1 second',
	jsonb_build_object('a', i, 'b', ARRAY[true, NULL]), ARRAY['red', 'dark blue', NULL],
	'\x00010203deadbeef', 'happy'
FROM generate_series(1, 200000) i;`); err != nil {
		return err
	}
	return c.Exec("bench", "VACUUM ANALYZE t")
}

// BenchmarkReadChunk reads a 200,000-row table of mixed types with ReadChunk (chunks of 1024 pages)
// and, on the same connection, copies it with a plain COPY (SELECT * FROM t) TO STDOUT into
// io.Discard. It reports both rates and their ratio (ReadChunk's rate over COPY's): the share of the
// server's bare COPY rate left once every row is parsed, encoded and emitted as an event. The rate
// of the Reader's own COPY statement into io.Discard (ctid and xmin, ctid ranges) tells the server's
// part of the difference from the client's.
func BenchmarkReadChunk(b *testing.B) {
	ctx := context.Background()
	c := sharedCluster(b)
	benchOnce.Do(func() { benchErr = setupBench(c) })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	conn := connect(b, ctx, c, "bench")
	tables, err := ListTables(ctx, conn, "pub")
	if err != nil {
		b.Fatal(err)
	}
	plans := Plan(tables, testGen, 1024)
	ts := &plans[0]
	r := NewReader(conn, "bench", nil)
	var bytes int64
	emit := func(ev sinks.Event) error {
		bytes += int64(len(ev.Value))
		return nil
	}
	copyAll := func(sql string) time.Duration {
		start := time.Now()
		if _, err := conn.CopyTo(ctx, io.Discard, sql); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	const (
		plainSQL = "COPY (SELECT * FROM t) TO STDOUT"
		ctidSQL  = "COPY (SELECT ctid, xmin, * FROM t WHERE ctid >= '(0,0)'::tid) TO STDOUT"
	)
	copyAll(plainSQL) // warm the cache

	var rows int64
	var readTime, copyTime, ctidTime time.Duration
	for b.Loop() {
		start := time.Now()
		for i := range ts.Chunks() {
			n, err := r.ReadChunk(ctx, ts, nil, "", i, emit)
			if err != nil {
				b.Fatal(err)
			}
			rows += n
		}
		readTime += time.Since(start)
		b.StopTimer()
		copyTime += copyAll(plainSQL)
		ctidTime += copyAll(ctidSQL)
		b.StartTimer()
	}
	if rows != int64(b.N)*benchRows {
		b.Fatalf("%d rows in %d reads", rows, b.N)
	}
	all := float64(rows)
	b.ReportMetric(all/readTime.Seconds(), "rows/s")
	b.ReportMetric(all/copyTime.Seconds(), "copy-rows/s")
	b.ReportMetric(all/ctidTime.Seconds(), "copy-ctid-rows/s")
	b.ReportMetric(copyTime.Seconds()/readTime.Seconds(), "ratio")
	b.ReportMetric(float64(bytes)/all, "event-B/row")
}
