package bench

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/sinks"
)

func TestSizesValidate(t *testing.T) {
	var s Sizes
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Sizes{Rows: 1_000_000, InsertTx: 10_000, Updates: 200_000, Deletes: 100_000, ChangeTx: 1_000, BigTxRows: 1_000_000}
	if s != want {
		t.Fatalf("defaults = %+v, want %+v", s, want)
	}
	if s.MixedChanges() != 1_300_000 {
		t.Fatalf("MixedChanges = %d", s.MixedChanges())
	}
	small := Sizes{Rows: 100_000}
	if err := small.Validate(); err != nil || small.Updates != 20_000 || small.Deletes != 10_000 {
		t.Fatalf("scaled sizes = %+v, %v", small, err)
	}
	for _, bad := range []Sizes{
		{Rows: 10, Updates: 8, Deletes: 5},
		{Rows: -1},
		{InsertTx: -5},
	} {
		if err := bad.Validate(); !errors.Is(err, ErrSizes) {
			t.Errorf("%+v: err = %v, want ErrSizes", bad, err)
		}
	}
}

func TestInsertSQLRange(t *testing.T) {
	sql := insertSQL("t", 11, 20)
	if !strings.Contains(sql, "INSERT INTO t") || !strings.Contains(sql, "generate_series(11, 20)") {
		t.Fatalf("insertSQL = %s", sql)
	}
}

func event(table string, op sinks.Op, value string) sinks.Event {
	return sinks.Event{Op: op, Schema: "public", Table: table, Value: []byte(value)}
}

func TestColumnTime(t *testing.T) {
	want := time.Date(2024, 1, 2, 1, 4, 5, 123456000, time.UTC)
	for _, tc := range []struct {
		name, value string
		ok          bool
	}{
		{"after", `{"id":"0/1/0","op":"c","before":null,"after":{"id":1,"t0":"2024-01-02T01:04:05.123456Z","payload":"x"},"source":{}}`, true},
		{"before has it too", `{"before":{"t0":"1999-01-01T00:00:00Z"},"after":{"t0":"2024-01-02T01:04:05.123456Z"}}`, true},
		{"no after", `{"before":null,"after":null}`, false},
		{"no column", `{"after":{"id":1}}`, false},
		{"not a time", `{"after":{"t0":"yesterday"}}`, false},
		{"unterminated", `{"after":{"t0":"2024-01-02T01:04`, false},
	} {
		got, err := ColumnTime([]byte(tc.value), "t0")
		if tc.ok {
			if err != nil || !got.Equal(want) {
				t.Errorf("%s: %v, %v; want %v", tc.name, got, err, want)
			}
			continue
		}
		if !errors.Is(err, ErrNoTimestamp) {
			t.Errorf("%s: err = %v, want ErrNoTimestamp", tc.name, err)
		}
	}
}

type fakeSink struct {
	fail   error
	writes int
	closed bool
}

func (f *fakeSink) Write(context.Context, *sinks.Batch) error {
	if f.fail != nil {
		return f.fail
	}
	f.writes++
	return nil
}
func (f *fakeSink) Close() error { f.closed = true; return nil }

