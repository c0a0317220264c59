package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgstream/pgstream/bench"
	"github.com/pgstream/pgstream/internal/testport"
)

// clientEndpoint is the file-sink client with its operations endpoint on (-endpoint), scraped
// while it runs. It is measured like clientFile, on its own sibling slot, in the same repeats.
const clientEndpoint = "pgstream file, endpoint on"

const (
	// scrapeInterval is how often the endpoint is scraped: more often than any Prometheus setup
	// (its default scrape_interval is 1m, busy setups use 10–15 s).
	scrapeInterval = time.Second
	// scrapeTimeout bounds one scrape: Prometheus's default scrape_timeout.
	scrapeTimeout = 10 * time.Second
	// startGrace: pgstream opens its endpoint once it has read its configuration and built its
	// sinks. Until it has answered once, a refused connection within startGrace of the start
	// means it has not opened it yet.
	startGrace = 30 * time.Second
	// exitGrace: at --endpos pgstream closes its endpoint as it exits. A scrape sent at most
	// exitGrace before it exited may end without an answer.
	exitGrace = 5 * time.Second
	// checkStop bounds how long the check run may take to exit after SIGTERM.
	checkStop = time.Minute
	// maxScrape bounds the size of an answer.
	maxScrape = 16 << 20
)

// scraper scrapes pgstream's GET /metrics on a port of 127.0.0.1 that nothing listened on when it
// was chosen, the way Prometheus does: at a fixed interval, over a kept-alive connection, asking
// for gzip (Go's transport does) and the text format. Not safe for concurrent use.
type scraper struct {
	listen string
	client *http.Client
}

func newScraper() (*scraper, error) {
	port, err := testport.Free()
	if err != nil {
		return nil, err
	}
	return &scraper{listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		client: &http.Client{Timeout: scrapeTimeout, Transport: &http.Transport{}}}, nil
}

// config is the http section of a pgstream configuration that opens the endpoint s scrapes.
func (s *scraper) config() string { return "http:\n  listen: " + s.listen + "\n" }

// close closes the kept-alive connection.
func (s *scraper) close() { s.client.CloseIdleConnections() }

// scrape is one GET /metrics.
type scrape struct {
	at     time.Time // when it was sent
	events float64   // the sum of pgstream_events_total's samples: 0 before a sink acknowledged an event
	err    error
	// noAnswer: err came before a whole answer; refused: nothing listened on the port.
	noAnswer, refused bool
}

// once scrapes the endpoint. An answer counts when its status is 200 and it holds
// pgstream_build_info (it is pgstream's) and well-formed pgstream_events_total samples, if any.
func (s *scraper) once(ctx context.Context) scrape {
	sc := scrape{at: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.listen+"/metrics", nil)
	if err != nil {
		sc.err = err
		return sc
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		sc.err, sc.noAnswer, sc.refused = err, true, errors.Is(err, syscall.ECONNREFUSED)
		return sc
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxScrape))
	switch {
	case err != nil:
		sc.err, sc.noAnswer = fmt.Errorf("read the answer: %w", err), true
	case resp.StatusCode != http.StatusOK:
		sc.err = fmt.Errorf("GET /metrics answered %s: %s", resp.Status, outputTail(body))
	default:
		sc.events, sc.err = scrapeEvents(body)
	}
	return sc
}

// scrapeEvents returns the sum of pgstream_events_total in an answer of GET /metrics, which must be
// pgstream's (hold pgstream_build_info).
func scrapeEvents(text []byte) (float64, error) {
	_, ok, err := sumSamples(text, "pgstream_build_info")
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, errors.New("the answer holds no pgstream_build_info: it is not pgstream's endpoint")
	}
	sum, _, err := sumSamples(text, "pgstream_events_total")
	return sum, err
}

