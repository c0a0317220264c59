package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pgstream/pgstream/bench"
)

type options struct {
	sizes      bench.Sizes
	repeats    int
	rate       int
	latencyDur time.Duration
	latConns   int
	out        string
	workdir    string
	goTool     string
	phases     map[string]bool
	profile    bool
	ckInterval time.Duration
	timeout    time.Duration
	env        listFlag // extra environment of the pgstream child processes
	snapRows   int
	snapWork   []int    // snapshot.workers of the measured snapshot runs
	pipeline   listFlag // extra key: value lines of the pgstream pipeline section
	baseline   string   // a git revision to build and measure beside the current tree; "": none
	endpoint   bool     // also measure the file-sink client with its operations endpoint on, scraped
}

// listFlag collects the values of a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func (o options) has(phase string) bool { return o.phases[phase] }

// parseOptions defines the flags, parses the command line and checks the values. Its error is a
// usage error, for the caller to report before exiting with status 2.
func parseOptions() (options, error) {
	var o options
	flag.IntVar(&o.sizes.Rows, "rows", 1_000_000, "rows inserted by the mixed workload (updates and deletes are 20% and 10% of it)")
	flag.IntVar(&o.sizes.BigTxRows, "bigtx-rows", 1_000_000, "rows of the single-transaction workload")
	flag.IntVar(&o.repeats, "repeats", 3, "runs of each client per workload (medians are reported)")
	flag.IntVar(&o.rate, "rate", 2000, "single-row transactions per second of the latency run")
	flag.DurationVar(&o.latencyDur, "latency-duration", 10*time.Second, "length of the latency run")
	flag.IntVar(&o.latConns, "latency-conns", 4, "connections the latency load is spread over")
	flag.StringVar(&o.out, "out", "bench/out", "directory for results.md, the CPU profile and its pprof -top")
	flag.StringVar(&o.workdir, "workdir", "", "scratch directory for the binary and the sinks' output (default: a new temporary directory)")
	flag.StringVar(&o.goTool, "go", "go", "the go command, for building pgstream and running the micro-benchmarks")
	phases := flag.String("phases", "mixed,bigtx,snapshot,latency,micro", "comma-separated phases to run: mixed, bigtx, snapshot, latency, micro (the walparse and events go test benchmarks)")
	flag.DurationVar(&o.ckInterval, "latency-checkpoint-interval", 0, "pipeline checkpoint_interval of the latency run (0: pgstream's default)")
	flag.BoolVar(&o.profile, "profile", true, "profile an in-process pipeline run on the mixed workload")
	flag.DurationVar(&o.timeout, "run-timeout", 10*time.Minute, "a measured client still running after this is killed and the benchmark fails")
	flag.Var(&o.env, "env", "KEY=VALUE added to the environment of pgstream runs (repeatable), e.g. GOMEMLIMIT=48MiB")
	flag.IntVar(&o.snapRows, "snapshot-rows", 2_000_000, "rows of the snapshot table (0 skips the snapshot phase)")
	snapWorkers := flag.String("snapshot-workers", "2,1", "comma-separated snapshot.workers values, one measured pgstream snapshot run each per repeat")
	flag.Var(&o.pipeline, "pipeline", "key=value added to the pipeline section of pgstream's configuration (repeatable), e.g. max_in_flight_bytes=8388608")
	flag.StringVar(&o.baseline, "baseline", "", "a git revision of this repository (e.g. main or HEAD~1) to build and measure beside the current tree in the mixed, bigtx and snapshot phases, with its current/baseline ratios in the report (empty: none)")
	flag.BoolVar(&o.endpoint, "endpoint", true, "also measure, in the mixed and bigtx phases, pgstream with the file sink and its operations endpoint on (http.listen on 127.0.0.1, GET /metrics scraped every second), beside the same client with it off, with on/off ratios and a \"metrics endpoint costs < 5%\" target in the report; -endpoint=false leaves it out")
	flag.Parse()
	o.phases = map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "mixed", "bigtx", "snapshot", "latency", "micro":
			o.phases[p] = true
		default:
			return o, fmt.Errorf("unknown phase %q: use mixed, bigtx, snapshot, latency, micro", p)
		}
	}
	if o.snapRows < 0 {
		return o, errors.New("-snapshot-rows must not be negative")
	}
	if o.snapRows == 0 {
		delete(o.phases, "snapshot")
	}
	for _, w := range strings.Split(*snapWorkers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-snapshot-workers %q: want positive numbers separated by commas", *snapWorkers)
		}
		o.snapWork = append(o.snapWork, n)
	}
	for _, kv := range append(append([]string(nil), o.env...), o.pipeline...) {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return o, fmt.Errorf("%q: want key=value", kv)
		}
	}
	if o.baseline != strings.TrimSpace(o.baseline) || strings.HasPrefix(o.baseline, "-") {
		return o, fmt.Errorf("-baseline %q: want a git revision such as main, HEAD~1 or a commit hash", o.baseline)
	}
	if err := o.sizes.Validate(); err != nil {
		return o, err
	}
	if o.repeats < 1 || o.rate < 1 || o.latConns < 1 || o.latencyDur <= 0 {
		return o, errors.New("-repeats, -rate, -latency-conns and -latency-duration must be positive")
	}
	return o, nil
}
