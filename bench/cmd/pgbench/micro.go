package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

var benchLine = regexp.MustCompile(`^(Benchmark\S+)\s+\d+\s+.*?(\d+(?:\.\d+)?) allocs/op`)

// microBenchmarks runs the decoder and encoder benchmarks and returns their result lines and
// allocs/op by benchmark name.
func microBenchmarks(ctx context.Context, goTool string) ([]string, map[string]float64, error) {
	logf("micro-benchmarks: go test -bench . -benchmem -benchtime=20000x ./walparse ./internal/events")
	cmd := exec.CommandContext(ctx, goTool, "test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime=20000x",
		"./walparse", "./internal/events")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, nil, fmt.Errorf("go test -bench: %w: %s", err, out)
	}
	var lines []string
	allocs := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "pkg:") || strings.HasPrefix(l, "cpu:") {
			lines = append(lines, l)
		}
		if mm := benchLine.FindStringSubmatch(l); mm != nil {
			v, _ := strconv.ParseFloat(mm[2], 64)
			allocs[mm[1]] = v
		}
	}
	return lines, allocs, nil
}

// writeMicro writes the micro-benchmark section of the report.
func (r *results) writeMicro(w io.Writer) {
	if len(r.micro) > 0 {
		fmt.Fprintln(w, "\n## Decoder and encoder (go test -bench . -benchmem -benchtime=20000x ./walparse ./internal/events)\n\n```")
		for _, s := range r.micro {
			fmt.Fprintln(w, s)
		}
		fmt.Fprintln(w, "```")
	}
}

// writeMicroTargets writes the allocation rows of the Targets table.
func (r *results) writeMicroTargets(w io.Writer) {
	if len(r.microAlloc) > 0 {
		worstDec, worstEnc := -1.0, -1.0
		for name, a := range r.microAlloc {
			switch {
			case strings.HasPrefix(name, "BenchmarkDecode"):
				worstDec = max(worstDec, a)
			case strings.HasPrefix(name, "BenchmarkEncode"):
				worstEnc = max(worstEnc, a)
			}
		}
		if worstDec >= 0 {
			fmt.Fprintf(w, "| walparse decode 0 allocs/op | worst %.0f allocs/op | %s |\n", worstDec, verdict(worstDec == 0))
		}
		if worstEnc >= 0 {
			fmt.Fprintf(w, "| encode ≤ 1 alloc/op | worst %.0f allocs/op | %s |\n", worstEnc, verdict(worstEnc <= 1))
		}
	}
}
