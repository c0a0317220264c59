package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/pgstream/pgstream/internal/pipeline"
)

// progressBar keeps one status line at the bottom of a terminal while a snapshot runs. Everything
// else written to the terminal goes through Write, which clears the line first and draws it again
// after, so log lines never run into it. Safe for concurrent use.
type progressBar struct {
	mu    sync.Mutex
	w     io.Writer
	width int
	line  string
}

// newProgressBar returns a bar on w when w is a terminal, else nil.
func newProgressBar(w io.Writer) *progressBar {
	if !isTerminal(w) {
		return nil
	}
	width, _, err := term.GetSize(int(w.(*os.File).Fd()))
	if err != nil || width < 40 {
		width = 80
	}
	return &progressBar{w: w, width: width}
}

func (b *progressBar) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.line != "" {
		_, _ = io.WriteString(b.w, "\r\x1b[K")
	}
	n, err := b.w.Write(p)
	if b.line != "" {
		_, _ = io.WriteString(b.w, b.line)
	}
	return n, err
}

// set replaces the status line; "" removes it.
func (b *progressBar) set(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if line == b.line {
		return
	}
	_, _ = io.WriteString(b.w, "\r\x1b[K"+line)
	b.line = line
}

// follow draws p's snapshot progress every 250ms until ctx ends.
func (b *progressBar) follow(ctx context.Context, p *pipeline.Pipeline) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	defer b.set("")
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pr := p.SnapshotProgress()
		if !pr.Active {
			b.set("")
			continue
		}
		b.set(renderProgress(pr, b.width))
	}
}

// renderProgress draws "snapshot [#####.....] 41/96 chunks  3.3M rows  412k rows/s  ETA 8s" in at
// most width columns.
func renderProgress(pr pipeline.SnapshotProgress, width int) string {
	text := fmt.Sprintf(" %d/%d chunks  %s rows  %s rows/s", pr.ChunksDone, pr.Chunks, humanCount(float64(pr.Rows)), humanCount(pr.RowsPerSec))
	if pr.ETA > 0 {
		text += "  ETA " + pr.ETA.String()
	}
	bar := width - len(text) - len("snapshot [] ") - 1
	if bar < 10 {
		s := "snapshot" + text
		return s[:min(len(s), width-1)]
	}
	bar = min(bar, 40)
	filled := 0
	if pr.Chunks > 0 {
		filled = int(float64(bar) * float64(pr.ChunksDone) / float64(pr.Chunks))
	}
	return "snapshot [" + strings.Repeat("#", filled) + strings.Repeat(".", bar-filled) + "]" + text
}

func humanCount(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.1fG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
