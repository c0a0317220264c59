// Package lsn holds the PostgreSQL write-ahead-log position type shared by every stage of pgstream.
package lsn

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// LSN is a position in PostgreSQL's write-ahead log. The zero value is InvalidLSN.
type LSN uint64

// InvalidLSN is PostgreSQL's InvalidXLogRecPtr.
const InvalidLSN LSN = 0

// ErrSyntax is returned by Parse for text that is not of the form X/Y with hexadecimal halves.
var ErrSyntax = errors.New("invalid LSN syntax")

// String formats the LSN as PostgreSQL does: two upper-case hexadecimal halves separated by a slash.
func (l LSN) String() string {
	var buf [17]byte
	return string(l.AppendText(buf[:0]))
}

// AppendText appends the textual form of l to b without allocating.
func (l LSN) AppendText(b []byte) []byte {
	b = appendHexUpper(b, uint32(l>>32))
	b = append(b, '/')
	return appendHexUpper(b, uint32(l))
}

func appendHexUpper(b []byte, v uint32) []byte {
	const digits = "0123456789ABCDEF"
	if v == 0 {
		return append(b, '0')
	}
	var tmp [8]byte
	i := len(tmp)
	for v > 0 {
		i--
		tmp[i] = digits[v&0xF]
		v >>= 4
	}
	return append(b, tmp[i:]...)
}

// Parse reads an LSN in PostgreSQL's X/Y form.
func Parse(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("%w: %q", ErrSyntax, s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrSyntax, s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrSyntax, s)
	}
	return LSN(h<<32 | l), nil
}

// MarshalText implements encoding.TextMarshaler.
func (l LSN) MarshalText() ([]byte, error) { return l.AppendText(nil), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// Scan implements sql.Scanner for pg_lsn columns read as text.
func (l *LSN) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*l = InvalidLSN
		return nil
	case string:
		return l.UnmarshalText([]byte(v))
	case []byte:
		return l.UnmarshalText(v)
	default:
		return fmt.Errorf("scan LSN: unsupported type %T", src)
	}
}

// Value implements driver.Valuer, producing the textual form accepted by pg_lsn.
func (l LSN) Value() (driver.Value, error) { return l.String(), nil }
