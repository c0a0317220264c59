package kafka

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	kafkago "github.com/segmentio/kafka-go"
)

// ErrInvalidTopic is wrapped by the error for a topic name Kafka cannot accept even after
// sanitizing (empty, ".", "..", or longer than 249 bytes).
var ErrInvalidTopic = errors.New("invalid kafka topic name")

const maxTopicLen = 249

// renderTopic expands {prefix}, {schema} and {table} in tmpl and sanitizes the result. Empty
// schema or table names render as "_".
func renderTopic(tmpl, prefix, schema, table string) string {
	if schema == "" {
		schema = "_"
	}
	if table == "" {
		table = "_"
	}
	var b strings.Builder
	b.Grow(len(tmpl) + len(prefix) + len(schema) + len(table))
	for i := 0; i < len(tmpl); {
		rest := tmpl[i:]
		switch {
		case strings.HasPrefix(rest, "{prefix}"):
			b.WriteString(prefix)
			i += len("{prefix}")
		case strings.HasPrefix(rest, "{schema}"):
			b.WriteString(schema)
			i += len("{schema}")
		case strings.HasPrefix(rest, "{table}"):
			b.WriteString(table)
			i += len("{table}")
		default:
			b.WriteByte(tmpl[i])
			i++
		}
	}
	return sanitizeTopic(b.String())
}

// sanitizeTopic replaces every character outside [a-zA-Z0-9._-] by '_'; a multi-byte UTF-8
// character (or an invalid byte) becomes one '_'.
func sanitizeTopic(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if !topicByte(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if topicByte(c) {
			b.WriteByte(c)
			i++
			continue
		}
		_, n := utf8.DecodeRuneInString(s[i:])
		b.WriteByte('_')
		i += n
	}
	return b.String()
}

func topicByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// checkTopic reports whether a sanitized name is a legal topic.
func checkTopic(t string) error {
	switch {
	case t == "" || t == "." || t == "..":
		return fmt.Errorf("%w: %q", ErrInvalidTopic, t)
	case len(t) > maxTopicLen:
		return fmt.Errorf("%w: %q is longer than %d bytes", ErrInvalidTopic, t, maxTopicLen)
	}
	for i := 0; i < len(t); i++ {
		if !topicByte(t[i]) {
			return fmt.Errorf("%w: %q holds %q", ErrInvalidTopic, t, t[i])
		}
	}
	return nil
}

// murmur2 is the 32-bit MurmurHash2 variant used by Kafka's Java client to partition keyed
// records, so that pgstream places a key on the same partition a Java producer would.
func murmur2(data []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	n := len(data)
	h := uint32(seed) ^ uint32(n)
	i := 0
	for ; n-i >= 4; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch n - i {
	case 3:
		h ^= uint32(data[i+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[i+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[i])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// partitionOf maps a key to one of n partitions as Kafka's Java default partitioner does. A nil
// key hashes like an empty one, so keyless events of a topic (truncates, messages) share one
// partition and keep their order.
func partitionOf(key []byte, n int) int {
	if n <= 0 {
		return 0
	}
	return int(murmur2(key)&0x7fffffff) % n
}

// balancer is the kafka-go Balancer of the sink. It applies partitionOf to the partition list
// kafka-go passes and records each topic's partition count, so that the sink's chunking (which
// must predict partitions) notices a change. It is used only from Write's goroutine.
type balancer struct {
	counts map[string]int
}

var _ kafkago.Balancer = (*balancer)(nil)

func (b *balancer) Balance(msg kafkago.Message, partitions ...int) int {
	if len(partitions) == 0 {
		return 0
	}
	b.counts[msg.Topic] = len(partitions)
	return partitions[partitionOf(msg.Key, len(partitions))]
}