func TestLatencySink(t *testing.T) {
	inner := &fakeSink{}
	s := NewLatencySink(inner, "lat", "t0")
	base := time.Date(2024, 1, 2, 1, 4, 5, 0, time.UTC)
	s.now = func() time.Time { return base.Add(7 * time.Millisecond) }
	b := &sinks.Batch{Events: []sinks.Event{
		event("lat", sinks.OpCreate, `{"after":{"t0":"2024-01-02T01:04:05Z"}}`),
		event("lat", sinks.OpCreate, `{"after":{"t0":"2024-01-02T01:04:05.002Z"}}`),
		event("other", sinks.OpCreate, `{"after":{"t0":"2000-01-01T00:00:00Z"}}`),
		event("lat", sinks.OpDelete, `{"before":{"id":1},"after":null}`),
	}}
	if err := s.Write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	lat, err := s.Latencies()
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 2 || lat[0] != 7*time.Millisecond || lat[1] != 5*time.Millisecond || s.Count() != 2 {
		t.Fatalf("latencies = %v", lat)
	}

	// An unreadable timestamp is reported, not skipped silently.
	bad := &sinks.Batch{Events: []sinks.Event{event("lat", sinks.OpCreate, `{"after":{"id":3}}`)}}
	if err := s.Write(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Latencies(); !errors.Is(err, ErrNoTimestamp) {
		t.Fatalf("err = %v, want ErrNoTimestamp", err)
	}

	// Nothing is recorded for a batch the inner sink failed.
	boom := errors.New("disk full")
	inner.fail = boom
	if err := s.Write(context.Background(), b); !errors.Is(err, boom) {
		t.Fatalf("Write = %v, want the inner error", err)
	}
	if s.Count() != 2 {
		t.Fatalf("count after a failed write = %d", s.Count())
	}
	if err := s.Close(); err != nil || !inner.closed {
		t.Fatalf("Close = %v, inner closed %v", err, inner.closed)
	}
}

func TestPercentiles(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	s := Summarize(lat)
	if s.N != 100 || s.P50 != 50*time.Millisecond || s.P99 != 99*time.Millisecond || s.Max != 100*time.Millisecond {
		t.Fatalf("summary = %+v", s)
	}
	one := Summarize([]time.Duration{3})
	if one.P50 != 3 || one.P99 != 3 || one.Max != 3 {
		t.Fatalf("summary of one = %+v", one)
	}
	if z := Summarize(nil); z != (LatencySummary{}) {
		t.Fatalf("summary of none = %+v", z)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		in := append([]float64(nil), tc.in...)
		if got := Median(in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Fatalf("Median reordered its input: %v", in)
			}
		}
	}
}

func TestSummarizeRuns(t *testing.T) {
	u := func(wall, cpu float64, rssMiB int64) Usage {
		return Usage{Wall: time.Duration(wall * float64(time.Second)), User: time.Duration(cpu * float64(time.Second)), MaxRSS: rssMiB << 20}
	}
	runs := []Run{
		{Client: "base", Changes: 1_000_000, Usage: u(10, 2, 10)},
		{Client: "new", Changes: 1_000_000, Usage: u(5, 3, 30)},
		{Client: "base", Changes: 1_000_000, Usage: u(12, 2, 10)},
		{Client: "new", Changes: 1_000_000, Usage: u(6, 3, 32)},
		{Client: "base", Changes: 1_000_000, Usage: u(100, 2, 10)}, // an outlier the median ignores
		{Client: "new", Changes: 1_000_000, Usage: u(4, 3, 31)},
	}
	sums := SummarizeRuns(runs, "base")
	if len(sums) != 2 || sums[0].Client != "base" || sums[1].Client != "new" {
		t.Fatalf("summaries = %+v", sums)
	}
	b, n := sums[0], sums[1]
	if b.Wall != 12*time.Second || b.Throughput != 1 || b.CPU != 1 || b.Runs != 3 {
		t.Fatalf("baseline = %+v", b)
	}
	if n.Wall != 5*time.Second || n.Throughput != 12.0/5 || n.CPU != 1.5 || n.MaxRSSMiB != 31 || n.WorstRSSMiB != 32 || n.ChangesPerSec != 200_000 {
		t.Fatalf("new = %+v", n)
	}
	var buf bytes.Buffer
	WriteSummaryTable(&buf, "mixed", 1_000_000, sums)
	if !strings.Contains(buf.String(), "| new | 3 | 5.00 | 200000 | 2.40× | 3.00 | 1.50× | 31.0 | 32.0 |") {
		t.Fatalf("table:\n%s", buf.String())
	}
	buf.Reset()
	WriteRunsTable(&buf, runs)
	if strings.Count(buf.String(), "\n| ") != 6+2 { // header, separator, six runs
		t.Fatalf("runs table:\n%s", buf.String())
	}
}

