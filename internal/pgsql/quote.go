package pgsql

import "strings"

// QuoteIdent quotes an SQL identifier: "a""b" for a"b.
func QuoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// QuoteLiteral quotes an SQL string literal, doubling each single quote. It assumes
// standard_conforming_strings=on (SessionParams sets it), under which backslashes are ordinary
// characters.
func QuoteLiteral(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}

// Qualified returns the quoted schema.table of a table.
func Qualified(schema, table string) string {
	return QuoteIdent(schema) + "." + QuoteIdent(table)
}
