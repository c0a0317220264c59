package sinks

import "testing"

func TestEventIDs(t *testing.T) {
	for _, tc := range []struct {
		ev   Event
		want string
	}{
		{Event{Op: OpCreate, CommitLSN: 0x1A2B3C8, Seq: 0}, "0/1A2B3C8/0"},
		{Event{Op: OpUpdate, CommitLSN: 1<<32 | 5, Seq: 41}, "1/5/41"},
		{Event{Op: OpBegin, CommitLSN: 0x10}, "0/10/b"},
		{Event{Op: OpEnd, CommitLSN: 0x10, Seq: 7}, "0/10/e"},
	} {
		if got := tc.ev.ID(); got != tc.want {
			t.Errorf("ID() = %q, want %q", got, tc.want)
		}
	}
}
