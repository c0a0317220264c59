package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstream/pgstream/internal/pgtest"
)

// benchPublication is the publication, FOR ALL TABLES, that the pipeline benchmarks read.
const benchPublication = "bench"

// The cluster of the pipeline benchmarks, started by the first benchmark that needs it (never by
// plain `go test`) and stopped by TestMain.
var (
	benchOnce    sync.Once
	benchCluster *pgtest.Cluster
	benchErr     error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchCluster != nil {
		benchCluster.Close()
	}
	os.Exit(code)
}

func cluster(b *testing.B) *pgtest.Cluster {
	b.Helper()
	benchOnce.Do(func() {
		benchCluster, benchErr = pgtest.Start(pgtest.Options{Settings: map[string]string{
			"shared_buffers": "256MB", "max_wal_size": "8GB", "checkpoint_timeout": "30min",
		}})
		if benchErr != nil {
			return
		}
		ctx := context.Background()
		conn, err := benchCluster.Connect(ctx, "postgres")
		if err != nil {
			benchErr = err
			return
		}
		defer conn.Close(ctx)
		benchErr = Setup(ctx, conn, benchPublication)
	})
	if benchErr != nil {
		b.Fatalf("start PostgreSQL: %v", benchErr)
	}
	return benchCluster
}

// benchRows is the mixed workload's insert count per iteration: PGSTREAM_BENCH_ROWS, default 100,000.
func benchRows(b *testing.B) int {
	n := 100_000
	if s := os.Getenv("PGSTREAM_BENCH_ROWS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("PGSTREAM_BENCH_ROWS=%q: want a positive number", s)
		}
		n = v
	}
	return n
}

// BenchmarkPipelineFileMixed runs the pipeline in-process with the file sink over the mixed
// workload (PGSTREAM_BENCH_ROWS inserts, then 20% updates and 10% deletes). Only the pipeline's run
// is timed; the workload is generated, on a fresh slot, with the timer stopped. Profile it with
//
//	go test -run '^$' -bench PipelineFile -benchtime=3x -cpuprofile cpu.out ./bench/
func BenchmarkPipelineFileMixed(b *testing.B) {
	s := Sizes{Rows: benchRows(b)}
	if err := s.Validate(); err != nil {
		b.Fatal(err)
	}
	benchPipeline(b, s.MixedChanges(), func(ctx context.Context, conn *pgconn.PgConn) error {
		return RunMixed(ctx, conn, s)
	}, MixedTable)
}

// BenchmarkPipelineFileBigTx is BenchmarkPipelineFileMixed with all inserts in one transaction.
func BenchmarkPipelineFileBigTx(b *testing.B) {
	rows := benchRows(b)
	benchPipeline(b, int64(rows), func(ctx context.Context, conn *pgconn.PgConn) error {
		return RunBigTx(ctx, conn, rows)
	}, BigTxTable)
}

// benchPipeline times the pipeline on what workload, run on the benchmark's connection with the
// timer stopped, writes to table: b.N times, each on a fresh slot.
func benchPipeline(b *testing.B, changes int64, workload func(context.Context, *pgconn.PgConn) error, table string) {
	// Only the pipeline's runs are timed: not the cluster's start, not the workloads.
	b.StopTimer()
	b.ReportAllocs()
	c := cluster(b)
	ctx := context.Background()
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	var total time.Duration
	for i := 0; i < b.N; i++ {
		slot := fmt.Sprintf("bench_%d", i)
		if err := CreateSlots(ctx, conn, []string{slot}); err != nil {
			b.Fatal(err)
		}
		if err := workload(ctx, conn); err != nil {
			b.Fatal(err)
		}
		end, err := CurrentLSN(ctx, conn)
		if err != nil {
			b.Fatal(err)
		}
		r := InProcess{URL: c.URL("postgres"), Slot: slot, Publication: benchPublication, Dir: b.TempDir(), End: end}
		start := time.Now()
		b.StartTimer()
		err = r.Run(ctx)
		b.StopTimer()
		total += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := CountLines(r.OutputPath()); err != nil || n != changes {
			b.Fatalf("the file sink holds %d events (%v), want %d", n, err, changes)
		}
		if err := DropSlots(ctx, conn, []string{slot}); err != nil {
			b.Fatal(err)
		}
		if err := execSQL(ctx, conn, "TRUNCATE "+table); err != nil {
			b.Fatal(err)
		}
		if err := os.Remove(r.OutputPath()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(changes)*float64(b.N)/total.Seconds(), "changes/s")
}
