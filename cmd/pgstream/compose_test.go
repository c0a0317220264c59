package main

import (
	"net"
	"net/url"
	"os"
	"path"
	"slices"
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

// The compose Prometheus scrapes pgstream where configs/compose.yaml makes it listen, from
// another container, and loads the alert rules of docs/monitoring.
func TestComposePrometheusScrapesPgstream(t *testing.T) {
	data, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image   string   `yaml:"image"`
			Command []string `yaml:"command"`
			Volumes []string `yaml:"volumes"`
			Ports   []string `yaml:"ports"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	prom, ok := compose.Services["prometheus"]
	if !ok {
		t.Fatal("service prometheus missing")
	}
	if !strings.HasPrefix(prom.Image, "prom/prometheus") {
		t.Errorf("prometheus image %q, want prom/prometheus", prom.Image)
	}
	// Container path → repository file, for the files mounted from the repository.
	mounts := map[string]string{}
	for _, v := range prom.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && strings.HasPrefix(parts[0], "./") {
			mounts[parts[1]] = path.Clean(parts[0])
		}
	}
	configPath := "/etc/prometheus/prometheus.yml" // the image's default
	for _, arg := range prom.Command {
		if v, ok := strings.CutPrefix(arg, "--config.file="); ok {
			configPath = v
		}
	}
	configFile, ok := mounts[configPath]
	if !ok {
		t.Fatalf("prometheus reads %s, which no volume mounts from the repository (%v)", configPath, prom.Volumes)
	}
	data, err = os.ReadFile("../../" + configFile)
	if err != nil {
		t.Fatal(err)
	}
	var promCfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(data, &promCfg); err != nil {
		t.Fatalf("%s: %v", configFile, err)
	}

	// Rule files resolve, inside the container, to the repository's alert rules.
	if len(promCfg.RuleFiles) == 0 {
		t.Errorf("%s loads no rule files", configFile)
	}
	for _, rf := range promCfg.RuleFiles {
		inContainer := path.Join(path.Dir(configPath), rf)
		want := path.Join(path.Dir(configFile), rf)
		if got := mounts[inContainer]; got != want {
			t.Errorf("rule file %s is %s in the container, mounted from %q; want %s", rf, inContainer, got, want)
		}
		if _, err := os.Stat("../../" + want); err != nil {
			t.Errorf("rule file: %v", err)
		}
	}

	// pgstream listens where another container can reach it, on the port Prometheus scrapes.
	if _, err := load(t, "--config", "../../configs/compose.yaml"); err != nil {
		t.Fatalf("configs/compose.yaml: %v", err)
	}
	raw, err := os.ReadFile("../../configs/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pgCfg struct {
		HTTP struct {
			Listen string `yaml:"listen"`
		} `yaml:"http"`
	}
	if err := yaml.Unmarshal(raw, &pgCfg); err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(pgCfg.HTTP.Listen)
	if err != nil {
		t.Fatalf("configs/compose.yaml http.listen %q: %v", pgCfg.HTTP.Listen, err)
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		t.Errorf("http.listen %q is reachable only inside pgstream's container; Prometheus scrapes from another", pgCfg.HTTP.Listen)
	}
	var targets []string
	for _, sc := range promCfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			continue
		}
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	if !slices.Contains(targets, net.JoinHostPort("pgstream", port)) {
		t.Errorf("%s scrapes %v /metrics; want pgstream:%s (http.listen %s in configs/compose.yaml)", configFile, targets, port, pgCfg.HTTP.Listen)
	}
	if !slices.Contains(compose.Services["pgstream"].Ports, port+":"+port) {
		t.Errorf("pgstream publishes %v; want %s:%s, for /status from the host", compose.Services["pgstream"].Ports, port, port)
	}
}
