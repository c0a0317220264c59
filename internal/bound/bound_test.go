package bound

import (
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour: "1h", 10 * time.Minute: "10m", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s",
		500 * time.Millisecond: "500ms", 100 * time.Microsecond: "100µs", 5: "5ns", 0: "0s", -time.Second: "-1s",
		24 * time.Hour: "24h", time.Hour + time.Second: "1h0m1s",
	} {
		if got := Format(d); got != want {
			t.Errorf("Format(%d) = %q, want %q", d, got, want)
		}
	}
}

func TestDuration(t *testing.T) {
	lo, hi := 100*time.Millisecond, time.Hour
	for _, v := range []time.Duration{lo, time.Second, hi} {
		if err := Duration("k", v, lo, hi); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	for v, want := range map[time.Duration]string{
		5:                    "k 5ns: use 100ms to 1h",
		-time.Second:         "k -1s: use 100ms to 1h",
		hi + time.Second:     "k 1h0m1s: use 100ms to 1h",
		lo - time.Nanosecond: "k 99.999999ms: use 100ms to 1h",
	} {
		if err := Duration("k", v, lo, hi); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", v, err, want)
		}
	}
	if err := DurationOrOff("k", -time.Second, lo, hi); err != nil {
		t.Errorf("off: %v", err)
	}
	if err := DurationOrOff("k", 5, lo, hi); err == nil || err.Error() != "k 5ns: use 100ms to 1h, or a negative value to turn it off" {
		t.Errorf("5ns: %v", err)
	}
}
