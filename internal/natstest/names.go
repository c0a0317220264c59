package natstest

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
)

var nameSeq atomic.Int64

// Names returns a JetStream stream name and a subject prefix for one test, both starting with base
// and unique on a server shared by several test processes: they carry this process's id and a
// sequence number, so two processes that number their databases alike never meet.
func Names(base string) (stream, prefix string) {
	tag := fmt.Sprintf("%s_%d_%d", strings.ToLower(base), os.Getpid(), nameSeq.Add(1))
	return strings.ToUpper(tag), tag
}
