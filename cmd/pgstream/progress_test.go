package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pgstream/pgstream/internal/pipeline"
)

func TestRenderProgress(t *testing.T) {
	pr := pipeline.SnapshotProgress{Active: true, ChunksDone: 48, Chunks: 96, Rows: 3_348_211, RowsPerSec: 412_034, ETA: 8 * time.Second}
	for _, width := range []int{40, 80, 200} {
		s := renderProgress(pr, width)
		if len(s) > width {
			t.Errorf("width %d: %d columns: %q", width, len(s), s)
		}
		for _, want := range []string{"48/96 chunks", "3.3M rows", "412k rows/s", "ETA 8s"} {
			if width >= 80 && !strings.Contains(s, want) {
				t.Errorf("width %d: %q lacks %q", width, s, want)
			}
		}
	}
	if s := renderProgress(pr, 120); !strings.Contains(s, "["+strings.Repeat("#", 20)+strings.Repeat(".", 20)+"]") {
		t.Errorf("half done, bar %q", s)
	}
}

func TestProgressBarKeepsLogLinesApart(t *testing.T) {
	var out bytes.Buffer
	b := &progressBar{w: &out, width: 80}
	b.set("snapshot 1/2")
	if _, err := b.Write([]byte("a log line\n")); err != nil {
		t.Fatal(err)
	}
	b.set("")
	want := "\r\x1b[Ksnapshot 1/2" + "\r\x1b[Ka log line\nsnapshot 1/2" + "\r\x1b[K"
	if out.String() != want {
		t.Fatalf("terminal got %q, want %q", out.String(), want)
	}
}
