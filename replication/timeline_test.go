package replication

import (
	"encoding/hex"
	"reflect"
	"testing"
)

func TestParseTimelineHistory(t *testing.T) {
	const file = "1\t0/3000158\tno recovery target specified\n\n# a comment\n2\t1/A0000000\tbefore 2026-12-01 10:00:00+00\n"
	want := []TimelineSwitch{{Timeline: 1, End: 0x3000158}, {Timeline: 2, End: 0x1_A0000000}}
	for name, content := range map[string]string{"text": file, "bytea hex": `\x` + hex.EncodeToString([]byte(file))} {
		got, err := ParseTimelineHistory(content)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: ParseTimelineHistory = %+v, %v; want %+v", name, got, err, want)
		}
	}
	for _, bad := range []string{"1\n", "x\t0/1\tr\n", "0\t0/1\tr\n", "1\tnot-an-lsn\tr\n", `\xzz`} {
		if got, err := ParseTimelineHistory(bad); err == nil {
			t.Errorf("ParseTimelineHistory(%q) = %+v, want an error", bad, got)
		}
	}
}
