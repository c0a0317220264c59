// Package logtest gives tests a logger whose every line they can read back: to check that a
// message was logged, or that no line holds a secret.
package logtest

import (
	"strings"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Buffer collects log output. Safe for concurrent use: libraries log from their own goroutines.
type Buffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Sync does nothing: the lines are in memory.
func (b *Buffer) Sync() error { return nil }

// String returns everything logged so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Debug returns a logger that writes every level as JSON lines into the returned Buffer.
func Debug() (*zap.Logger, *Buffer) {
	b := &Buffer{}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, b, zapcore.DebugLevel)), b
}
