package walparse

import (
	"errors"
	"fmt"
	"strconv"
)

// Sentinel causes of a *DecodeError. Test for them with errors.Is.
var (
	// ErrShortMessage: the frame ends before a field, a length-prefixed value or a string's NUL.
	ErrShortMessage = errors.New("short message")
	// ErrTrailingBytes: bytes remain after the last field of a message.
	ErrTrailingBytes = errors.New("trailing bytes")
	// ErrUnknownMessage: the message type byte is not a pgoutput message of the negotiated protocol
	// version.
	ErrUnknownMessage = errors.New("unknown message type")
	// ErrMalformed: a field holds a value the protocol does not allow (a negative or absurd length,
	// an unknown tuple or column kind, unknown flags, an unset LSN).
	ErrMalformed = errors.New("malformed message")
	// ErrTxState: the message is well formed but not allowed in the current transaction or stream
	// state (Commit without Begin, a change outside a transaction, Stream Commit of an unknown xid...).
	ErrTxState = errors.New("unexpected message for transaction state")
	// ErrInvalidOptions: the Decoder was built from Options that fail Validate.
	ErrInvalidOptions = errors.New("invalid decoder options")
)

// DecodeError reports a frame the Decoder rejected. Err wraps one of the sentinel errors above.
type DecodeError struct {
	Type   MessageType // first byte of the frame (0 for an empty frame)
	Offset int         // byte offset in the frame of the field that failed; 0 for state errors
	Err    error
}

func (e *DecodeError) Error() string {
	return "walparse: " + typeName(e.Type) + " at offset " + strconv.Itoa(e.Offset) + ": " + e.Err.Error()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// typeName names t, spelling an unknown type byte in hexadecimal so that control bytes stay readable.
func typeName(t MessageType) string {
	if _, ok := messageMinVersion(t); ok {
		return t.String()
	}
	return fmt.Sprintf("message type 0x%02x", byte(t))
}

// detailError carries a human-readable description of a failure and the sentinel it is an instance of.
type detailError struct {
	msg   string
	cause error
}

func (e *detailError) Error() string { return e.msg }
func (e *detailError) Unwrap() error { return e.cause }

func errorf(cause error, format string, args ...any) error {
	return &detailError{msg: fmt.Sprintf(format, args...), cause: cause}
}

// prefixError prepends context to an error made by errorf, keeping its cause.
func prefixError(err error, prefix string) error {
	if d, ok := err.(*detailError); ok {
		return &detailError{msg: prefix + ": " + d.msg, cause: d.cause}
	}
	return fmt.Errorf("%s: %w", prefix, err)
}
