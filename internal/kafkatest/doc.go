// Package kafkatest runs an in-process Kafka cluster (franz-go's kfake) for tests and reads
// topics back with a real consumer (franz-go's kgo).
//
// Every cluster is closed by the test's cleanup. The helpers call t.Fatal on failure and must be
// called from the test goroutine.
package kafkatest