// sumSamples returns the sum of the samples of the metric name in a Prometheus text exposition
// (`name{labels} value [timestamp]`, comments and other metrics skipped), and whether it has any.
func sumSamples(text []byte, name string) (sum float64, found bool, err error) {
	for i, line := range strings.Split(string(text), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" {
			continue
		}
		switch rest[0] {
		case '{':
			end := labelsEnd(rest)
			if end < 0 {
				return 0, false, fmt.Errorf("line %d: %s: labels not closed: %q", i+1, name, line)
			}
			rest = rest[end+1:]
		case ' ', '\t':
		default:
			continue // another metric whose name starts with name
		}
		f := strings.Fields(rest)
		if len(f) != 1 && len(f) != 2 {
			return 0, false, fmt.Errorf("line %d: %s: want a value and an optional timestamp: %q", i+1, name, line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, false, fmt.Errorf("line %d: %s: %w", i+1, name, err)
		}
		sum, found = sum+v, true
	}
	return sum, found, nil
}

// labelsEnd returns the index of the '}' closing the labels that s starts with, or -1. Label
// values are quoted and may hold '}' and escaped quotes.
func labelsEnd(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '}':
			return i
		}
	}
	return -1
}

// every scrapes every scrapeInterval, from one interval after it is called, until stop is closed
// (cancelling a scrape under way) or enough, when not nil, returns true for the scrapes so far. It
// returns the scrapes.
func (s *scraper) every(stop <-chan struct{}, enough func([]scrape) bool) []scrape {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	t := time.NewTicker(scrapeInterval)
	defer t.Stop()
	var out []scrape
	for {
		select {
		case <-stop:
			return out
		case <-t.C:
		}
		out = append(out, s.once(ctx))
		if enough != nil && enough(out) {
			return out
		}
	}
}

// judgeScrapes checks the scrapes of a pgstream run that started at start and exited by itself at
// exit (zero: it was stopped, having not exited by itself). A scrape may go unanswered only while
// pgstream had not opened its endpoint yet (refused, before any answer, within startGrace of the
// start) or on its way out (sent at most exitGrace before it exited); every answer must be
// well-formed, and its events sum at most changes and not below the previous answer's. It returns
// the number of answers and the last answer's sum.
func judgeScrapes(scrapes []scrape, start, exit time.Time, changes int64) (answered int, last float64, err error) {
	for _, sc := range scrapes {
		at := sc.at.Sub(start).Seconds()
		switch {
		case sc.err == nil && sc.events > float64(changes):
			return answered, last, fmt.Errorf("the scrape at +%.1f s counted %.0f events (pgstream_events_total), more than the workload's %d changes", at, sc.events, changes)
		case sc.err == nil && sc.events < last:
			return answered, last, fmt.Errorf("pgstream_events_total went down from %.0f to %.0f (the scrape at +%.1f s)", last, sc.events, at)
		case sc.err == nil:
			answered, last = answered+1, sc.events
		case sc.refused && answered == 0 && sc.at.Sub(start) < startGrace:
			// pgstream has not opened its endpoint yet
		case sc.noAnswer && !exit.IsZero() && exit.Sub(sc.at) <= exitGrace:
			// pgstream closed its endpoint as it exited
		default:
			return answered, last, fmt.Errorf("the scrape at +%.1f s failed (%d answered before it): %w", at, answered, sc.err)
		}
	}
	return answered, last, nil
}

// during runs cmd, a pgstream run with --endpos whose configuration holds s.config(), with
// bench.RunChild, and scrapes it every scrapeInterval while it runs. It fails when cmd fails or
// judgeScrapes finds a fault; scrapes is the number of answered scrapes.
func (s *scraper) during(cmd *exec.Cmd, timeout time.Duration, changes int64) (u bench.Usage, scrapes int, err error) {
	stop := make(chan struct{})
	got := make(chan []scrape, 1)
	start := time.Now()
	go func() { got <- s.every(stop, nil) }()
	u, err = bench.RunChild(cmd, timeout)
	exit := time.Now()
	close(stop)
	all := <-got
	if err != nil {
		return u, 0, err
	}
	scrapes, _, err = judgeScrapes(all, start, exit, changes)
	return u, scrapes, err
}

