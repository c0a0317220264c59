package events

import "unicode/utf8"

// safeByte[b] is true for the ASCII bytes that appear in a JSON string as they are.
var safeByte = func() (t [256]bool) {
	for b := 0x20; b < 0x80; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

const hexLower = "0123456789abcdef"

// appendString appends s as a quoted JSON string. Text that needs no escaping is copied once;
// control characters become \n, \r, \t or \u00XX, and bytes that are not valid UTF-8 become \ufffd,
// as encoding/json does.
func appendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	i := 0
	for i < len(s) && safeByte[s[i]] {
		i++
	}
	if i == len(s) {
		dst = append(dst, s...)
		return append(dst, '"')
	}
	dst = append(dst, s[:i]...)
	dst = appendEscaped(dst, s[i:])
	return append(dst, '"')
}

// appendEscaped appends the body of a JSON string (no quotes) for s.
func appendEscaped(dst, s []byte) []byte {
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if safeByte[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexLower[b>>4], hexLower[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// quoted returns s as a JSON string; for set-up work, not the per-row path.
func quoted(s string) []byte { return appendString(nil, []byte(s)) }
