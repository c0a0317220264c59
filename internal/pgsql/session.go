package pgsql

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// sessionParams are the settings pgoutput formats values with.
var sessionParams = map[string]string{
	"DateStyle":                   "ISO",
	"TimeZone":                    "UTC",
	"IntervalStyle":               "postgres",
	"extra_float_digits":          "1",
	"bytea_output":                "hex",
	"client_encoding":             "UTF8",
	"standard_conforming_strings": "on",
}

// SessionParams returns a new map of the session settings under which a value's text is the text
// pgoutput sends (DateStyle, TimeZone, IntervalStyle, extra_float_digits, bytea_output,
// client_encoding, standard_conforming_strings), to send in a startup packet.
func SessionParams() map[string]string { return maps.Clone(sessionParams) }

// sessionSQL is SessionSQL's text, built once from sessionParams.
var sessionSQL = func() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(sessionParams)) {
		b.WriteString("SET " + k + " = " + QuoteLiteral(sessionParams[k]) + "; ")
	}
	return b.String()
}()

// SessionSQL returns SET statements, each ending in "; ", that give a session opened elsewhere
// the settings of SessionParams. The snapshot reader runs them before each COPY, whatever
// connection it has.
func SessionSQL() string { return sessionSQL }

// ServerMajor returns the major version of the server pg is connected to, from the server_version
// it reported at startup: 15 for "15.4 (Debian 15.4-1)", 17 for "17beta1", 9 for "9.6.2"; 0 if it
// reported none.
func ServerMajor(pg *pgconn.PgConn) int { return parseMajor(pg.ParameterStatus("server_version")) }

// parseMajor returns the leading number of a server_version, 0 if there is none.
func parseMajor(v string) int {
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(v[:end])
	return n
}
