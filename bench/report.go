package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Run is one measured client run on one workload.
type Run struct {
	Workload string
	Client   string
	Repeat   int
	Changes  int64 // row changes the workload produced
	Usage    Usage
}

// ClientSummary is the median of a client's repeats on one workload, compared with the baseline
// client's medians.
type ClientSummary struct {
	Client        string
	Runs          int
	Wall          time.Duration // median
	ChangesPerSec float64       // Changes / median wall
	CPUPerMillion float64       // median client CPU seconds per million changes
	MaxRSSMiB     float64       // median peak RSS
	WorstRSSMiB   float64       // the largest peak RSS of any repeat
	// Throughput is baseline wall / this wall (above 1: faster than the baseline). CPU is this
	// CPU per change / the baseline's (below 1: cheaper). Both are 0 when there is no baseline.
	Throughput float64
	CPU        float64
}

// Median returns the median of xs (the mean of the middle two for an even count); 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// byClient groups runs by client, and lists the clients in order of first appearance.
func byClient[R any](runs []R, client func(R) string) (order []string, by map[string][]R) {
	by = map[string][]R{}
	for _, r := range runs {
		c := client(r)
		if _, ok := by[c]; !ok {
			order = append(order, c)
		}
		by[c] = append(by[c], r)
	}
	return order, by
}

// SummarizeRuns groups the runs of one workload by client, in order of first appearance, and
// compares each client with baseline.
func SummarizeRuns(runs []Run, baseline string) []ClientSummary {
	order, by := byClient(runs, func(r Run) string { return r.Client })
	out := make([]ClientSummary, 0, len(order))
	for _, c := range order {
		rs := by[c]
		var wall, cpu, rss []float64
		for _, r := range rs {
			wall = append(wall, r.Usage.Wall.Seconds())
			cpu = append(cpu, r.Usage.CPU().Seconds()*1e6/float64(r.Changes))
			rss = append(rss, float64(r.Usage.MaxRSS)/(1<<20))
		}
		s := ClientSummary{Client: c, Runs: len(rs), Wall: time.Duration(Median(wall) * float64(time.Second)),
			CPUPerMillion: Median(cpu), MaxRSSMiB: Median(rss), WorstRSSMiB: slices.Max(rss)}
		if s.Wall > 0 {
			s.ChangesPerSec = float64(rs[0].Changes) / s.Wall.Seconds()
		}
		out = append(out, s)
	}
	for i := range out {
		for _, b := range out {
			if b.Client == baseline && out[i].Wall > 0 && b.CPUPerMillion > 0 {
				out[i].Throughput = b.Wall.Seconds() / out[i].Wall.Seconds()
				out[i].CPU = out[i].CPUPerMillion / b.CPUPerMillion
			}
		}
	}
	return out
}

// WriteSummaryTable writes summaries as a Markdown table.
func WriteSummaryTable(w io.Writer, workload string, changes int64, sums []ClientSummary) {
	fmt.Fprintf(w, "\n### %s (%d row changes, medians)\n\n", workload, changes)
	fmt.Fprintln(w, "| client | runs | wall s | changes/s | throughput vs pg_recvlogical | client CPU s / M changes | CPU vs pg_recvlogical | peak RSS MiB | worst peak RSS MiB |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, s := range sums {
		fmt.Fprintf(w, "| %s | %d | %.2f | %.0f | %.2f× | %.2f | %.2f× | %.1f | %.1f |\n", s.Client, s.Runs, s.Wall.Seconds(),
			s.ChangesPerSec, s.Throughput, s.CPUPerMillion, s.CPU, s.MaxRSSMiB, s.WorstRSSMiB)
	}
}

// WriteRunsTable writes every run as a Markdown table.
func WriteRunsTable(w io.Writer, runs []Run) {
	fmt.Fprintln(w, "\n| workload | client | repeat | wall s | user s | sys s | peak RSS MiB (VmHWM) | ru_maxrss MiB | read calls / change | write calls / change |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range runs {
		fmt.Fprintf(w, "| %s | %s | %d | %.2f | %.2f | %.2f | %.1f | %.1f | %.2f | %.2f |\n", r.Workload, r.Client, r.Repeat, r.Usage.Wall.Seconds(),
			r.Usage.User.Seconds(), r.Usage.System.Seconds(), float64(r.Usage.MaxRSS)/(1<<20), float64(r.Usage.RusageMaxRSS)/(1<<20),
			float64(r.Usage.ReadCalls)/float64(max(r.Changes, 1)), float64(r.Usage.WriteCalls)/float64(max(r.Changes, 1)))
	}
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs      int
	CPUModel  string
	MemoryMiB int64
	Kernel    string
	Go        string
	Postgres  string
}

// ReadMachine reads the CPU model and memory from /proc. Missing files leave fields empty.
func ReadMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	if mem := procField("/proc/meminfo", "MemTotal"); mem != "" {
		var kib int64
		if _, err := fmt.Sscanf(mem, "%d kB", &kib); err == nil {
			m.MemoryMiB = kib / 1024
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// procField returns the value of the first "key : value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Write writes the machine description as a Markdown list.
func (m Machine) Write(w io.Writer) {
	fmt.Fprintf(w, "- CPU: %d × %s\n- memory: %d MiB\n- kernel: Linux %s\n- Go: %s\n- PostgreSQL: %s\n",
		m.CPUs, m.CPUModel, m.MemoryMiB, m.Kernel, m.Go, m.Postgres)
}
