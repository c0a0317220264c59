package bench

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readLine(id string) string {
	return `{"id":"0/16B3748/r/16393/0.` + id + `/725","op":"r","before":null,"after":{"id":` + id +
		`,"qty":1,"attrs":{"op":"c"}},"source":{"snapshot":true},"ts_ms":1}` + "\n"
}

func TestCheckSnapshotOutput(t *testing.T) {
	insert := `{"id":"0/16B3748/0","op":"c","before":null,"after":{"id":3},"source":{}}` + "\n"
	for _, tc := range []struct {
		name  string
		lines string
		want  SnapshotCount
		ok    bool
	}{
		{"every row once", readLine("1") + readLine("3") + readLine("2"), SnapshotCount{3, 3, 3}, true},
		{"a row missing", readLine("1") + readLine("2"), SnapshotCount{2, 2, 2}, false},
		{"a row twice", readLine("1") + readLine("2") + readLine("2"), SnapshotCount{3, 3, 2}, false},
		{"an insert instead of a read", readLine("1") + readLine("2") + insert, SnapshotCount{3, 2, 2}, false},
		{"an id out of range", readLine("1") + readLine("2") + readLine("4"), SnapshotCount{3, 3, 2}, false},
		{"a last line cut short", readLine("1") + readLine("2") + strings.TrimSuffix(readLine("3"), "\n"), SnapshotCount{2, 2, 2}, false},
		{"empty", "", SnapshotCount{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.jsonl")
			if err := os.WriteFile(path, []byte(tc.lines), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := CheckSnapshotOutput(path, 3)
			if got != tc.want {
				t.Errorf("count = %+v, want %+v", got, tc.want)
			}
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrSnapshotOutput)) {
				t.Errorf("err = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestSummarizeSnapshotRatio(t *testing.T) {
	runs := []SnapshotRun{
		{Client: "copy", Repeat: 1, Rows: 1000, Usage: Usage{Wall: 1e9, MaxRSS: 1 << 20}},
		{Client: "pgstream", Repeat: 1, Rows: 1000, Usage: Usage{Wall: 2e9, MaxRSS: 8 << 20}},
		{Client: "copy", Repeat: 2, Rows: 1000, Usage: Usage{Wall: 3e9, MaxRSS: 1 << 20}},
		{Client: "pgstream", Repeat: 2, Rows: 1000, Usage: Usage{Wall: 2e9, MaxRSS: 16 << 20}},
	}
	sums := SummarizeSnapshot(runs, "copy")
	if len(sums) != 2 || sums[0].Client != "copy" || sums[1].Client != "pgstream" {
		t.Fatalf("summaries %+v", sums)
	}
	if sums[0].RowsPerSec != 500 || sums[1].RowsPerSec != 500 || sums[1].Ratio != 1 {
		t.Errorf("rows/s %v and %v, ratio %v; want 500, 500, 1", sums[0].RowsPerSec, sums[1].RowsPerSec, sums[1].Ratio)
	}
	if sums[1].MaxRSSMiB != 12 || sums[1].WorstRSSMiB != 16 {
		t.Errorf("peak RSS median %v worst %v, want 12 and 16", sums[1].MaxRSSMiB, sums[1].WorstRSSMiB)
	}
}
