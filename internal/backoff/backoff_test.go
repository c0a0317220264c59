package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: 3 * time.Second}
	for _, tc := range []struct {
		attempt int
		full    time.Duration // the wait before jitter
	}{
		{0, 100 * time.Millisecond}, {1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {3, 400 * time.Millisecond},
		{5, 1600 * time.Millisecond}, {6, 3 * time.Second}, {40, 3 * time.Second}, {100, 3 * time.Second}, {1 << 30, 3 * time.Second},
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(tc.attempt)
			if d > tc.full || d < tc.full-tc.full/4 {
				t.Fatalf("Delay(%d) = %s, want within [%s, %s]", tc.attempt, d, tc.full-tc.full/4, tc.full)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("Delay(%d) never varied: no jitter", tc.attempt)
		}
	}
}

func TestWait(t *testing.T) {
	if !Wait(context.Background(), time.Millisecond) {
		t.Fatal("Wait ended early without cancellation")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Wait(ctx, time.Hour) {
		t.Fatal("Wait on a cancelled context reported a full wait")
	}
}
