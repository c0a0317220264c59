// Package replication is the client side of one PostgreSQL logical replication session: it opens a
// connection in replication=database mode on top of github.com/jackc/pgx/v5/pgconn (which handles
// startup, TLS and authentication), checks that the server is ready (wal_level, role, slot,
// publication, tables), creates the publication and the pgoutput slot when allowed (a failover slot
// on PostgreSQL 17+ when asked), starts streaming and exchanges CopyData frames with the walsender.
// InspectFailover reads, server by server, what a failover of the source needs.
//
// It implements the frontend side of the Streaming Replication Protocol and the Logical Streaming
// Replication Protocol (https://www.postgresql.org/docs/current/protocol-replication.html and
// https://www.postgresql.org/docs/current/protocol-logical-replication.html): IDENTIFY_SYSTEM,
// CREATE_REPLICATION_SLOT … LOGICAL pgoutput, START_REPLICATION … LOGICAL, the XLogData ('w') and
// Primary keepalive ('k') messages and the Standby status update ('r'). It does not decode pgoutput
// payloads (package walparse does) and it does not decide which positions to acknowledge (the caller
// does).
//
// Errors that callers branch on are sentinels matched with errors.Is (ErrDeadline, ErrStreamEnded,
// ErrWALLevel, ErrSlotActive, …); each configuration problem is an *Error carrying the fix in plain
// words. IsRetryable tells whether reconnecting may help.
//
// Concurrency: a Conn is not safe for concurrent use. One goroutine owns it, receives with a deadline
// equal to its next status-update time and sends status updates itself, so a slow consumer can never
// starve the server's wal_sender_timeout.
package replication
