// Package bound checks that configured values lie in their documented range, with errors that
// name the key, the value and the range, in the same words everywhere.
package bound

import (
	"fmt"
	"strings"
	"time"
)

// Duration returns an error naming key unless lo <= v <= hi.
func Duration(key string, v, lo, hi time.Duration) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s %s: use %s to %s", key, Format(v), Format(lo), Format(hi))
	}
	return nil
}

// DurationOrOff is Duration for a key where a negative value turns something off.
func DurationOrOff(key string, v, lo, hi time.Duration) error {
	if v < 0 {
		return nil
	}
	if v < lo || v > hi {
		return fmt.Errorf("%s %s: use %s to %s, or a negative value to turn it off", key, Format(v), Format(lo), Format(hi))
	}
	return nil
}

// Format writes d as time.Duration.String does, without zero minutes or seconds at the end: 1h,
// 10m, 1h30m, 1m30s, 500ms.
func Format(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
