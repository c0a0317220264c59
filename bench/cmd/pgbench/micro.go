package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
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
