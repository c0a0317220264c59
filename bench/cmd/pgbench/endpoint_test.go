package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/httpapi"
	"github.com/pgstream/pgstream/internal/metrics"
	"github.com/pgstream/pgstream/internal/testport"
)

// TestMain lets the test binary stand in for pgstream's endpoint (fakeEndpoint) as a child process.
func TestMain(m *testing.M) {
	if listen := os.Getenv("PGBENCH_TEST_ENDPOINT"); listen != "" {
		if err := fakeEndpoint(listen, strings.Split(os.Getenv("PGBENCH_TEST_ANSWERS"), ",")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeEndpoint serves pgstream's GET /metrics on listen, one answer per scrape: a number is the
// pgstream_events_total to count by then, "fail" a 500. It returns once it has served the last.
func fakeEndpoint(listen string, answers []string) error {
	m := metrics.New("test")
	h := httpapi.Handler(httpapi.Options{Metrics: m})
	var mu sync.Mutex // guards served, counted
	served, counted := 0, 0
	done := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if served == len(answers) {
			panic(http.ErrAbortHandler) // shutting down: no answer
		}
		a := answers[served]
		served++
		if served == len(answers) {
			defer close(done)
		}
		if a == "fail" {
			http.Error(w, "failing on purpose", http.StatusInternalServerError)
			return
		}
		n, err := strconv.Atoi(a)
		if err != nil {
			panic(err)
		}
		var ops [256]int
		ops['c'] = n - counted
		counted = n
		m.SinkWrite("file", 0.001, &ops, false)
		h.ServeHTTP(w, r)
	})}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	go func() { _ = srv.Serve(ln) }()
	<-done
	return srv.Shutdown(context.Background()) // waits for the last answer
}

func TestSumSamples(t *testing.T) {
	text := `# HELP pgstream_events_total Events acknowledged by a sink.
# TYPE pgstream_events_total counter
pgstream_events_total{op="c",sink="file"} 1000
pgstream_events_total{op="u",sink="a } \" {op"} 200 1712345678000
pgstream_events_total{op="d",sink="file"} 1e+02
pgstream_events_total_created{op="c",sink="file"} 1.7e+09
pgstream_events 5
pgstream_sink_errors_total{sink="file"} 0
pgstream_build_info{goversion="go1.26",version="dev"} 1
pgstream_transactions_total 42
`
	for _, tc := range []struct {
		name  string
		sum   float64
		found bool
	}{
		{"pgstream_events_total", 1300, true},
		{"pgstream_build_info", 1, true},
		{"pgstream_transactions_total", 42, true},
		{"pgstream_sink_errors_total", 0, true},
		{"pgstream_reconnects_total", 0, false},
	} {
		sum, found, err := sumSamples([]byte(text), tc.name)
		if err != nil || sum != tc.sum || found != tc.found {
			t.Errorf("%s: %v, %v, %v; want %v, %v", tc.name, sum, found, err, tc.sum, tc.found)
		}
	}
	for _, bad := range []string{
		`pgstream_events_total{op="c",sink="file} 1`,
		`pgstream_events_total{op="c"} one`,
		`pgstream_events_total{op="c"} 1 2 3`,
		`pgstream_events_total{op="c"}`,
	} {
		if _, _, err := sumSamples([]byte(bad+"\n"), "pgstream_events_total"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// A scrape of pgstream's handler sums pgstream_events_total over every sink and op; an answer
// that is not pgstream's, or not 200, is a failed scrape with an answer; nothing listening is a
// refused one.
func TestScrapeOnce(t *testing.T) {
	m := metrics.New("test")
	var ops [256]int
	ops['c'], ops['u'] = 3, 2
	m.SinkWrite("file", 0.001, &ops, false)
	ops = [256]int{}
	ops['d'] = 1
	m.SinkWrite("kafka", 0.001, &ops, false)
	m.SinkWrite("kafka", 0.001, &ops, true) // failed: not counted
	pg := httptest.NewServer(httpapi.Handler(httpapi.Options{Metrics: m}))
	defer pg.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "pgstream_events_total 6")
	}))
	defer other.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer failing.Close()
	port, err := testport.Free()
	if err != nil {
		t.Fatal(err)
	}

	scrapeOf := func(listen string) scrape {
		s := &scraper{listen: listen, client: &http.Client{Timeout: scrapeTimeout, Transport: &http.Transport{}}}
		defer s.close()
		return s.once(context.Background())
	}
	if sc := scrapeOf(pg.Listener.Addr().String()); sc.err != nil || sc.events != 6 {
		t.Errorf("pgstream's endpoint: %+v", sc)
	}
	if sc := scrapeOf(other.Listener.Addr().String()); sc.err == nil || sc.noAnswer || !strings.Contains(sc.err.Error(), "no pgstream_build_info") {
		t.Errorf("another program's endpoint: %+v", sc)
	}
	if sc := scrapeOf(failing.Listener.Addr().String()); sc.err == nil || sc.noAnswer || !strings.Contains(sc.err.Error(), "500") {
		t.Errorf("an endpoint answering 500: %+v", sc)
	}
	if sc := scrapeOf(net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); sc.err == nil || !sc.noAnswer || !sc.refused {
		t.Errorf("nothing listening: %+v", sc)
	}
}

