package walparse_test

import (
	"errors"
	"testing"

	"github.com/pgstream/pgstream/walparse"
)

// fuzzStates are the decoder states each fuzz input is decoded in.
var fuzzStates = []struct {
	opts  walparse.Options
	setup [][]byte
}{
	{v1, nil},
	{v1, inTx},
	{v2, inStream},
	{v2, afterStream},
	{v3, inPrepare},
	{v4Par, afterStream},
}

var fuzzSentinels = []error{walparse.ErrShortMessage, walparse.ErrTrailingBytes, walparse.ErrUnknownMessage, walparse.ErrMalformed, walparse.ErrTxState}

// checkResult enforces the contract of Decode: a message or an error, never both; errors are
// *DecodeErrors with one of the sentinel causes and an offset inside the frame; a message has the
// frame's type.
func checkResult(t *testing.T, frame []byte, m walparse.Message, err error) {
	t.Helper()
	if (m == nil) == (err == nil) {
		t.Fatalf("Decode(%x) = %v, %v: want exactly one of message and error", frame, m, err)
	}
	if err != nil {
		var de *walparse.DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("Decode(%x): error %T is not a *DecodeError", frame, err)
		}
		if de.Offset < 0 || de.Offset > len(frame) {
			t.Fatalf("Decode(%x): offset %d outside the frame", frame, de.Offset)
		}
		n := 0
		for _, s := range fuzzSentinels {
			if errors.Is(err, s) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("Decode(%x): error %v matches %d sentinels, want 1", frame, err, n)
		}
		_ = err.Error()
		return
	}
	if byte(m.Type()) != frame[0] {
		t.Fatalf("Decode(%x): message type %v", frame, m.Type())
	}
}

func FuzzDecode(f *testing.F) {
	for _, tc := range validCases() {
		f.Add(tc.frame)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The input as one frame, in every state.
		for _, s := range fuzzStates {
			d := newDecoder(t, s.opts, s.setup)
			m, err := d.Decode(data)
			checkResult(t, data, m, err)
		}
		// The input as a conversation of frames, each prefixed by a one-byte length, decoded by one
		// Decoder so that the transaction state machine sees arbitrary sequences.
		for _, opts := range []walparse.Options{v2, v4Par} {
			d := walparse.NewDecoder(opts)
			rest := data
			for len(rest) > 0 {
				n := min(int(rest[0]), len(rest)-1)
				fr := rest[1 : 1+n]
				rest = rest[1+n:]
				m, err := d.Decode(fr)
				checkResult(t, fr, m, err)
			}
		}
	})
}
