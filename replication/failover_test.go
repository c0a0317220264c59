package replication

import (
	"testing"
)

func TestCreateSlotCommand(t *testing.T) {
	for _, tc := range []struct {
		failover, export bool
		want             string
	}{
		{false, false, `CREATE_REPLICATION_SLOT "s" LOGICAL pgoutput NOEXPORT_SNAPSHOT`},
		{false, true, `CREATE_REPLICATION_SLOT "s" LOGICAL pgoutput EXPORT_SNAPSHOT`},
		{true, false, `CREATE_REPLICATION_SLOT "s" LOGICAL pgoutput (SNAPSHOT 'nothing', FAILOVER true)`},
		{true, true, `CREATE_REPLICATION_SLOT "s" LOGICAL pgoutput (SNAPSHOT 'export', FAILOVER true)`},
	} {
		c := &Conn{cfg: Config{Slot: "s", Failover: tc.failover}}
		if got := c.createSlotCommand(tc.export); got != tc.want {
			t.Errorf("failover %v export %v: %s, want %s", tc.failover, tc.export, got, tc.want)
		}
	}
}
