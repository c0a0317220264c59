package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBareDurationRefused: the real binary refuses a duration without a unit before it connects,
// naming the key, whether the number comes from the file, the environment or a sink entry.
func TestBareDurationRefused(t *testing.T) {
	db := newDB(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, db, "s_"+db, "")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(name, old, new string) string {
		if !strings.Contains(string(data), old) {
			t.Fatalf("config lacks %q:\n%s", old, data)
		}
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte(strings.Replace(string(data), old, new, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		cmd  string
		cfg  string
		env  []string
		want string
	}{
		{"file check", "check", edit("file", "status_interval: 200ms", "status_interval: 5"), nil,
			"source.status_interval: 5 has no unit; write e.g. 5s or 500ms"},
		{"file run", "run", edit("file", "status_interval: 200ms", "status_interval: 5"), nil,
			"source.status_interval: 5 has no unit; write e.g. 5s or 500ms"},
		{"environment", "check", cfg, []string{"PGSTREAM_SOURCE_CONNECT_TIMEOUT=5"},
			"source.connect_timeout: 5 has no unit; write e.g. 5s or 500ms"},
		{"sink entry", "check", edit("sink", "  - type: file\n", "  - type: nats\n    ack_timeout: 2.5\n  - type: file\n"), nil,
			"sinks[0].ack_timeout: 2.5 has no unit; write e.g. 2.5s or 500ms"},
		{"out of range", "check", edit("range", "status_interval: 200ms", "status_interval: 5us"), nil,
			"source.status_interval 5µs: use 100ms to 1h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startBinaryEnv(t, tc.env, tc.cmd, "--config", tc.cfg)
			select {
			case <-p.done:
			case <-time.After(60 * time.Second):
				t.Fatalf("pgstream %s did not finish within 60s:\n%s", tc.cmd, p.stderr)
			}
			out, code := p.stderr.String(), p.cmd.ProcessState.ExitCode()
			if code != 2 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want 2 with %q:\n%s", code, tc.want, out)
			}
			if strings.Contains(out, "ok    ") {
				t.Fatalf("checks ran despite the configuration error:\n%s", out)
			}
		})
	}
}

// TestCheckNamesMissingPassword: with no password anywhere, check says so instead of calling it
// wrong.
func TestCheckNamesMissingPassword(t *testing.T) {
	db := newDB(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, db, "s_"+db, "")
	data, _ := os.ReadFile(cfg)
	noPW := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&passfile=/nonexistent", cluster.Port, db)
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(data), cluster.URL(db), noPW, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinaryEnv(t, []string{"PGPASSWORD="}, "check", "--config", cfg)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("check did not finish within 60s:\n%s", p.stderr)
	}
	out := p.stderr.String()
	if p.cmd.ProcessState.ExitCode() != 1 || !strings.Contains(out, "no password was given for role postgres") ||
		!strings.Contains(out, "source.password_file") || strings.Contains(out, "wrong password") {
		t.Fatalf("exit %d:\n%s", p.cmd.ProcessState.ExitCode(), out)
	}
}

// TestCheckCorruptCheckpointNamesTheWaysOut: check refuses a corrupt checkpoint and says what to do.
func TestCheckCorruptCheckpointNamesTheWaysOut(t *testing.T) {
	db := newDB(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, db, "s_"+db, "")
	ckpt := filepath.Join(dir, "checkpoint.json")
	if err := os.WriteFile(ckpt, []byte(`{"version":2,"crc32c":1,"payload":{}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, "check", "--config", cfg)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("check did not finish within 60s:\n%s", p.stderr)
	}
	out := p.stderr.String()
	for _, want := range []string{"FAIL  checkpoint " + ckpt, "checkpoint file corrupt", "restore " + ckpt + " from a backup",
		"snapshot.mode: initial", "snapshot.mode: never"} {
		if !strings.Contains(out, want) {
			t.Fatalf("check output lacks %q (exit %d):\n%s", want, p.cmd.ProcessState.ExitCode(), out)
		}
	}
	if p.cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("exit %d, want 1:\n%s", p.cmd.ProcessState.ExitCode(), out)
	}
}