// checkSlots returns the slot of the workload's check run (checkEndpoint), or none without
// -endpoint.
func (m *measurer) checkSlots(workload string) []string {
	if !m.o.endpoint {
		return nil
	}
	return []string{workload + "_endpoint_check"}
}

// checkEndpoint runs pgstream with its endpoint on the workload's check slot, without --endpos and
// unmeasured; scrapes it every scrapeInterval until pgstream_events_total reaches the workload's
// changes; then stops it with SIGTERM. Every scrape must be answered once the endpoint is open
// (judgeScrapes), and the final one must count exactly changes. A measured run cannot show that
// last figure: it ends at --endpos and closes its endpoint with it, so no scrape follows its last
// acknowledgement. Does nothing without -endpoint.
func (m *measurer) checkEndpoint(ctx context.Context, res *results, workload string, changes int64) error {
	slots := m.checkSlots(workload)
	if len(slots) == 0 {
		return nil
	}
	scrapes, final, err := m.endpointCheckRun(ctx, slots[0], changes)
	if err != nil {
		return fmt.Errorf("%s, %s, check run: %w", workload, clientEndpoint, err)
	}
	logf("%-6s %-26s check run: %d scrapes, the last counted %.0f events", workload, clientEndpoint, scrapes, final)
	f := res.endpoint.of(workload)
	f.checkScrapes, f.checkEvents, f.checked = scrapes, final, true
	return bench.DropSlots(ctx, m.conn, slots)
}

