package testport

import (
	"net"
	"strconv"
	"testing"
)

func TestFreeIsBelowTheEphemeralRangeAndFree(t *testing.T) {
	p, err := Free()
	if err != nil {
		t.Fatal(err)
	}
	if lo := ephemeralLow(); lo-lowest >= 1000 && (p < lowest || p >= lo) {
		t.Fatalf("port %d is outside [%d, %d)", p, lowest, lo)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatalf("port %d cannot be bound: %v", p, err)
	}
	l.Close()
}
