package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// SnapshotTable is the table of the snapshot figure.
const SnapshotTable = "bench_snapshot"

// snapshotColumns is the shape of SnapshotTable: about 150 bytes a row on disk.
const snapshotColumns = `id int8 PRIMARY KEY, qty int4, price numeric(12,2), label text, created timestamptz, attrs jsonb`

// ErrSnapshotOutput is returned by CheckSnapshotOutput when the sink's output is not exactly one
// snapshot read of every row.
var ErrSnapshotOutput = errors.New("snapshot output does not match the table")

// SetupSnapshot creates SnapshotTable with ids 1..rows, a publication pub for that table alone, and
// vacuums and analyzes the table. The rows are inserted in statements of 100,000.
func SetupSnapshot(ctx context.Context, conn *pgconn.PgConn, rows int, pub string) error {
	sql := fmt.Sprintf("CREATE TABLE %s (%s);\nCREATE PUBLICATION %s FOR TABLE %s;", SnapshotTable, snapshotColumns, pub, SnapshotTable)
	if err := execSQL(ctx, conn, sql); err != nil {
		return fmt.Errorf("create snapshot table: %w", err)
	}
	const step = 100_000
	for lo := 1; lo <= rows; lo += step {
		hi := min(lo+step-1, rows)
		// label: 'item-' and an md5 prefix, about 40 bytes; attrs: a small object of three keys.
		sql := fmt.Sprintf(`INSERT INTO %s
SELECT g, (g %% 1000)::int4, (g %% 100000) / 100.0, 'item-' || left(md5(g::text), 27) || '-' || lpad(g::text, 7, '0'),
	timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
	jsonb_build_object('k', g %% 97, 'tag', 't' || (g %% 13), 'ok', g %% 2 = 0)
FROM generate_series(%d, %d) AS g`, SnapshotTable, lo, hi)
		if err := execSQL(ctx, conn, sql); err != nil {
			return fmt.Errorf("insert snapshot rows %d..: %w", lo, err)
		}
	}
	if err := execSQL(ctx, conn, "VACUUM ANALYZE "+SnapshotTable); err != nil {
		return fmt.Errorf("vacuum snapshot table: %w", err)
	}
	return nil
}

// CopyResult is one COPY of a table to io.Discard over an ordinary connection.
type CopyResult struct {
	Rows int64
	// Wall is the COPY statement alone, from sending it to its completion: connecting is not
	// counted.
	Wall time.Duration
	// User and System are the CPU times of this whole process over Wall (getrusage RUSAGE_SELF).
	User, System time.Duration
}

// CopyOut connects to url and runs COPY (SELECT * FROM table) TO STDOUT in text format, discarding
// the data.
func CopyOut(ctx context.Context, url, table string) (CopyResult, error) {
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		return CopyResult{}, fmt.Errorf("connect for COPY: %w", err)
	}
	defer conn.Close(context.Background())
	u0, s0, err := selfCPU()
	if err != nil {
		return CopyResult{}, err
	}
	t := time.Now()
	tag, err := conn.CopyTo(ctx, io.Discard, "COPY (SELECT * FROM "+table+") TO STDOUT")
	wall := time.Since(t)
	if err != nil {
		return CopyResult{}, fmt.Errorf("COPY %s: %w", table, err)
	}
	u1, s1, err := selfCPU()
	if err != nil {
		return CopyResult{}, err
	}
	return CopyResult{Rows: tag.RowsAffected(), Wall: wall, User: u1 - u0, System: s1 - s0}, nil
}

// selfCPU returns the user and system time of this process.
func selfCPU() (user, sys time.Duration, err error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano()), nil
}

// SnapshotCount is what CheckSnapshotOutput found in a sink's output.
type SnapshotCount struct {
	Lines int64 // every line
	Reads int64 // lines of op "r"
	IDs   int64 // distinct ids of 1..rows among the reads
}

// CheckSnapshotOutput reads the JSON lines a file sink wrote for a snapshot of SnapshotTable (ids
// 1..rows) and returns an error wrapping ErrSnapshotOutput unless it holds exactly rows lines, each
// of op "r", with every id once. The id is read from the start of the after image, where the
// table's first column is.
func CheckSnapshotOutput(path string, rows int) (SnapshotCount, error) {
	f, err := os.Open(path)
	if err != nil {
		return SnapshotCount{}, err
	}
	defer f.Close()
	seen := make([]uint64, rows/64+1) // bit i: id i was read
	var c SnapshotCount
	var bad []string // the first few lines that are not a read of a table row
	br := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return c, fmt.Errorf("%w: a line of %s is longer than 1 MiB", ErrSnapshotOutput, path)
		}
		if len(line) > 0 && line[len(line)-1] == '\n' {
			c.Lines++
			id, ok := readID(line)
			switch {
			case !ok:
				if len(bad) < 3 {
					bad = append(bad, string(line[:min(len(line), 300)]))
				}
			case id < 1 || id > int64(rows):
				if len(bad) < 3 {
					bad = append(bad, fmt.Sprintf("id %d out of range", id))
				}
				c.Reads++
			default:
				c.Reads++
				w, b := id/64, uint64(1)<<(id%64)
				if seen[w]&b == 0 {
					seen[w] |= b
					c.IDs++
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return c, fmt.Errorf("read %s: %w", path, err)
		}
	}
	if c.Lines != int64(rows) || c.Reads != int64(rows) || c.IDs != int64(rows) {
		return c, fmt.Errorf("%w: %d lines, %d of op \"r\", %d distinct ids of 1..%d; want %d of each; first unexpected: %q",
			ErrSnapshotOutput, c.Lines, c.Reads, c.IDs, rows, rows, bad)
	}
	return c, nil
}