func TestRunChild(t *testing.T) {
	u, err := RunChild(exec.Command("sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if u.Wall <= 0 || u.CPU() <= 0 || u.MaxRSS <= 0 || u.ReadCalls <= 0 {
		t.Fatalf("usage = %+v", u)
	}
	_, err = RunChild(exec.Command("sh", "-c", "echo the reason >&2; exit 3"), 0)
	if !errors.Is(err, ErrChild) || !strings.Contains(err.Error(), "the reason") {
		t.Fatalf("err = %v", err)
	}
	// The child would sleep a minute: ended after 100ms, it is gone well within 30s however busy
	// the machine.
	start := time.Now()
	_, err = RunChild(exec.Command("sleep", "60"), 100*time.Millisecond)
	if !errors.Is(err, ErrChild) || time.Since(start) > 30*time.Second {
		t.Fatalf("timeout: err = %v after %s", err, time.Since(start))
	}
}

// The peak RSS of a child is its own, not the parent's, however large the parent has grown.
func TestRunChildPeakRSSIsTheChilds(t *testing.T) {
	big := make([]byte, 128<<20)
	for i := 0; i < len(big); i += 4096 {
		big[i] = 1
	}
	u, err := RunChild(exec.Command("sh", "-c", "sleep 0.05"), 0)
	runtime.KeepAlive(big)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("child VmHWM %d KiB, ru_maxrss %d KiB", u.MaxRSS>>10, u.RusageMaxRSS>>10)
	if u.MaxRSS <= 0 || u.MaxRSS > 64<<20 {
		t.Fatalf("peak RSS of sh = %d bytes", u.MaxRSS)
	}
}

func TestParseHWM(t *testing.T) {
	buf := make([]byte, 8<<10)
	b, ok := readSmall("/proc/self/status", buf)
	if !ok {
		t.Fatal("cannot read /proc/self/status")
	}
	if v, ok := parseHWM(b); !ok || v <= 0 {
		t.Fatalf("parseHWM(/proc/self/status) = %d, %v", v, ok)
	}
	for _, bad := range []string{"Name: x\n", "VmHWM:\tlots kB\n"} {
		if v, ok := parseHWM([]byte(bad)); ok {
			t.Errorf("%q: read %d", bad, v)
		}
	}
	if v, ok := parseHWM([]byte("Name: x\nVmHWM:\t  2048 kB\nVmRSS: 1 kB\n")); !ok || v != 2<<20 {
		t.Fatalf("parseHWM = %d, %v", v, ok)
	}
	if _, ok := readSmall("/proc/self/status", make([]byte, 10)); ok {
		t.Fatal("a file larger than the buffer was accepted")
	}
}

func TestParseIOCalls(t *testing.T) {
	b, ok := readSmall("/proc/self/io", make([]byte, 8<<10))
	if !ok {
		t.Fatal("cannot read /proc/self/io")
	}
	if r, w, ok := parseIOCalls(b); !ok || r <= 0 || w < 0 {
		t.Fatalf("parseIOCalls(/proc/self/io) = %d, %d, %v", r, w, ok)
	}
	if _, _, ok := parseIOCalls([]byte("rchar: 10\nsyscr: 7\n")); ok {
		t.Fatal("a file without syscw accepted")
	}
	if r, w, ok := parseIOCalls([]byte("rchar: 10\nsyscr: 7\nsyscw: 3\n")); !ok || r != 7 || w != 3 {
		t.Fatalf("parseIOCalls = %d, %d, %v", r, w, ok)
	}
}

func TestTailBuffer(t *testing.T) {
	var tb tailBuffer
	_, _ = tb.Write(bytes.Repeat([]byte("a"), tailMax))
	_, _ = tb.Write([]byte("end"))
	if len(tb.b) != tailMax || !bytes.HasSuffix(tb.b, []byte("aend")) {
		t.Fatalf("len %d, suffix %q", len(tb.b), tb.b[len(tb.b)-4:])
	}
}

func TestCountLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	data := bytes.Repeat([]byte("{}\n"), 300_000) // spans several read chunks
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := CountLines(p); err != nil || n != 300_000 {
		t.Fatalf("CountLines = %d, %v", n, err)
	}
	if _, err := CountLines(p + ".missing"); err == nil {
		t.Fatal("missing file counted")
	}
}

func TestFsyncProbe(t *testing.T) {
	dir := t.TempDir()
	d, err := FsyncProbe(dir, 3, 128)
	if err != nil || len(d) != 3 {
		t.Fatalf("FsyncProbe = %v, %v", d, err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("probe file left behind: %v", left)
	}
}

func TestMachineWrite(t *testing.T) {
	m := ReadMachine()
	if m.CPUs < 1 || m.Go == "" {
		t.Fatalf("machine = %+v", m)
	}
	m.Postgres = "15.0"
	var buf bytes.Buffer
	m.Write(&buf)
	if !strings.Contains(buf.String(), "PostgreSQL: 15.0") {
		t.Fatalf("machine:\n%s", buf.String())
	}
}
