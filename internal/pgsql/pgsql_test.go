package pgsql

import (
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestParseMajor(t *testing.T) {
	for v, want := range map[string]int{
		"15.4 (Debian 15.4-1.pgdg120+1)": 15,
		"17beta1":                        17,
		"16devel":                        16,
		"9.6.2":                          9,
		"10.23":                          10,
		"":                               0,
		"x":                              0,
	} {
		if got := parseMajor(v); got != want {
			t.Errorf("parseMajor(%q) = %d; want %d", v, got, want)
		}
	}
	if got := ServerMajor(&pgconn.PgConn{}); got != 0 {
		t.Errorf("ServerMajor without a server_version = %d", got)
	}
}

func TestQuoteIdent(t *testing.T) {
	for in, want := range map[string]string{`a`: `"a"`, `Mixed Case`: `"Mixed Case"`, `a"b`: `"a""b"`, ``: `""`} {
		if got := QuoteIdent(in); got != want {
			t.Errorf("QuoteIdent(%q) = %s; want %s", in, got, want)
		}
	}
}

func TestQuoteLiteral(t *testing.T) {
	for in, want := range map[string]string{`a`: `'a'`, `it's`: `'it''s'`, `a\b`: `'a\b'`, ``: `''`} {
		if got := QuoteLiteral(in); got != want {
			t.Errorf("QuoteLiteral(%q) = %s; want %s", in, got, want)
		}
	}
	if got := Qualified("s", `Mixed"T`); got != `"s"."Mixed""T"` {
		t.Errorf("Qualified = %s", got)
	}
}

func TestSessionParamsIsACopy(t *testing.T) {
	p := SessionParams()
	p["TimeZone"] = "Asia/Kolkata"
	if SessionParams()["TimeZone"] != "UTC" {
		t.Fatal("SessionParams returned the package's own map")
	}
}
