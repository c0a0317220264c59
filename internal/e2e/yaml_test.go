package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// binaryConfig is the configuration file a test writes for the pgstream binary: a checkpoint in
// dir, a file sink writing dir/changes.jsonl (unless noFile), and the lines each test adds to the
// sections. Every section's lines are indented by two spaces and end in a newline.
type binaryConfig struct {
	url, slot   string // source.url and source.slot
	publication string // source.publication; pgs_<slot> when empty
	source      string // source lines after url, slot and publication
	noFile      bool   // no file sink: sinks are only the entries in sinks
	sinks       string // sink entries after the file sink
	pipeline    string // pipeline lines
	snapshot    string // snapshot lines; "  mode: never\n" when empty
	extra       string // further top-level sections, such as http:
	level       string // log.level; "info" when empty
	jsonFormat  bool   // log.format json (console otherwise is the default's choice)
}

// write writes dir/pgstream.yaml and returns its path.
func (c binaryConfig) write(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	pub := c.publication
	if pub == "" {
		pub = "pgs_" + c.slot
	}
	fmt.Fprintf(&b, "source:\n  url: %s\n  slot: %s\n  publication: %s\n%s", c.url, c.slot, pub, c.source)
	fmt.Fprintf(&b, "checkpoint:\n  path: %s\nsinks:\n", filepath.Join(dir, "checkpoint.json"))
	if !c.noFile {
		fmt.Fprintf(&b, "  - type: file\n    path: %s\n", filepath.Join(dir, "changes.jsonl"))
	}
	b.WriteString(c.sinks)
	if c.pipeline != "" {
		b.WriteString("pipeline:\n" + c.pipeline)
	}
	snapshot := c.snapshot
	if snapshot == "" {
		snapshot = "  mode: never\n"
	}
	b.WriteString("snapshot:\n" + snapshot + c.extra)
	level := c.level
	if level == "" {
		level = "info"
	}
	fmt.Fprintf(&b, "log:\n  level: %s\n", level)
	if c.jsonFormat {
		b.WriteString("  format: json\n")
	}
	p := filepath.Join(dir, "pgstream.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
