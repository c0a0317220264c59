package events

import (
	"bytes"
	"fmt"
)

// valueWriter appends the JSON form of one column's text output to dst. src aliases the tuple and
// must not be kept. On error dst may hold a partial value; the caller discards the whole event.
type valueWriter func(dst, src []byte) ([]byte, error)

func valueErr(kind string, src []byte) error {
	const max = 64
	if len(src) > max {
		return fmt.Errorf("%w: %s %q…", ErrValue, kind, src[:max])
	}
	return fmt.Errorf("%w: %s %q", ErrValue, kind, src)
}

// writeString maps any text to a JSON string.
func writeString(dst, src []byte) ([]byte, error) { return appendString(dst, src), nil }

// writeInt maps int2/int4/int8/oid output to a JSON number after checking it is an integer literal.
func writeInt(dst, src []byte) ([]byte, error) {
	i := 0
	if len(src) > 0 && src[0] == '-' {
		i = 1
	}
	if i == len(src) || (src[i] == '0' && len(src) > i+1) {
		return dst, valueErr("integer", src)
	}
	for ; i < len(src); i++ {
		if src[i] < '0' || src[i] > '9' {
			return dst, valueErr("integer", src)
		}
	}
	return append(dst, src...), nil
}

// writeFloat maps float4/float8 output to a JSON number; NaN and the infinities become strings.
func writeFloat(dst, src []byte) ([]byte, error) {
	switch string(src) {
	case "NaN", "Infinity", "-Infinity":
		return appendString(dst, src), nil
	}
	if !isJSONNumber(src) {
		return dst, valueErr("float", src)
	}
	return append(dst, src...), nil
}

// isJSONNumber reports whether b matches the JSON number grammar (RFC 8259 section 6).
func isJSONNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i == len(b) {
		return false
	}
	if b[i] == '0' {
		i++
	} else {
		n := digits(b[i:])
		if n == 0 {
			return false
		}
		i += n
	}
	if i < len(b) && b[i] == '.' {
		i++
		n := digits(b[i:])
		if n == 0 {
			return false
		}
		i += n
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		n := digits(b[i:])
		if n == 0 {
			return false
		}
		i += n
	}
	return i == len(b)
}

func digits(b []byte) int {
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	return n
}

// writeBool maps "t"/"f" to true/false.
func writeBool(dst, src []byte) ([]byte, error) {
	if len(src) == 1 {
		switch src[0] {
		case 't':
			return append(dst, "true"...), nil
		case 'f':
			return append(dst, "false"...), nil
		}
	}
	return dst, valueErr("boolean", src)
}

// writeJSON embeds json/jsonb text as raw JSON after validating it. Whitespace outside strings is
// removed (json keeps the input's newlines, jsonb prints ", " and ": "), and invalid UTF-8 inside
// strings becomes \ufffd.
func writeJSON(dst, src []byte) ([]byte, error) {
	mark := len(dst)
	out, ok := compactJSON(dst, src)
	if !ok {
		return out[:mark], valueErr("json", src)
	}
	return out, nil
}

// writeTimestamptz maps "2024-01-02 03:04:05.123456+00" to "2024-01-02T03:04:05.123456Z" and
// "+05:30" style offsets to RFC 3339 ones ("+05" becomes "+05:00"). Infinity, BC dates and text of
// any other shape stay PostgreSQL's text.
func writeTimestamptz(dst, src []byte) ([]byte, error) {
	sp := bytes.IndexByte(src, ' ')
	if sp <= 0 || bytes.HasSuffix(src, []byte(" BC")) {
		return appendString(dst, src), nil
	}
	// The offset starts at the last '+' or '-' after the time's colons.
	off := bytes.LastIndexAny(src[sp:], "+-")
	if off < 0 {
		return appendString(dst, src), nil
	}
	off += sp
	zone := src[off:]
	if len(zone) < 3 || digits(zone[1:3]) != 2 {
		return appendString(dst, src), nil
	}
	dst = append(dst, '"')
	dst = appendEscaped(dst, src[:sp])
	dst = append(dst, 'T')
	dst = appendEscaped(dst, src[sp+1:off])
	switch {
	case string(zone) == "+00" || string(zone) == "-00" || string(zone) == "+00:00":
		dst = append(dst, 'Z')
	case len(zone) == 3:
		dst = append(dst, zone...)
		dst = append(dst, ":00"...)
	default:
		dst = appendEscaped(dst, zone)
	}
	return append(dst, '"'), nil
}

// writeBytea maps bytea output, hex ("\x0aff") or escape format ("a\\b\001"), to standard padded
// base64 without an intermediate buffer.
func writeBytea(dst, src []byte) ([]byte, error) {
	var enc b64
	dst = append(dst, '"')
	if len(src) >= 2 && src[0] == '\\' && src[1] == 'x' {
		h := src[2:]
		if len(h)%2 != 0 {
			return dst, valueErr("bytea", src)
		}
		for i := 0; i < len(h); i += 2 {
			hi, ok1 := unhex(h[i])
			lo, ok2 := unhex(h[i+1])
			if !ok1 || !ok2 {
				return dst, valueErr("bytea", src)
			}
			dst = enc.put(dst, hi<<4|lo)
		}
		return append(enc.flush(dst), '"'), nil
	}
	for i := 0; i < len(src); {
		c := src[i]
		if c != '\\' {
			dst = enc.put(dst, c)
			i++
			continue
		}
		switch {
		case i+1 < len(src) && src[i+1] == '\\':
			dst = enc.put(dst, '\\')
			i += 2
		case i+3 < len(src) && isOctal(src[i+1]) && isOctal(src[i+2]) && isOctal(src[i+3]) && src[i+1] <= '3':
			dst = enc.put(dst, (src[i+1]-'0')<<6|(src[i+2]-'0')<<3|(src[i+3]-'0'))
			i += 4
		default:
			return dst, valueErr("bytea", src)
		}
	}
	return append(enc.flush(dst), '"'), nil
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// b64 is a streaming standard base64 encoder that appends to a caller's slice.
type b64 struct {
	buf [3]byte
	n   int
}

func (e *b64) put(dst []byte, c byte) []byte {
	e.buf[e.n] = c
	e.n++
	if e.n < 3 {
		return dst
	}
	e.n = 0
	v := uint(e.buf[0])<<16 | uint(e.buf[1])<<8 | uint(e.buf[2])
	return append(dst, b64Alphabet[v>>18&0x3F], b64Alphabet[v>>12&0x3F], b64Alphabet[v>>6&0x3F], b64Alphabet[v&0x3F])
}

func (e *b64) flush(dst []byte) []byte {
	switch e.n {
	case 1:
		v := uint(e.buf[0]) << 16
		dst = append(dst, b64Alphabet[v>>18&0x3F], b64Alphabet[v>>12&0x3F], '=', '=')
	case 2:
		v := uint(e.buf[0])<<16 | uint(e.buf[1])<<8
		dst = append(dst, b64Alphabet[v>>18&0x3F], b64Alphabet[v>>12&0x3F], b64Alphabet[v>>6&0x3F], '=')
	}
	e.n = 0
	return dst
}

// appendBase64 appends the standard padded base64 form of b, quoted.
func appendBase64(dst, b []byte) []byte {
	var enc b64
	dst = append(dst, '"')
	for _, c := range b {
		dst = enc.put(dst, c)
	}
	return append(enc.flush(dst), '"')
}
