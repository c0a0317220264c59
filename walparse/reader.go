package walparse

import (
	"bytes"
	"encoding/binary"
)

// reader walks one frame with a sticky error: after the first failed read every read returns a zero
// value and leaves the position alone, so a message decoder reads all its fields and checks err once.
// Byte slices it returns alias the frame.
type reader struct {
	buf    []byte
	off    int
	err    error // first failure
	errOff int   // offset of the read that failed
}

func (r *reader) reset(buf []byte) {
	*r = reader{buf: buf}
}

func (r *reader) remaining() int { return len(r.buf) - r.off }

// fail records err at off unless an earlier failure is already recorded.
func (r *reader) fail(off int, err error) {
	if r.err == nil {
		r.err = err
		r.errOff = off
	}
}

// need reports whether n more bytes can be read, recording a short read of field what otherwise.
func (r *reader) need(n int, what string) bool {
	if r.err != nil {
		return false
	}
	if r.remaining() < n {
		r.fail(r.off, errorf(ErrShortMessage, "%s: need %d bytes, %d remain", what, n, r.remaining()))
		return false
	}
	return true
}

func (r *reader) u8(what string) uint8 {
	if !r.need(1, what) {
		return 0
	}
	v := r.buf[r.off]
	r.off++
	return v
}

func (r *reader) u16(what string) uint16 {
	if !r.need(2, what) {
		return 0
	}
	v := binary.BigEndian.Uint16(r.buf[r.off:])
	r.off += 2
	return v
}

func (r *reader) u32(what string) uint32 {
	if !r.need(4, what) {
		return 0
	}
	v := binary.BigEndian.Uint32(r.buf[r.off:])
	r.off += 4
	return v
}

func (r *reader) i32(what string) int32 { return int32(r.u32(what)) }

func (r *reader) u64(what string) uint64 {
	if !r.need(8, what) {
		return 0
	}
	v := binary.BigEndian.Uint64(r.buf[r.off:])
	r.off += 8
	return v
}

func (r *reader) i64(what string) int64 { return int64(r.u64(what)) }

// bytesN returns the next n bytes. A negative n is malformed; an n beyond the frame is a short read.
// The result aliases the frame and has its capacity clipped to its length, so appending to it can
// never overwrite the rest of the frame.
func (r *reader) bytesN(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 {
		r.fail(r.off, errorf(ErrMalformed, "negative %s %d", what, n))
		return nil
	}
	if n > r.remaining() {
		r.fail(r.off, errorf(ErrShortMessage, "%s %d exceeds remaining %d bytes", what, n, r.remaining()))
		return nil
	}
	v := r.buf[r.off : r.off+n : r.off+n]
	r.off += n
	return v
}

// cstring returns the bytes of a NUL-terminated string, without the NUL, aliasing the frame.
func (r *reader) cstring(what string) []byte {
	if r.err != nil {
		return nil
	}
	i := bytes.IndexByte(r.buf[r.off:], 0)
	if i < 0 {
		r.fail(r.off, errorf(ErrShortMessage, "%s: string not NUL-terminated within the frame", what))
		return nil
	}
	v := r.buf[r.off : r.off+i : r.off+i]
	r.off += i + 1
	return v
}

// malformed records a malformed value that was read at off.
func (r *reader) malformed(off int, format string, args ...any) {
	if r.err == nil {
		r.fail(off, errorf(ErrMalformed, format, args...))
	}
}
