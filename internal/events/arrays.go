package events

import "errors"

// maxArrayDims is PostgreSQL's MAXDIM: array_out never prints deeper nesting.
const maxArrayDims = 6

var errArraySyntax = errors.New("malformed array")

// arrayWriter maps array_out text ("{1,2}", "{{a,NULL},{\"b c\",d}}", "[0:1]={x,y}") to a JSON
// array whose elements are mapped by elem. It owns a scratch buffer for de-quoted elements, so it
// must not be shared between Encoders.
type arrayWriter struct {
	elem    valueWriter
	delim   byte
	scratch []byte
}

func newArrayWriter(elem valueWriter, delim byte) valueWriter {
	if delim == 0 {
		delim = ','
	}
	a := &arrayWriter{elem: elem, delim: delim}
	return a.write
}

func (a *arrayWriter) write(dst, src []byte) ([]byte, error) {
	p := 0
	if len(src) > 0 && src[0] == '[' {
		// Dimension decoration: "[lo:hi][lo:hi]=".
		for p < len(src) && src[p] != '=' {
			p++
		}
		if p == len(src) {
			return dst, valueErr("array", src)
		}
		p++
	}
	dst, p, err := a.level(dst, src, p, 1)
	if err != nil {
		if errors.Is(err, errArraySyntax) {
			return dst, valueErr("array", src)
		}
		return dst, err
	}
	p = skipSpace(src, p)
	if p != len(src) {
		return dst, valueErr("array", src)
	}
	return dst, nil
}

func isArraySpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func skipSpace(s []byte, p int) int {
	for p < len(s) && isArraySpace(s[p]) {
		p++
	}
	return p
}

// level parses one brace-enclosed level starting at s[p] and returns the position after it.
func (a *arrayWriter) level(dst, s []byte, p, depth int) ([]byte, int, error) {
	if depth > maxArrayDims || p >= len(s) || s[p] != '{' {
		return dst, p, errArraySyntax
	}
	p++
	dst = append(dst, '[')
	p = skipSpace(s, p)
	if p < len(s) && s[p] == '}' {
		return append(dst, ']'), p + 1, nil
	}
	for {
		p = skipSpace(s, p)
		if p >= len(s) {
			return dst, p, errArraySyntax
		}
		var err error
		switch s[p] {
		case '{':
			dst, p, err = a.level(dst, s, p, depth+1)
		case '"':
			dst, p, err = a.quoted(dst, s, p)
		default:
			dst, p, err = a.unquoted(dst, s, p)
		}
		if err != nil {
			return dst, p, err
		}
		p = skipSpace(s, p)
		if p >= len(s) {
			return dst, p, errArraySyntax
		}
		switch s[p] {
		case a.delim:
			dst = append(dst, ',')
			p++
		case '}':
			return append(dst, ']'), p + 1, nil
		default:
			return dst, p, errArraySyntax
		}
	}
}

// quoted de-quotes the element starting at the '"' at s[p] into the scratch buffer and maps it.
func (a *arrayWriter) quoted(dst, s []byte, p int) ([]byte, int, error) {
	p++
	buf := a.scratch[:0]
	for {
		if p >= len(s) {
			a.scratch = buf
			return dst, p, errArraySyntax
		}
		c := s[p]
		if c == '"' {
			p++
			break
		}
		if c == '\\' {
			p++
			if p >= len(s) {
				a.scratch = buf
				return dst, p, errArraySyntax
			}
			c = s[p]
		}
		buf = append(buf, c)
		p++
	}
	a.scratch = buf
	dst, err := a.elem(dst, buf)
	return dst, p, err
}

// unquoted maps the element running from s[p] to the next delimiter or '}', trailing spaces
// trimmed; the bare word NULL (any case) is SQL NULL.
func (a *arrayWriter) unquoted(dst, s []byte, p int) ([]byte, int, error) {
	start := p
	for p < len(s) && s[p] != a.delim && s[p] != '}' {
		switch s[p] {
		case '{', '"', '\\':
			return dst, p, errArraySyntax
		}
		p++
	}
	end := p
	for end > start && isArraySpace(s[end-1]) {
		end--
	}
	el := s[start:end]
	if len(el) == 0 {
		return dst, p, errArraySyntax
	}
	if len(el) == 4 && (el[0]|0x20) == 'n' && (el[1]|0x20) == 'u' && (el[2]|0x20) == 'l' && (el[3]|0x20) == 'l' {
		return append(dst, "null"...), p, nil
	}
	dst, err := a.elem(dst, el)
	return dst, p, err
}
