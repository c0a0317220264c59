package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/pgstream/pgstream/sinks"
)

// ErrNoTimestamp is returned by ColumnTime when the event's after image has no such timestamp.
var ErrNoTimestamp = errors.New("no timestamp column in the after image")

// ColumnTime returns the timestamptz column col of the "after" image of an encoded event value
// (docs/format.md: RFC 3339 in UTC). It scans the JSON text without decoding the whole event.
func ColumnTime(value []byte, col string) (time.Time, error) {
	i := bytes.Index(value, []byte(`"after":{`))
	if i < 0 {
		return time.Time{}, fmt.Errorf("%w: no after image", ErrNoTimestamp)
	}
	rest := value[i:]
	key := `"` + col + `":"`
	j := bytes.Index(rest, []byte(key))
	if j < 0 {
		return time.Time{}, fmt.Errorf("%w: no %q", ErrNoTimestamp, col)
	}
	rest = rest[j+len(key):]
	k := bytes.IndexByte(rest, '"')
	if k < 0 {
		return time.Time{}, fmt.Errorf("%w: unterminated %q", ErrNoTimestamp, col)
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:k]))
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %w", ErrNoTimestamp, err)
	}
	return t, nil
}

// LatencySink wraps a sink and, each time the inner Write returns nil, records for every event of
// one table how long after its timestamp column (filled by clock_timestamp() at insert) the event
// was acknowledged. Write follows the sinks.Sink contract (never concurrent); Count and Latencies
// are safe to call from other goroutines.
type LatencySink struct {
	inner  sinks.Sink
	table  string
	column string
	now    func() time.Time

	mu     sync.Mutex
	lat    []time.Duration
	writes []WriteLatency
	err    error // first event whose timestamp could not be read
}

// WriteLatency describes one acknowledged Write holding events of the timed table.
type WriteLatency struct {
	Acked  time.Time     // when the inner Write returned
	Events int           // events of the timed table in it
	Max    time.Duration // the largest latency among them
}

var _ sinks.Sink = (*LatencySink)(nil)

// NewLatencySink wraps inner, timing events of table by their column timestamp.
func NewLatencySink(inner sinks.Sink, table, column string) *LatencySink {
	return &LatencySink{inner: inner, table: table, column: column, now: time.Now}
}

// Write passes b to the inner sink, then records the latencies of its events.
func (s *LatencySink) Write(ctx context.Context, b *sinks.Batch) error {
	if err := s.inner.Write(ctx, b); err != nil {
		return err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	w := WriteLatency{Acked: now}
	for i := range b.Events {
		ev := &b.Events[i]
		if ev.Table != s.table || ev.Op != sinks.OpCreate {
			continue
		}
		t0, err := ColumnTime(ev.Value, s.column)
		if err != nil {
			if s.err == nil {
				s.err = fmt.Errorf("event %s: %w", ev.ID(), err)
			}
			continue
		}
		d := now.Sub(t0)
		s.lat = append(s.lat, d)
		w.Events++
		w.Max = max(w.Max, d)
	}
	if w.Events > 0 {
		s.writes = append(s.writes, w)
	}
	return nil
}

// Writes returns a copy of the per-Write records, in order.
func (s *LatencySink) Writes() []WriteLatency {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.writes)
}

// Close closes the inner sink; it is idempotent when the inner sink's Close is.
func (s *LatencySink) Close() error { return s.inner.Close() }

// Count is the number of latencies recorded so far.
func (s *LatencySink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lat)
}

// Latencies returns a copy of the recorded latencies and the first timestamp that could not be read.
func (s *LatencySink) Latencies() ([]time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lat), s.err
}

// LatencySummary holds nearest-rank percentiles of a latency sample.
type LatencySummary struct {
	N             int
	P50, P99, Max time.Duration
}

// Summarize computes the summary of lat (which it sorts).
func Summarize(lat []time.Duration) LatencySummary {
	if len(lat) == 0 {
		return LatencySummary{}
	}
	slices.Sort(lat)
	return LatencySummary{N: len(lat), P50: Percentile(lat, 0.50), P99: Percentile(lat, 0.99), Max: lat[len(lat)-1]}
}

// Percentile returns the nearest-rank p-quantile (0 < p <= 1) of sorted, which must not be empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(p*float64(len(sorted)) + 0.999999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// LoadResult is what DriveLoad achieved.
type LoadResult struct {
	Sent    int
	Elapsed time.Duration
	Late    int // transactions started more than one interval after their scheduled time
}

// DriveLoad inserts single-row transactions into LatencyTable at rate per second for d, open loop:
// transaction i is due at start + i/rate, spread over conns connections to url. A connection that
// falls behind runs its due transactions back to back. It returns after the last transaction.
func DriveLoad(ctx context.Context, url string, rate int, d time.Duration, conns int) (LoadResult, error) {
	if rate <= 0 || d <= 0 || conns <= 0 {
		return LoadResult{}, errors.New("drive load: rate, duration and connections must be positive")
	}
	var late [64]int // per connection
	if conns > len(late) {
		return LoadResult{}, fmt.Errorf("drive load: at most %d connections", len(late))
	}
	total := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	cs := make([]*pgconn.PgConn, conns)
	defer func() {
		for _, c := range cs {
			if c != nil {
				_ = c.Close(context.Background())
			}
		}
	}()
	for i := range cs {
		c, err := pgconn.Connect(ctx, url)
		if err != nil {
			return LoadResult{}, fmt.Errorf("connect load connection: %w", err)
		}
		cs[i] = c
	}
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	for w, c := range cs {
		g.Go(func() error {
			sql := "INSERT INTO " + LatencyTable + " (payload) VALUES ('latency probe')"
			for i := w; i < total; i += conns {
				due := start.Add(time.Duration(i) * interval)
				if wait := time.Until(due); wait > 0 {
					t := time.NewTimer(wait)
					select {
					case <-t.C:
					case <-gctx.Done():
						t.Stop()
						return gctx.Err()
					}
				} else if -wait > interval {
					late[w]++
				}
				if _, err := c.Exec(gctx, sql).ReadAll(); err != nil {
					return fmt.Errorf("insert latency probe: %w", err)
				}
			}
			return nil
		})
	}
	err := g.Wait()
	res := LoadResult{Sent: total, Elapsed: time.Since(start)}
	for _, n := range late[:conns] {
		res.Late += n
	}
	return res, err
}
