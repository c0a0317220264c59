// Package kafka is the sink that writes pgstream change events to Apache Kafka with
// segmentio/kafka-go.
//
// Each event becomes one record: the key is the event's Key (the JSON of the row's key columns,
// null for truncates and messages), the value its Value, and the headers pgstream.id
// ("<commit_lsn>/<seq>"), pgstream.op, pgstream.lsn and pgstream.commit_lsn. The topic comes from
// Config.Topic or Config.TopicTemplate. Records are hash-partitioned by key with the murmur2
// partitioner of Kafka's Java client, so every change of a row lands on one partition in commit
// order. With Config.Tombstones a delete is followed by a record with the same key, a null value
// and the delete's headers (the same pgstream.id: tell the two apart by the null value).
//
// Write is synchronous: it returns nil once the brokers acknowledged every record of the batch
// (RequiredAcks decides which brokers). Records are handed to the producer in chunks that hold
// at most one producer batch per partition and at most MaxInFlightBytes bytes; a partition's
// batch succeeds or fails as a whole, so a retry re-sends only failed partitions' records, in
// order, and no key is ever reordered. Delivery is at-least-once: a retry after a lost
// acknowledgement duplicates records. Transient failures (network, leader elections, timeouts)
// are retried with exponential backoff until the context ends or MaxRetries is reached;
// permanent ones (authorization, record too large, invalid or missing topic) are returned as
// *Error, which names the topics and the fix.
//
// Buffer lifetimes: Write copies each event's Key and Value into a chunk arena owned by the Sink,
// reused once the chunk is acknowledged; when Write returns because its context ended the arena
// is abandoned, since the producer may still be sending it.
//
// A Sink is not safe for concurrent use: Write, Ping and Close are called from one goroutine.
package kafka
