package nats

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidSubject is wrapped by errors about subjects that NATS cannot accept.
var ErrInvalidSubject = errors.New("invalid nats subject")

// escapeToken turns a schema or table name into one subject token. Bytes that would split or
// widen a subject ('.', '*', '>'), the escape character '%', ASCII control characters, space,
// DEL, Unicode whitespace, non-printable runes and invalid UTF-8 are written as %XX (upper-case
// hex of each byte). An empty name becomes "_".
func escapeToken(s string) string {
	if s == "" {
		return "_"
	}
	if !needsEscape(s) {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if escapeRune(r, n) {
			for j := i; j < i+n; j++ {
				b.WriteByte('%')
				b.WriteByte(hex[s[j]>>4])
				b.WriteByte(hex[s[j]&0xF])
			}
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if escapeRune(r, n) {
			return true
		}
		i += n
	}
	return false
}

func escapeRune(r rune, n int) bool {
	switch {
	case r == utf8.RuneError && n <= 1:
		return true
	case r == '.' || r == '*' || r == '>' || r == '%':
		return true
	case r <= ' ' || r == 0x7f:
		return true
	case r >= utf8.RuneSelf:
		return unicode.IsSpace(r) || !unicode.IsPrint(r)
	}
	return false
}

// expandPrefix replaces {prefix} in s.
func expandPrefix(s, prefix string) string {
	return strings.ReplaceAll(s, "{prefix}", prefix)
}

// renderSubject expands the template: {prefix} verbatim, {schema} and {table} escaped.
func renderSubject(tmpl, prefix, schema, table string) string {
	r := strings.NewReplacer("{prefix}", prefix, "{schema}", escapeToken(schema), "{table}", escapeToken(table))
	return r.Replace(tmpl)
}

// subjectPattern is the set of subjects the template can produce: the template with every token
// holding {schema} or {table} replaced by the wildcard '*'.
func subjectPattern(tmpl, prefix string) string {
	toks := strings.Split(expandPrefix(tmpl, prefix), ".")
	for i, t := range toks {
		if strings.Contains(t, "{schema}") || strings.Contains(t, "{table}") {
			toks[i] = "*"
		}
	}
	return strings.Join(toks, ".")
}

// checkSubject reports whether s is a valid subject; wildcards are allowed only when filter is
// true, and then only as whole tokens with '>' last.
func checkSubject(s string, filter bool) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidSubject)
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return fmt.Errorf("%w: %q has an empty token", ErrInvalidSubject, s)
		case strings.IndexFunc(t, func(r rune) bool { return r <= ' ' || r == 0x7f || unicode.IsSpace(r) }) >= 0:
			return fmt.Errorf("%w: %q holds whitespace or a control character", ErrInvalidSubject, s)
		case t == "*" || t == ">":
			if !filter {
				return fmt.Errorf("%w: %q holds a wildcard", ErrInvalidSubject, s)
			}
			if t == ">" && i != len(toks)-1 {
				return fmt.Errorf("%w: %q has '>' before its last token", ErrInvalidSubject, s)
			}
		case strings.ContainsAny(t, "*>"):
			return fmt.Errorf("%w: %q has a wildcard inside a token", ErrInvalidSubject, s)
		}
	}
	return nil
}

// covers reports whether the subject filter f matches every subject the pattern p (which may
// hold '*' tokens) matches.
func covers(f, p string) bool {
	ft, pt := strings.Split(f, "."), strings.Split(p, ".")
	for i, t := range ft {
		if t == ">" {
			return len(pt) > i
		}
		if i >= len(pt) {
			return false
		}
		if t != "*" && (t != pt[i] || pt[i] == "*") {
			return false
		}
	}
	return len(ft) == len(pt)
}
