package snapshot

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/pgstream/pgstream/walparse"
)

// colNames returns n column names c1…cn.
func colNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "c" + strconv.Itoa(i+1)
	}
	return names
}

// show renders a tuple for comparisons: text columns quoted, NULL as NULL.
func show(t *walparse.Tuple) string {
	var sb strings.Builder
	for i, c := range t.Columns {
		if i > 0 {
			sb.WriteByte(' ')
		}
		switch c.Kind {
		case walparse.TupleNull:
			sb.WriteString("NULL")
		case walparse.TupleText:
			sb.WriteString(strconv.Quote(string(c.Data)))
		default:
			sb.WriteString("kind " + string(rune(c.Kind)))
		}
	}
	return sb.String()
}

func TestParseRow(t *testing.T) {
	for _, tc := range []struct {
		name string
		row  string
		n    int
		want string // show of the tuple
	}{
		{"plain", "a\tbc\td", 3, `"a" "bc" "d"`},
		{"one column", "only", 1, `"only"`},
		{"empty strings", "\t\t", 3, `"" "" ""`},
		{"empty row is one empty column", "", 1, `""`},
		{"no columns", "", 0, ``},
		{"null", `\N` + "\tx\t" + `\N`, 3, `NULL "x" NULL`},
		{"escaped backslash N is text", `\\N`, 1, `"\\N"`},
		{"copy to escapes", `a\\b\bc\fd\ne\rf\tg\vh`, 1, `"a\\b\bc\fd\ne\rf\tg\vh"`},
		{"escapes in several columns", `\t` + "\t" + `x\ny` + "\t" + `plain` + "\t" + `\\`, 4, `"\t" "x\ny" "plain" "\\"`},
		{"octal", `\101\1\12x\0\7777`, 1, `"A\x01\nx\x00\xff7"`},
		{"octal stops at a non-octal digit", `\18\08`, 1, `"\x018\x008"`},
		{"hex", `\x41\x4g\xA1\xfF0`, 1, `"A\x04g\xa1\xff0"`},
		{"utf-8 passes through", "é😀\t\\\\é", 2, `"é😀" "\\é"`},
		{"real row", "(0,4)\t744\t4\t\\\\N\t\\\\x5c4e\t\"\\\\\\\\\\\\\\\\N\"\t{\"\\\\\\\\N\"}\t\\N", 8,
			`"(0,4)" "744" "4" "\\N" "\\x5c4e" "\"\\\\\\\\N\"" "{\"\\\\N\"}" NULL`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p rowParser
			tup, err := p.parse([]byte(tc.row), colNames(tc.n))
			if err != nil {
				t.Fatal(err)
			}
			if got := show(tup); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestParseRowErrors(t *testing.T) {
	for _, tc := range []struct {
		name, row string
		n         int
		want      string // in the message
	}{
		{"too few columns", "a\tb", 3, `2 columns, want 3: column "c3" is missing`},
		{"too many columns", "a\tb\tc", 2, `extra text after column "c2"`},
		{"text in a row of no columns", "x", 0, "no columns"},
		{"dangling backslash", `ok` + "\t" + `ab\`, 2, `column "c2": backslash at the end`},
		{"lone backslash", `\`, 1, `column "c1": backslash at the end`},
		{"null then text", `\Nx`, 1, `column "c1": \N (NULL) with other text`},
		{"text then null", `x\N`, 1, `column "c1": \N (NULL) with other text`},
		{"hex without digits", `\xg`, 1, `column "c1": \x without a hexadecimal digit`},
		{"hex at the end", `ab\x`, 1, `column "c1": \x without a hexadecimal digit`},
		{"unknown escape", "a\tq\\q", 2, `column "c2": unknown escape "\\q"`},
		{"end of data marker", `\.`, 1, `unknown escape "\\."`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p rowParser
			_, err := p.parse([]byte(tc.row), colNames(tc.n))
			if !errors.Is(err, ErrMalformedRow) {
				t.Fatalf("error = %v, want ErrMalformedRow", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// TestParseRowAliasing checks that columns without escapes alias the row and that unescaped
// columns survive the unescaping of later ones.
func TestParseRowAliasing(t *testing.T) {
	var p rowParser
	p.buf = make([]byte, 0, 1) // force the buffer to grow on this row
	row := []byte(`plain` + "\t" + `a\tb` + "\t" + `c\nd` + "\t" + strings.Repeat(`\\`, 100))
	tup, err := p.parse(row, colNames(4))
	if err != nil {
		t.Fatal(err)
	}
	if want := `"plain" "a\tb" "c\nd" "` + strings.Repeat(`\\`, 100) + `"`; show(tup) != want {
		t.Fatalf("got %s", show(tup))
	}
	if unsafe.SliceData(tup.Columns[0].Data) != &row[0] {
		t.Error("a column without escapes does not alias the row")
	}
	if bytes.Contains(row, []byte("a\tb")) {
		t.Error("the row was modified")
	}
	// The tuple is reused.
	tup2, err := p.parse([]byte("x\ty\tz\tw"), colNames(4))
	if err != nil || tup2 != tup || show(tup2) != `"x" "y" "z" "w"` {
		t.Errorf("second row: %s, %v", show(tup2), err)
	}
}

func TestParseRowAllocations(t *testing.T) {
	var p rowParser
	row := []byte("(12,3)\t745\t" + `a\tb` + "\t\\N\tplain text\t" + `{"a\\"b",NULL}`)
	names := colNames(6)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := p.parse(row, names); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocs per row", n)
	}
}

// escapeRow writes a tuple the way COPY TO does.
func escapeRow(t *walparse.Tuple) []byte {
	var b []byte
	for i, c := range t.Columns {
		if i > 0 {
			b = append(b, '\t')
		}
		if c.Kind == walparse.TupleNull {
			b = append(b, `\N`...)
			continue
		}
		for _, ch := range c.Data {
			switch ch {
			case '\\':
				b = append(b, `\\`...)
			case '\b':
				b = append(b, `\b`...)
			case '\f':
				b = append(b, `\f`...)
			case '\n':
				b = append(b, `\n`...)
			case '\r':
				b = append(b, `\r`...)
			case '\t':
				b = append(b, `\t`...)
			case '\v':
				b = append(b, `\v`...)
			default:
				b = append(b, ch)
			}
		}
	}
	return b
}

// FuzzParseRow checks that the parser never panics, returns the asked column count, and that a
// parsed row written again as COPY TO would write it parses to the same values. The seed corpus in
// testdata/fuzz/FuzzParseRow holds rows a PostgreSQL 15 server wrote.
func FuzzParseRow(f *testing.F) {
	f.Add([]byte("a\tb\\tc\t\\N"), 3)
	f.Add([]byte(`\101\x41\\`), 1)
	f.Add([]byte(`\`), 1)
	f.Add([]byte(""), 0)
	f.Fuzz(func(t *testing.T, row []byte, n int) {
		if n < 0 || n > 64 {
			return
		}
		names := colNames(n)
		orig := bytes.Clone(row)
		var p rowParser
		tup, err := p.parse(row, names)
		if !bytes.Equal(row, orig) {
			t.Fatal("parse modified its input")
		}
		if err != nil {
			if !errors.Is(err, ErrMalformedRow) {
				t.Fatalf("error %v does not wrap ErrMalformedRow", err)
			}
			return
		}
		if len(tup.Columns) != n {
			t.Fatalf("%d columns, want %d", len(tup.Columns), n)
		}
		first := show(tup)
		again := escapeRow(tup)
		var q rowParser
		tup2, err := q.parse(again, names)
		if err != nil {
			t.Fatalf("re-escaped row %q: %v", again, err)
		}
		if second := show(tup2); second != first {
			t.Fatalf("round trip:\n got %s\nwant %s", second, first)
		}
		if !bytes.ContainsAny(row, "\\\b\f\n\r\v") && !bytes.Equal(again, row) {
			t.Fatalf("a row without escapes changed: %q -> %q", row, again)
		}
	})
}
