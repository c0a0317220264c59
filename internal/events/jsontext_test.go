package events

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// referenceCompact is the two-pass form compactJSON replaces: encoding/json's validation, then a
// copy that drops whitespace outside strings and replaces invalid UTF-8 inside them.
func referenceCompact(src []byte) ([]byte, bool) {
	if !json.Valid(src) {
		return nil, false
	}
	var dst []byte
	inString := false
	start := 0
	for i := 0; i < len(src); {
		c := src[i]
		if inString {
			switch {
			case c == '\\':
				i += 2
				continue
			case c == '"':
				inString = false
			case c >= utf8.RuneSelf:
				r, size := utf8.DecodeRune(src[i:])
				if r == utf8.RuneError && size == 1 {
					dst = append(dst, src[start:i]...)
					dst = append(dst, `\ufffd`...)
					i++
					start = i
					continue
				}
				i += size
				continue
			}
			i++
			continue
		}
		switch c {
		case '"':
			inString = true
		case ' ', '\t', '\n', '\r':
			dst = append(dst, src[start:i]...)
			start = i + 1
		}
		i++
	}
	return append(dst, src[start:]...), true
}

var jsonCases = []string{
	`{}`, `[]`, `{"a": 1, "b": [true, false, null], "c": {"d": "e"}}`, ` [ 1 , 2 ] `, `"x"`, `0`, `-0.5e+10`,
	`1E5`, `{"k":"\u00e9\n\"\\\/"}`, "{\"bad\xff\":1}", `[[[[[]]]]]`, `{"a":{}}`, `[{}, [], ""]`,
	`01`, `1.`, `.5`, `-`, `1e`, `+1`, `tru`, `nulll`, `{"a" 1}`, `{"a":1,}`, `[1,]`, `[1 2]`, `{,}`,
	`"\x"`, `"\u12"`, "\"a\tb\"", `{"a":1}}`, `[`, `]`, ``, `  `, `{"a":1} x`, `"unterminated`, `{1:2}`,
	`[1,2,3]`, `{"emoji":"😀"}`, "[\"\xe2\x82\"]", `{"a" : [ 1 , { "b" : null } ] }`,
}

func TestCompactJSONMatchesReference(t *testing.T) {
	for _, c := range jsonCases {
		checkCompact(t, []byte(c))
	}
}

func checkCompact(t *testing.T, src []byte) {
	t.Helper()
	want, wantOK := referenceCompact(src)
	got, ok := compactJSON(nil, src)
	if ok != wantOK || (ok && !bytes.Equal(got, want)) {
		t.Fatalf("compactJSON(%q) = %q, %v; want %q, %v", src, got, ok, want, wantOK)
	}
}

func TestCompactJSONDepth(t *testing.T) {
	deep := append(bytes.Repeat([]byte("["), maxJSONDepth), bytes.Repeat([]byte("]"), maxJSONDepth)...)
	if _, ok := compactJSON(nil, deep); !ok {
		t.Fatal("nesting at the limit rejected")
	}
	deeper := append(bytes.Repeat([]byte("["), maxJSONDepth+1), bytes.Repeat([]byte("]"), maxJSONDepth+1)...)
	if _, ok := compactJSON(nil, deeper); ok {
		t.Fatal("nesting past the limit accepted")
	}
}

func FuzzCompactJSON(f *testing.F) {
	for _, c := range jsonCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		if bytes.Count(src, []byte("[")) > maxJSONDepth/2 || bytes.Count(src, []byte("{")) > maxJSONDepth/2 {
			return
		}
		checkCompact(t, src)
	})
}

func BenchmarkWriteJSON(b *testing.B) {
	src := []byte(`{"k": 42, "ok": true, "tag": "t7", "nested": {"list": [1, 2.5, "three", null], "name": "caf\u00e9"}}`)
	dst := make([]byte, 0, 256)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		var err error
		if dst, err = writeJSON(dst[:0], src); err != nil {
			b.Fatal(err)
		}
	}
}
