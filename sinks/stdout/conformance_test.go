package stdout_test

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/sinks/sinktest"
	"github.com/pgstream/pgstream/sinks/stdout"
)

// output is a standard output that can be made to fail.
type output struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	refuse bool
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.refuse {
		return 0, errors.New("broken pipe")
	}
	return o.buf.Write(p)
}

func TestConformance(t *testing.T) {
	var cur *output
	sinktest.Run(t, sinktest.Harness{
		Delivery: sinktest.AtLeastOnce,
		New: func(t *testing.T) (func() sinks.Sink, func() []sinktest.Record) {
			out := &output{}
			cur = out
			open := func() sinks.Sink {
				s, err := stdout.New(stdout.Config{}, sinks.Env{Stdout: out})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			read := func() []sinktest.Record {
				out.mu.Lock()
				defer out.mu.Unlock()
				return sinktest.Lines(t, out.buf.Bytes())
			}
			return open, read
		},
		Refuse: func(*testing.T) func() {
			out := cur
			out.mu.Lock()
			out.refuse = true
			out.mu.Unlock()
			return func() {
				out.mu.Lock()
				out.refuse = false
				out.mu.Unlock()
			}
		},
	})
}
