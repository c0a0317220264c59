package file_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pgstream/pgstream/sinks"
	"github.com/pgstream/pgstream/sinks/file"
	"github.com/pgstream/pgstream/sinks/sinktest"
)

// The file sink appends: a batch written again after a crash is in the file twice, with the same
// ids. Its write failures (a full disk, an I/O error) are tested with an injected file in
// file_test.go; the suite has no way to make a real file refuse.
func TestConformance(t *testing.T) {
	sinktest.Run(t, sinktest.Harness{
		Delivery: sinktest.AtLeastOnce,
		New: func(t *testing.T) (func() sinks.Sink, func() []sinktest.Record) {
			path := filepath.Join(t.TempDir(), "changes.jsonl")
			open := func() sinks.Sink {
				s, err := file.New(file.Config{Path: path}, sinks.Env{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			read := func() []sinktest.Record {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				return sinktest.Lines(t, data)
			}
			return open, read
		},
	})
}
