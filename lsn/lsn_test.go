package lsn

import (
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		text string
		v    LSN
	}{
		{"0/0", 0},
		{"0/16B3748", 0x16B3748},
		{"1/0", 1 << 32},
		{"FFFFFFFF/FFFFFFFF", ^LSN(0)},
		{"A/B", 0xA<<32 | 0xB},
	} {
		got, err := Parse(tc.text)
		if err != nil || got != tc.v {
			t.Fatalf("Parse(%q) = %v, %v; want %v", tc.text, got, err, tc.v)
		}
		if s := tc.v.String(); s != tc.text {
			t.Fatalf("String(%d) = %q; want %q", uint64(tc.v), s, tc.text)
		}
	}
	if got, _ := Parse("a/b"); got != 0xA<<32|0xB {
		t.Fatalf("lower-case hex not accepted")
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{"", "/", "0/", "/0", "0", "G/0", "123456789/0", "0/-1", "0/0/0"} {
		if _, err := Parse(s); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) err = %v; want ErrSyntax", s, err)
		}
	}
}

func TestScanValue(t *testing.T) {
	var l LSN
	if err := l.Scan("1/2"); err != nil || l != 1<<32|2 {
		t.Fatalf("Scan string: %v %v", l, err)
	}
	if err := l.Scan([]byte("0/10")); err != nil || l != 16 {
		t.Fatalf("Scan bytes: %v %v", l, err)
	}
	if err := l.Scan(nil); err != nil || l != 0 {
		t.Fatalf("Scan nil: %v %v", l, err)
	}
	if err := l.Scan(42); err == nil {
		t.Fatal("Scan int accepted")
	}
	v, _ := LSN(1<<32 | 2).Value()
	if v != "1/2" {
		t.Fatalf("Value = %v", v)
	}
}
