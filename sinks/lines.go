package sinks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrInvalidEvent is returned for an event whose Value cannot be one line of output: empty or
// holding '\n'.
var ErrInvalidEvent = errors.New("event value is not a single line")

// LineChunk is the most bytes WriteLines hands to one Write call, so that writing a large merged
// batch never holds a second copy of it in memory.
const LineChunk = 1 << 20

// maxRetainedLineBuffer bounds the buffer WriteLines hands back for reuse; it exceeds LineChunk
// only for a single event larger than that.
const maxRetainedLineBuffer = 8 << 20

// WriteLines writes each event's Value followed by '\n' to w, through buf, in Write calls of at
// most LineChunk bytes (or one event, when an event is larger). Every event is checked first: an
// invalid one returns an error wrapping ErrInvalidEvent and nothing is written. A failed or short
// write is returned as it is (io.ErrShortWrite for a short one); what was written before it stays
// written. The returned buffer is for the next call.
func WriteLines(w io.Writer, buf []byte, events []Event) ([]byte, error) {
	size := 0
	for i := range events {
		v := events[i].Value
		if len(v) == 0 || bytes.IndexByte(v, '\n') >= 0 {
			return buf, fmt.Errorf("%w: event %s", ErrInvalidEvent, events[i].ID())
		}
		size += len(v) + 1
	}
	buf = buf[:0]
	if want := min(size, LineChunk); cap(buf) < want {
		buf = make([]byte, 0, want)
	}
	var err error
	for i := range events {
		v := events[i].Value
		if len(buf) > 0 && len(buf)+len(v)+1 > LineChunk {
			if err = writeAll(w, buf); err != nil {
				break
			}
			buf = buf[:0]
		}
		buf = append(buf, v...)
		buf = append(buf, '\n')
	}
	if err == nil && len(buf) > 0 {
		err = writeAll(w, buf)
	}
	if cap(buf) > maxRetainedLineBuffer {
		return nil, err
	}
	return buf[:0], err
}

func writeAll(w io.Writer, b []byte) error {
	n, err := w.Write(b)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	return err
}
