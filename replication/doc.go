// Package replication is the client side of one PostgreSQL logical replication session: the
// source's configuration (Config: defaults, validation, URL parsing, hosts, RedactURL), a connection
// in replication=database mode on top of github.com/jackc/pgx/v5/pgconn (which handles startup,
// TLS and authentication), the replication slot and publication the stream reads from (created
// when allowed, a failover slot on PostgreSQL 17+ when asked), START_REPLICATION and the CopyData
// frames exchanged with the walsender. NewSQLConn and ConnectHost dial the source for ordinary
// queries with the same settings.
//
// It implements the frontend side of the Streaming Replication Protocol and the Logical Streaming
// Replication Protocol (https://www.postgresql.org/docs/current/protocol-replication.html and
// https://www.postgresql.org/docs/current/protocol-logical-replication.html): IDENTIFY_SYSTEM,
// TIMELINE_HISTORY, CREATE_REPLICATION_SLOT … LOGICAL pgoutput, ALTER_REPLICATION_SLOT,
// START_REPLICATION … LOGICAL, the XLogData ('w') and Primary keepalive ('k') messages and the
// Standby status update ('r').
//
// It does not decode pgoutput payloads (package walparse does), it does not decide which positions
// to acknowledge (the caller does), it does not judge the server's state beyond what creating the
// slot and the publication needs (package inspect does: preflight, standby and failover findings),
// and running SQL and quoting are package pgsql's.
//
// Errors that callers branch on are sentinels matched with errors.Is (ErrDeadline, ErrStreamEnded,
// ErrWALLevel, ErrSlotActive, …); each configuration problem is an *Error carrying the fix in plain
// words. IsRetryable tells whether reconnecting may help.
//
// Concurrency: a Conn is not safe for concurrent use. One goroutine owns it, receives with a deadline
// equal to its next status-update time and sends status updates itself, so a slow consumer can never
// starve the server's wal_sender_timeout.
package replication
