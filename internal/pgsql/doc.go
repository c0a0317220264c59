// Package pgsql runs SQL on a github.com/jackc/pgx/v5/pgconn connection and spells SQL text: it
// reads results as text (Exec, Value, Query), quotes identifiers and literals, gives a session the
// settings pgoutput formats values with (SessionParams, SessionSQL), imports an exported snapshot
// and reads the server's major version.
//
// It is a toolkit without opinions about what it runs: it knows nothing of replication slots,
// publications or pgstream's configuration (package replication does), and it does not judge a
// server's state (package inspect does). It depends on no other package of the module.
//
// Every function is safe for concurrent use; a *pgconn.PgConn passed to one is not, and must be
// used by one goroutine at a time.
package pgsql
