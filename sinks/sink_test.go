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
		{Event{Op: OpDelete, CommitLSN: 0, Seq: 0}, "0/0/0"},
		{Event{Op: OpTruncate, CommitLSN: 1<<64 - 1, Seq: 1<<32 - 1}, "FFFFFFFF/FFFFFFFF/4294967295"},
		{Event{Op: OpMessage, LSN: 0x2000000, CommitLSN: 0x2000000, Seq: 3, Xid: 9}, "0/2000000/3"},
		// A snapshot read names the row version: generation, table OID, block.offset, xmin.
		{Event{Op: OpRead, CommitLSN: 1<<32 | 0x2A00, Seq: 5, Xid: 4242, Rel: 16384, Row: 12<<16 | 3}, "1/2A00/r/16384/12.3/4242"},
		{Event{Op: OpRead, CommitLSN: 0, Xid: 0, Rel: 0, Row: 0}, "0/0/r/0/0.0/0"},
		{Event{Op: OpRead, CommitLSN: 1<<64 - 1, Xid: 1<<32 - 1, Rel: 1<<32 - 1, Row: (1<<32-1)<<16 | 0xffff}, "FFFFFFFF/FFFFFFFF/r/4294967295/4294967295.65535/4294967295"},
	} {
		if got := tc.ev.ID(); got != tc.want {
			t.Errorf("ID() = %q, want %q", got, tc.want)
		}
		if got := string(tc.ev.AppendID([]byte("x:"))); got != "x:"+tc.want {
			t.Errorf("AppendID = %q, want %q", got, "x:"+tc.want)
		}
	}
}
