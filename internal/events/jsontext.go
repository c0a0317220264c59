package events

import "unicode/utf8"

// maxJSONDepth bounds the nesting of json values, as encoding/json does.
const maxJSONDepth = 10000

// compactJSON appends src to dst without the whitespace outside strings, with invalid UTF-8 inside
// strings replaced by \ufffd, in one pass that also checks that src is exactly one JSON value
// (RFC 8259). ok is false for anything else; dst's content is then unspecified.
func compactJSON(dst, src []byte) (out []byte, ok bool) {
	var small [32]byte
	stack := small[:0] // '{' or '[' per open container
	i, n := 0, len(src)
	skip := func() {
		for i < n && (src[i] == ' ' || src[i] == '\t' || src[i] == '\n' || src[i] == '\r') {
			i++
		}
	}
	for {
		// A value starts here.
		skip()
		if i >= n {
			return dst, false
		}
		switch c := src[i]; {
		case c == '{' || c == '[':
			if len(stack) >= maxJSONDepth {
				return dst, false
			}
			stack = append(stack, c)
			dst = append(dst, c)
			i++
			skip()
			if i < n && src[i] == c+2 { // '}' is '{'+2, ']' is '['+2
				dst = append(dst, src[i])
				i++
				stack = stack[:len(stack)-1]
				break
			}
			if c == '{' {
				if dst, ok = compactKey(dst, src, &i); !ok {
					return dst, false
				}
			}
			continue
		case c == '"':
			if dst, ok = compactString(dst, src, &i); !ok {
				return dst, false
			}
		case c == 't':
			if !hasAt(src, i, "true") {
				return dst, false
			}
			dst, i = append(dst, "true"...), i+4
		case c == 'f':
			if !hasAt(src, i, "false") {
				return dst, false
			}
			dst, i = append(dst, "false"...), i+5
		case c == 'n':
			if !hasAt(src, i, "null") {
				return dst, false
			}
			dst, i = append(dst, "null"...), i+4
		case c == '-' || (c >= '0' && c <= '9'):
			end, ok := scanNumber(src, i)
			if !ok {
				return dst, false
			}
			dst, i = append(dst, src[i:end]...), end
		default:
			return dst, false
		}
		// After a value: close containers or go on to the next element.
		for {
			skip()
			if len(stack) == 0 {
				return dst, i == n
			}
			if i >= n {
				return dst, false
			}
			top := stack[len(stack)-1]
			switch src[i] {
			case ',':
				dst = append(dst, ',')
				i++
				if top == '{' {
					skip()
					if dst, ok = compactKey(dst, src, &i); !ok {
						return dst, false
					}
				}
			case top + 2:
				dst = append(dst, top+2)
				i++
				stack = stack[:len(stack)-1]
				continue
			default:
				return dst, false
			}
			break
		}
	}
}

// compactKey appends an object member's `"key":` at src[*i], whitespace around the colon removed.
func compactKey(dst, src []byte, i *int) ([]byte, bool) {
	if *i >= len(src) || src[*i] != '"' {
		return dst, false
	}
	dst, ok := compactString(dst, src, i)
	if !ok {
		return dst, false
	}
	for *i < len(src) && (src[*i] == ' ' || src[*i] == '\t' || src[*i] == '\n' || src[*i] == '\r') {
		*i++
	}
	if *i >= len(src) || src[*i] != ':' {
		return dst, false
	}
	*i++
	return append(dst, ':'), true
}

// compactString appends the string starting at src[*i] (its opening quote) and moves *i past it.
func compactString(dst, src []byte, i *int) ([]byte, bool) {
	j := *i + 1
	start := *i
	for j < len(src) {
		c := src[j]
		switch {
		case c == '"':
			dst = append(dst, src[start:j+1]...)
			*i = j + 1
			return dst, true
		case c == '\\':
			if j+1 >= len(src) {
				return dst, false
			}
			switch src[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(src) {
					return dst, false
				}
				for _, h := range src[j+2 : j+6] {
					if _, ok := unhex(h); !ok {
						return dst, false
					}
				}
				j += 6
			default:
				return dst, false
			}
		case c < 0x20:
			return dst, false
		case c < utf8.RuneSelf:
			j++
		default:
			r, size := utf8.DecodeRune(src[j:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, src[start:j]...)
				dst = append(dst, `\ufffd`...)
				j++
				start = j
				continue
			}
			j += size
		}
	}
	return dst, false
}

// scanNumber returns the end of the number at src[i]: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(src []byte, i int) (int, bool) {
	n := len(src)
	if src[i] == '-' {
		i++
	}
	switch {
	case i < n && src[i] == '0':
		i++
	case i < n && src[i] >= '1' && src[i] <= '9':
		for i < n && src[i] >= '0' && src[i] <= '9' {
			i++
		}
	default:
		return i, false
	}
	if i < n && src[i] == '.' {
		i++
		d := i
		for i < n && src[i] >= '0' && src[i] <= '9' {
			i++
		}
		if i == d {
			return i, false
		}
	}
	if i < n && (src[i] == 'e' || src[i] == 'E') {
		i++
		if i < n && (src[i] == '+' || src[i] == '-') {
			i++
		}
		d := i
		for i < n && src[i] >= '0' && src[i] <= '9' {
			i++
		}
		if i == d {
			return i, false
		}
	}
	return i, true
}

func hasAt(src []byte, i int, lit string) bool {
	return len(src)-i >= len(lit) && string(src[i:i+len(lit)]) == lit
}
