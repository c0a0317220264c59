package main

import (
	"net/url"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// There is no container engine to run docker-compose.yml in tests, so this checks what can be
// checked: it parses, pgstream's config inside it loads, and every host that config names is a
// service of the compose file with the settings pgstream relies on.
func TestComposeFileMatchesItsConfig(t *testing.T) {
	data, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string         `yaml:"image"`
			Build       any            `yaml:"build"`
			Command     []string       `yaml:"command"`
			Environment map[string]any `yaml:"environment"`
			Volumes     []string       `yaml:"volumes"`
			DependsOn   map[string]any `yaml:"depends_on"`
			Extra       map[string]any `yaml:",inline"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, name := range []string{"postgres", "kafka", "nats", "pgstream"} {
		if _, ok := compose.Services[name]; !ok {
			t.Fatalf("service %s missing", name)
		}
	}
	pg := compose.Services["postgres"]
	if !strings.Contains(strings.Join(pg.Command, " "), "wal_level=logical") {
		t.Errorf("postgres is not started with wal_level=logical: %v", pg.Command)
	}
	if roles, _ := compose.Services["kafka"].Environment["KAFKA_PROCESS_ROLES"].(string); !strings.Contains(roles, "controller") {
		t.Errorf("kafka is not in KRaft mode (KAFKA_PROCESS_ROLES=%q)", roles)
	}
	if !strings.Contains(strings.Join(compose.Services["nats"].Command, " "), "-js") {
		t.Errorf("nats runs without JetStream")
	}
	ps := compose.Services["pgstream"]
	if ps.Build == nil {
		t.Errorf("pgstream is not built from this repository")
	}
	if _, err := os.Stat("../../Dockerfile"); err != nil {
		t.Errorf("Dockerfile: %v", err)
	}
	var configMount string
	for _, v := range ps.Volumes {
		if strings.HasPrefix(v, "./configs/") {
			configMount = v
		}
	}
	parts := strings.Split(configMount, ":")
	if len(parts) < 2 || !strings.Contains(strings.Join(ps.Command, " "), parts[1]) {
		t.Fatalf("pgstream's config mount %q does not match its command %v", configMount, ps.Command)
	}

	cfg, err := load(t, "--config", "../../"+strings.TrimPrefix(parts[0], "./"))
	if err != nil {
		t.Fatalf("%s: %v", parts[0], err)
	}
	u, err := url.Parse(cfg.Source.URL)
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{u.Hostname()}
	for i, raw := range cfg.Sinks {
		h, err := parseSinkHeader(i, raw)
		if err != nil {
			t.Fatal(err)
		}
		list, _ := stringList(h.Rest["brokers"])
		if h.Type == "nats" {
			list, _ = stringList(h.Rest["servers"])
		}
		for _, addr := range list {
			if pu, err := url.Parse(addr); err == nil && pu.Host != "" {
				addr = pu.Host
			}
			hosts = append(hosts, strings.Split(addr, ":")[0])
		}
	}
	for _, h := range hosts {
		if _, ok := compose.Services[h]; !ok {
			t.Errorf("config names host %q, which is not a compose service", h)
		}
		if h != "pgstream" {
			if _, ok := ps.DependsOn[h]; !ok {
				t.Errorf("pgstream does not depend on %s", h)
			}
		}
	}
	if len(hosts) < 3 {
		t.Errorf("compose config streams to %v; want PostgreSQL, Kafka and NATS", hosts)
	}
}
