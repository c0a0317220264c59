package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func load(t *testing.T, args ...string) (*Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	addConfigFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return loadConfig(fs)
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := load(t, "--config", "../../configs/pgstream.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.Slot != "pgstream" || cfg.Source.StatusInterval != 10*time.Second || len(cfg.Sinks) == 0 {
		t.Fatalf("unexpected config: %+v", cfg.Source)
	}
	if cfg.Pipeline.MaxInFlightBytes != 16<<20 || cfg.Checkpoint.Path == "" {
		t.Fatalf("pipeline/checkpoint: %+v %+v", cfg.Pipeline, cfg.Checkpoint)
	}
}

func TestEnvironmentAndFlagsOverride(t *testing.T) {
	t.Setenv("PGSTREAM_SOURCE_SLOT", "from_env")
	t.Setenv("PGSTREAM_SOURCE_URL", "postgres://u@h:5432/envdb")
	cfg, err := load(t, "--config", "../../configs/pgstream.yaml", "--checkpoint.path", "/tmp/flag.ckpt")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.Slot != "from_env" || !strings.Contains(cfg.Source.URL, "envdb") {
		t.Fatalf("environment not applied: slot %q url %q", cfg.Source.Slot, cfg.Source.URL)
	}
	if cfg.Checkpoint.Path != "/tmp/flag.ckpt" {
		t.Fatalf("flag not applied: %q", cfg.Checkpoint.Path)
	}
	t.Setenv("PGSTREAM_SOURCE_SLOT", "from_env")
	cfg, err = load(t, "--config", "../../configs/pgstream.yaml", "--source.slot", "from_flag")
	if err != nil || cfg.Source.Slot != "from_flag" {
		t.Fatalf("flag does not override environment: %v %v", cfg, err)
	}
}

func TestConfigWithoutFileFromEnvironment(t *testing.T) {
	t.Setenv("PGSTREAM_SOURCE_URL", "postgres://u@h:5432/db")
	t.Setenv("PGSTREAM_CHECKPOINT_PATH", "/tmp/x")
	_, err := load(t)
	if err == nil || !strings.Contains(err.Error(), "sinks") {
		t.Fatalf("want an error about missing sinks, got %v", err)
	}
}

func TestEndposFlag(t *testing.T) {
	cfg, err := load(t, "--config", "../../configs/pgstream.yaml", "--endpos", "1/2")
	if err != nil || cfg.Pipeline.EndLSN != 1<<32|2 {
		t.Fatalf("endpos: %v %v", cfg.Pipeline.EndLSN, err)
	}
	if _, err := load(t, "--config", "../../configs/pgstream.yaml", "--endpos", "nope"); err == nil {
		t.Fatal("bad endpos accepted")
	}
}

func TestSinkConfigErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ sinks, want string }{
		"typo":              {"  - type: file\n    paht: x\n", "paht"},
		"file needs a path": {"  - type: file\n", "path"},
		"bad pattern":       {"  - type: stdout\n    include: ['public.[']\n", "pattern"},
		"kafka brokers":     {"  - type: kafka\n", "brokers"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
		os.WriteFile(p, []byte("source:\n  url: postgres://u@h/db\ncheckpoint:\n  path: c\nsinks:\n"+tc.sinks), 0o600)
		_, err := load(t, "--config", p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v does not mention %q", name, err, tc.want)
		}
	}
}

func TestUsageAndVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := realMain([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "pgstream ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := realMain(nil, &out, &errb); code != 2 {
		t.Fatalf("no args: exit %d", code)
	}
	if code := realMain([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("unknown command: exit %d %q", code, errb.String())
	}
}
