package main

import (
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
}

// listFlag collects the values of a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func (o options) has(phase string) bool { return o.phases[phase] }