// readID returns the id column of an op "r" event line: {"id":"…","op":"r",…,"after":{"id":N,….
func readID(line []byte) (int64, bool) {
	const head = `{"id":"`
	if !bytes.HasPrefix(line, []byte(head)) {
		return 0, false
	}
	rest := line[len(head):]
	q := bytes.IndexByte(rest, '"')
	if q < 0 || !bytes.HasPrefix(rest[q:], []byte(`","op":"r",`)) {
		return 0, false
	}
	const after = `"after":{"id":`
	i := bytes.Index(rest, []byte(after))
	if i < 0 {
		return 0, false
	}
	rest = rest[i+len(after):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	id, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	if err != nil {
		return 0, false
	}
	return id, true
}

// LogProblems returns the lines of a JSON log file whose level is warn, error, dpanic, panic or
// fatal, at most limit of them, and how many there were in all.
func LogProblems(path string, limit int) ([]string, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	var out []string
	n := 0
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		info := bytes.Contains(line, []byte(`"level":"info"`)) || bytes.Contains(line, []byte(`"level":"debug"`))
		if info {
			continue
		}
		n++
		if len(out) < limit {
			out = append(out, string(line))
		}
	}
	return out, n, nil
}

// SnapshotRun is one measured snapshot client run.
type SnapshotRun struct {
	Client string
	Repeat int
	Rows   int64
	Usage  Usage
	// InProcess marks a client run inside the benchmark process: its CPU is the process's and it has
	// no peak RSS of its own.
	InProcess bool
}

// SnapshotSummary is the median of a snapshot client's repeats, compared with the baseline's.
type SnapshotSummary struct {
	Client      string
	Runs        int
	Wall        time.Duration // median
	RowsPerSec  float64       // Rows / median wall
	CPU         time.Duration // median user + system
	MaxRSSMiB   float64       // median peak RSS; 0 in-process
	WorstRSSMiB float64
	Ratio       float64 // RowsPerSec / the baseline's
	InProcess   bool
}

// SummarizeSnapshot groups runs by client, in order of first appearance, and compares each with
// baseline's rows/s.
func SummarizeSnapshot(runs []SnapshotRun, baseline string) []SnapshotSummary {
	order, by := byClient(runs, func(r SnapshotRun) string { return r.Client })
	out := make([]SnapshotSummary, 0, len(order))
	for _, c := range order {
		rs := by[c]
		var wall, cpu, rss []float64
		for _, r := range rs {
			wall = append(wall, r.Usage.Wall.Seconds())
			cpu = append(cpu, r.Usage.CPU().Seconds())
			rss = append(rss, float64(r.Usage.MaxRSS)/(1<<20))
		}
		s := SnapshotSummary{Client: c, Runs: len(rs), Wall: time.Duration(Median(wall) * float64(time.Second)),
			CPU: time.Duration(Median(cpu) * float64(time.Second)), MaxRSSMiB: Median(rss), InProcess: rs[0].InProcess}
		for _, x := range rss {
			s.WorstRSSMiB = max(s.WorstRSSMiB, x)
		}
		if s.Wall > 0 {
			s.RowsPerSec = float64(rs[0].Rows) / s.Wall.Seconds()
		}
		out = append(out, s)
	}
	for i := range out {
		for _, b := range out {
			if b.Client == baseline && b.RowsPerSec > 0 {
				out[i].Ratio = out[i].RowsPerSec / b.RowsPerSec
			}
		}
	}
	return out
}

// WriteSnapshotTables writes the snapshot summaries and every run as Markdown tables.
func WriteSnapshotTables(w io.Writer, baseline string, sums []SnapshotSummary, runs []SnapshotRun) {
	fmt.Fprintf(w, "\n| client | runs | wall s | rows/s | rows/s vs %s | client CPU s | peak RSS MiB (median / worst) |\n", baseline)
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, s := range sums {
		cpu, rss := fmt.Sprintf("%.2f", s.CPU.Seconds()), fmt.Sprintf("%.1f / %.1f", s.MaxRSSMiB, s.WorstRSSMiB)
		if s.InProcess {
			cpu, rss = fmt.Sprintf("(%.2f, benchmark process)", s.CPU.Seconds()), "—"
		}
		fmt.Fprintf(w, "| %s | %d | %.2f | %.0f | %.2f× | %s | %s |\n", s.Client, s.Runs, s.Wall.Seconds(), s.RowsPerSec, s.Ratio, cpu, rss)
	}
	fmt.Fprintln(w, "\n<details><summary>every snapshot run</summary>")
	fmt.Fprintln(w, "\n| client | repeat | wall s | user s | sys s | peak RSS MiB (VmHWM) |\n| --- | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range runs {
		rss := fmt.Sprintf("%.1f", float64(r.Usage.MaxRSS)/(1<<20))
		if r.InProcess {
			rss = "—"
		}
		fmt.Fprintf(w, "| %s | %d | %.2f | %.2f | %.2f | %s |\n", r.Client, r.Repeat, r.Usage.Wall.Seconds(),
			r.Usage.User.Seconds(), r.Usage.System.Seconds(), rss)
	}
	fmt.Fprintln(w, "\n</details>")
}