func TestJudgeScrapes(t *testing.T) {
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	answer := func(s, events float64) scrape { return scrape{at: at(s), events: events} }
	refused := func(s float64) scrape {
		return scrape{at: at(s), err: errors.New("connection refused"), noAnswer: true, refused: true}
	}
	reset := func(s float64) scrape { return scrape{at: at(s), err: errors.New("EOF"), noAnswer: true} }
	status := func(s float64) scrape { return scrape{at: at(s), err: errors.New("GET /metrics answered 500")} }
	for _, tc := range []struct {
		name     string
		scrapes  []scrape
		exit     time.Time
		answered int
		last     float64
		err      string
	}{
		{"answers", []scrape{answer(1, 0), answer(2, 50), answer(3, 50), answer(4, 100)}, at(4.5), 4, 100, ""},
		{"none", nil, at(0.5), 0, 0, ""},
		{"not open yet", []scrape{refused(1), refused(2), answer(3, 10)}, at(10), 1, 10, ""},
		{"never opened", []scrape{refused(1), refused(31)}, at(40), 0, 0, "the scrape at +31.0 s failed (0 answered before it): connection refused"},
		{"closed on its way out", []scrape{answer(1, 10), answer(2, 60), refused(3)}, at(3.01), 2, 60, ""},
		{"cut off as it exits", []scrape{answer(1, 10), reset(2)}, at(6.9), 1, 10, ""},
		{"closed while it ran", []scrape{answer(1, 10), refused(2), answer(3, 20)}, at(20), 1, 10, "the scrape at +2.0 s failed (1 answered before it): connection refused"},
		{"closed, then ran on", []scrape{answer(1, 10), refused(2)}, at(7.1), 1, 10, "the scrape at +2.0 s failed"},
		{"a bad answer as it exits", []scrape{answer(1, 10), status(2)}, at(2.1), 1, 10, "the scrape at +2.0 s failed (1 answered before it): GET /metrics answered 500"},
		{"too many events", []scrape{answer(1, 10), answer(2, 101)}, at(3), 1, 10, "the scrape at +2.0 s counted 101 events (pgstream_events_total), more than the workload's 100 changes"},
		{"events went down", []scrape{answer(1, 10), answer(2, 9)}, at(3), 1, 10, "pgstream_events_total went down from 10 to 9 (the scrape at +2.0 s)"},
		{"stopped, not exited: nothing is on its way out", []scrape{answer(1, 10), refused(2)}, time.Time{}, 1, 10, "the scrape at +2.0 s failed"},
		{"stopped, not started yet", []scrape{refused(1), answer(2, 100)}, time.Time{}, 1, 100, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, last, err := judgeScrapes(tc.scrapes, start, tc.exit, 100)
			if n != tc.answered || last != tc.last {
				t.Errorf("answered %d, last %v; want %d, %v", n, last, tc.answered, tc.last)
			}
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("err %v, want %q", err, tc.err)
			}
		})
	}
}

// A run is scraped every second while it runs; the scrape that finds its endpoint closing as it
// exits does not count, a failed answer fails the run.
func TestScrapeDuring(t *testing.T) {
	for _, tc := range []struct {
		answers  string
		answered int
		err      string
	}{
		{"3,5", 2, ""},
		{"3,fail,5", 0, "(1 answered before it): GET /metrics answered 500 Internal Server Error: failing on purpose"},
		{"7", 0, "counted 7 events (pgstream_events_total), more than the workload's 5 changes"},
	} {
		t.Run(tc.answers, func(t *testing.T) {
			t.Parallel()
			s, err := newScraper()
			if err != nil {
				t.Fatal(err)
			}
			defer s.close()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "PGBENCH_TEST_ENDPOINT="+s.listen, "PGBENCH_TEST_ANSWERS="+tc.answers)
			_, n, err := s.during(cmd, 5*time.Minute, 5)
			if tc.err == "" && (err != nil || n != tc.answered) {
				t.Errorf("answered %d, err %v; want %d", n, err, tc.answered)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("err %v, want %q", err, tc.err)
			}
		})
	}
}
