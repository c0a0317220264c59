package pipeline

import (
	"fmt"
	"path"
	"strings"
)

// Filter selects the row events a sink receives by "schema.table" patterns (path.Match syntax:
// "public.*", "*.audit_log"). A pattern without a dot matches the table in the public schema.
// Events without a table (logical messages, transaction markers) always pass.
// The zero Filter passes everything. Safe for concurrent use once built.
type Filter struct {
	include []string
	exclude []string
}

// NewFilter checks and builds a filter. An empty include list means every table.
func NewFilter(include, exclude []string) (*Filter, error) {
	f := &Filter{}
	for _, p := range include {
		q, err := normPattern(p)
		if err != nil {
			return nil, err
		}
		f.include = append(f.include, q)
	}
	for _, p := range exclude {
		q, err := normPattern(p)
		if err != nil {
			return nil, err
		}
		f.exclude = append(f.exclude, q)
	}
	return f, nil
}

func normPattern(p string) (string, error) {
	p = strings.TrimSpace(p)
	if p == "" {
		return "", fmt.Errorf("empty table pattern")
	}
	if !strings.Contains(p, ".") {
		p = "public." + p
	}
	if _, err := path.Match(p, "x.y"); err != nil {
		return "", fmt.Errorf("bad table pattern %q: %w", p, err)
	}
	return p, nil
}

// Passes reports whether an event of schema.table goes to the sink.
func (f *Filter) Passes(schema, table string) bool {
	if f == nil || schema == "" && table == "" {
		return true
	}
	if len(f.include) == 0 && len(f.exclude) == 0 {
		return true
	}
	name := schema + "." + table
	for _, p := range f.exclude {
		if ok, _ := path.Match(p, name); ok {
			return false
		}
	}
	if len(f.include) == 0 {
		return true
	}
	for _, p := range f.include {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// IsZero reports whether the filter passes every event.
func (f *Filter) IsZero() bool { return f == nil || len(f.include) == 0 && len(f.exclude) == 0 }