func (m *measurer) endpointCheckRun(ctx context.Context, slot string, changes int64) (scrapes int, final float64, err error) {
	dir, err := os.MkdirTemp(m.work, slot+"-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	scr, err := newScraper()
	if err != nil {
		return 0, 0, err
	}
	defer scr.close()
	out := filepath.Join(dir, "out.jsonl")
	cfg := streamConfig(m.url, slot, filepath.Join(dir, "checkpoint"), fileSink(out), m.pipelineLines()) + scr.config()
	cmd, err := m.pgstreamCmd(ctx, false, dir, cfg)
	if err != nil {
		return 0, 0, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := make(chan struct{})
	got := make(chan []scrape, 1)
	go func() {
		got <- scr.every(stop, func(ss []scrape) bool {
			_, last, err := judgeScrapes(ss, start, time.Time{}, changes)
			return err != nil || last == float64(changes)
		})
	}()
	timeout := time.NewTimer(m.o.timeout)
	defer timeout.Stop()
	var all []scrape
	select {
	case all = <-got:
	case err := <-exited:
		close(stop)
		<-got
		return 0, 0, fmt.Errorf("pgstream exited before a scrape counted every event: %v: %s", err, outputTail(stderr.Bytes()))
	case <-timeout.C:
		close(stop)
		<-got
		_ = cmd.Process.Kill()
		<-exited
		return 0, 0, fmt.Errorf("no scrape counted all %d events within %s (-run-timeout)", changes, m.o.timeout)
	case <-ctx.Done():
		close(stop)
		<-got
		<-exited // ctx kills the command
		return 0, 0, ctx.Err()
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, 0, err
	}
	select {
	case err := <-exited:
		if err != nil {
			return 0, 0, fmt.Errorf("pgstream stopped with SIGTERM: %w: %s", err, outputTail(stderr.Bytes()))
		}
	case <-time.After(checkStop):
		_ = cmd.Process.Kill()
		<-exited
		return 0, 0, fmt.Errorf("pgstream did not exit within %s of SIGTERM", checkStop)
	}
	scrapes, final, err = judgeScrapes(all, start, time.Time{}, changes)
	if err != nil {
		return scrapes, final, err
	}
	if final != float64(changes) {
		return scrapes, final, fmt.Errorf("the final scrape counted %.0f events (pgstream_events_total), the workload made %d changes", final, changes)
	}
	if n, err := bench.CountLines(out); err != nil || n != changes {
		return scrapes, final, errors.Join(err, fmt.Errorf("the file sink holds %d events, the workload made %d changes", n, changes))
	}
	return scrapes, final, nil
}

// endpointFigures is what the scrapes of one workload's endpoint-on runs showed.
type endpointFigures struct {
	scrapes      []int   // answered scrapes of each measured run, in the order they ran
	checked      bool    // the check run completed
	checkScrapes int     // its answered scrapes
	checkEvents  float64 // its final scrape's pgstream_events_total
}

// endpointResults holds the endpoint figures by workload; nil without -endpoint.
type endpointResults map[string]*endpointFigures

func (e endpointResults) of(workload string) *endpointFigures {
	if e[workload] == nil {
		e[workload] = &endpointFigures{}
	}
	return e[workload]
}

// endpointPair compares the endpoint-on client with the same client with the endpoint off.
var endpointPair = pair{cur: clientEndpoint, ref: clientFile, curWord: "on", refWord: "off"}

// writeEndpoint writes the endpoint-on client's medians beside the file-sink client's, and what
// the scrapes counted.
func (r *results) writeEndpoint(w io.Writer, wls []workloadSums) {
	fmt.Fprintf(w, "\n### %s against %s (medians)\n\n", clientEndpoint, clientFile)
	fmt.Fprintf(w, "The file-sink client with its operations endpoint on (`http.listen` on 127.0.0.1) and scraped (GET /metrics) every %s by the benchmark while it runs, "+
		"against the same client with the endpoint off, each on its own sibling slot of the same changes, in the same repeats; ratios are on / off. "+
		"The endpoint costs less than 5%%: throughput ratio ≥ %.2f and CPU-per-change ratio ≤ %.2f.\n\n", scrapeInterval, minThroughputRatio, maxCPURatio)
	writeVersusTable(w, endpointPair, wls)
	fmt.Fprintf(w, "\nA check run per workload (unmeasured, without --endpos) is scraped until pgstream_events_total counts every change, then stopped with SIGTERM; "+
		"a measured run ends at --endpos and closes its endpoint with it, so its last scrape precedes its last acknowledgement.\n\n")
	fmt.Fprintln(w, "| workload | answered scrapes per measured run | check run: answered scrapes | its final pgstream_events_total | the workload's changes |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: |")
	for _, wl := range wls {
		if len(wl.sums) == 0 {
			continue
		}
		f := r.endpoint[wl.name]
		if f == nil {
			f = &endpointFigures{}
		}
		runs := make([]string, len(f.scrapes))
		for i, n := range f.scrapes {
			runs[i] = strconv.Itoa(n)
		}
		check, final := "not run", "–"
		if f.checked {
			check, final = strconv.Itoa(f.checkScrapes), fmt.Sprintf("%.0f", f.checkEvents)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %d |\n", wl.name, strings.Join(runs, ", "), check, final, r.changes[wl.name])
	}
}

// writeEndpointTarget writes the endpoint's row of the Targets table for a workload.
func (r *results) writeEndpointTarget(w io.Writer, wl workloadSums) {
	target := fmt.Sprintf("metrics endpoint costs < 5%% throughput/CPU (%s, file sink scraped every %s; met when throughput ≥ %.2f× and CPU per change ≤ %.2f× endpoint off, medians)",
		wl.name, scrapeInterval, minThroughputRatio, maxCPURatio)
	v, _, _, ok := versusOf(wl.sums, endpointPair)
	if !ok {
		fmt.Fprintf(w, "| %s | no endpoint-on figure | NOT met |\n", target)
		return
	}
	fmt.Fprintf(w, "| %s | %s | %s |\n", target, v.streamFigures(), verdict(v.ok()))
}
