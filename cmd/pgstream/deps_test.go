package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestBinaryDoesNotLinkTesting guards the shipped binary against the test harness: package testing
// registers its -test.* flags and brings code no user runs. Code the binary needs from a test helper
// (the demo's throwaway cluster) belongs in a package that does not import testing (internal/pgcluster).
func TestBinaryDoesNotLinkTesting(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go tool is not on PATH, so the binary's dependencies cannot be listed: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, ".").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps: %v: %s", err, stderr)
	}
	var importers []string
	linked, listed := false, false
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "testing":
			linked = true
		case "github.com/pgstream/pgstream/cmd/pgstream":
			listed = true
		}
		if slices.Contains(fields[1:], "testing") {
			importers = append(importers, fields[0])
		}
	}
	if !listed {
		t.Fatalf("go list -deps did not list cmd/pgstream itself; it printed:\n%s", out)
	}
	if linked {
		t.Fatalf("cmd/pgstream links package testing, imported by %s: move what the binary needs into a package that does not import testing",
			strings.Join(importers, ", "))
	}
}
