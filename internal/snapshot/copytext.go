package snapshot

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/pgstream/pgstream/walparse"
)

// rowParser splits rows of COPY's text format into a reusable Tuple: kind 't' with the column's
// output-function text, or kind 'n' for NULL (\N). A column without a backslash aliases the row; a
// column with escapes is unescaped into the parser's buffer. The Tuple and every Data in it are valid
// until the next call to parse, and only while the row passed to it is unchanged. Not safe for
// concurrent use.
//
// The escapes are those COPY TO writes (\\ \b \f \n \r \t \v) and the octal (\NNN) and hex (\xHH)
// forms COPY FROM also reads. Anything else is an error: a wrong column count, a backslash at the
// end of a column, \N with other text around it, or another escape (COPY TO never writes one, so it
// means the row is not what the parser was told it is).
type rowParser struct {
	tuple walparse.Tuple
	buf   []byte
}

// parse splits row, one line without its newline, into len(names) columns; names name the columns
// in errors, which wrap ErrMalformedRow.
func (p *rowParser) parse(row []byte, names []string) (*walparse.Tuple, error) {
	n := len(names)
	if cap(p.tuple.Columns) < n {
		p.tuple.Columns = make([]walparse.TupleColumn, n)
	}
	cols := p.tuple.Columns[:n]
	p.tuple.Columns = cols
	// Unescaped text is never longer than its escaped form, so with room for the whole row the
	// buffer never moves while columns point into it.
	if cap(p.buf) < len(row) {
		p.buf = make([]byte, 0, max(len(row), 2*cap(p.buf)))
	}
	buf := p.buf[:0]
	if n == 0 {
		if len(row) != 0 {
			return nil, fmt.Errorf("%w: %d bytes in a row of no columns", ErrMalformedRow, len(row))
		}
		return &p.tuple, nil
	}
	rest := row
	for i := range n {
		field := rest
		if j := bytes.IndexByte(rest, '\t'); j >= 0 {
			if i == n-1 {
				return nil, fmt.Errorf("%w: more than %d columns: extra text after column %q", ErrMalformedRow, n, names[i])
			}
			field, rest = rest[:j], rest[j+1:]
		} else if i < n-1 {
			return nil, fmt.Errorf("%w: %d columns, want %d: column %q is missing", ErrMalformedRow, i+1, n, names[i+1])
		}
		k := bytes.IndexByte(field, '\\')
		if k < 0 {
			cols[i] = walparse.TupleColumn{Kind: walparse.TupleText, Data: field}
			continue
		}
		if len(field) == 2 && k == 0 && field[1] == 'N' {
			cols[i] = walparse.TupleColumn{Kind: walparse.TupleNull}
			continue
		}
		start := len(buf)
		var err error
		if buf, err = unescape(buf, field, k); err != nil {
			return nil, fmt.Errorf("%w: column %q: %v", ErrMalformedRow, names[i], err)
		}
		cols[i] = walparse.TupleColumn{Kind: walparse.TupleText, Data: buf[start:len(buf):len(buf)]}
	}
	p.buf = buf
	return &p.tuple, nil
}

// unescape appends the text of field, whose first backslash is at k, to dst.
func unescape(dst, field []byte, k int) ([]byte, error) {
	dst = append(dst, field[:k]...)
	for k < len(field) {
		c := field[k]
		if c != '\\' {
			j := bytes.IndexByte(field[k:], '\\')
			if j < 0 {
				return append(dst, field[k:]...), nil
			}
			dst = append(dst, field[k:k+j]...)
			k += j
			continue
		}
		if k+1 == len(field) {
			return dst, errors.New("backslash at the end of the column")
		}
		e := field[k+1]
		k += 2
		switch e {
		case '\\':
			dst = append(dst, '\\')
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'v':
			dst = append(dst, '\v')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := int(e - '0')
			for range 2 {
				if k < len(field) && field[k] >= '0' && field[k] <= '7' {
					v = v<<3 | int(field[k]-'0')
					k++
				}
			}
			dst = append(dst, byte(v)) // COPY FROM keeps the low 8 bits of \400…\777 too
		case 'x':
			v, ok := unhex(field, k)
			if !ok {
				return dst, errors.New(`\x without a hexadecimal digit`)
			}
			k++
			if w, ok := unhex(field, k); ok {
				v = v<<4 | w
				k++
			}
			dst = append(dst, v)
		case 'N':
			return dst, errors.New(`\N (NULL) with other text`)
		default:
			return dst, fmt.Errorf("unknown escape %q", field[k-2:k])
		}
	}
	return dst, nil
}

// unhex returns the value of the hexadecimal digit b[i], if it is one.
func unhex(b []byte, i int) (byte, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
