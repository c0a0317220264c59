package metrics_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"

	"go.yaml.in/yaml/v3"
)

var metricName = regexp.MustCompile(`pgstream_[a-z_]+`)

// undefined returns the pgstream metric names text uses that the exposition does not define. A
// name ending in _bucket, _sum or _count counts when its base is a histogram; one ending in _ (as
// in the wildcard pgstream_slot_*) when it is the prefix of a defined name.
func undefined(text string, fams map[string]string) []string {
	seen := map[string]bool{}
	var bad []string
	for _, name := range metricName.FindAllString(text, -1) {
		if seen[name] {
			continue
		}
		seen[name] = true
		if _, ok := fams[name]; ok {
			continue
		}
		known := false
		if strings.HasSuffix(name, "_") {
			for f := range fams {
				known = known || strings.HasPrefix(f, name)
			}
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && fams[base] == "histogram" {
				known = true
			}
		}
		if !known {
			bad = append(bad, name)
		}
	}
	sort.Strings(bad)
	return bad
}

// The dashboard imports as a Grafana JSON model, takes its datasource as the DS_PROMETHEUS input,
// and queries only metrics that metrics.go defines.
func TestDashboardQueriesDefinedMetrics(t *testing.T) {
	fams := families(t, exposition(t))
	data, err := os.ReadFile(filepath.Join(monitoring, "grafana.json"))
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr       string         `json:"expr"`
		Datasource map[string]any `json:"datasource"`
	}
	type panel struct {
		ID         int            `json:"id"`
		Type       string         `json:"type"`
		Title      string         `json:"title"`
		Datasource map[string]any `json:"datasource"`
		Targets    []target       `json:"targets"`
		Panels     []panel        `json:"panels"`
	}
	var dash struct {
		Inputs []struct {
			Name     string `json:"name"`
			Type     string `json:"type"`
			PluginID string `json:"pluginId"`
		} `json:"__inputs"`
		Title      string  `json:"title"`
		UID        string  `json:"uid"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string         `json:"name"`
				Type       string         `json:"type"`
				Datasource map[string]any `json:"datasource"`
				Query      any            `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("grafana.json: %v", err)
	}
	if len(dash.Inputs) != 1 || dash.Inputs[0].Name != "DS_PROMETHEUS" || dash.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs = %+v, want one prometheus datasource input DS_PROMETHEUS", dash.Inputs)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Errorf("title %q, uid %q: both are needed to import", dash.Title, dash.UID)
	}
	const ds = "${DS_PROMETHEUS}"
	var queries []string
	ids := map[int]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup {
				t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			if p.Datasource["uid"] != ds {
				t.Errorf("panel %q: datasource %v, want uid %s", p.Title, p.Datasource, ds)
			}
			for _, tg := range p.Targets {
				if tg.Datasource["uid"] != ds {
					t.Errorf("panel %q: query datasource %v, want uid %s", p.Title, tg.Datasource, ds)
				}
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q has an empty query", p.Title)
				}
				queries = append(queries, tg.Expr)
			}
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Type == "query" && v.Datasource["uid"] != ds {
			t.Errorf("variable %q: datasource %v, want uid %s", v.Name, v.Datasource, ds)
		}
		switch q := v.Query.(type) {
		case string:
			queries = append(queries, q)
		case map[string]any:
			s, _ := q["query"].(string)
			queries = append(queries, s)
		}
	}
	text := strings.Join(queries, "\n")
	if len(metricName.FindAllString(text, -1)) == 0 {
		t.Fatalf("no pgstream metric in the dashboard's %d queries", len(queries))
	}
	if bad := undefined(text, fams); len(bad) > 0 {
		t.Errorf("grafana.json queries metrics that metrics.go does not define: %v", bad)
	}
}

// headingAnchors returns the anchors GitHub gives the Markdown headings of text.
func headingAnchors(text string) map[string]bool {
	out := map[string]bool{}
	inFence := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteByte('-')
			}
		}
		out[b.String()] = true
	}
	return out
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// Every alert rule queries defined metrics, waits (for:), has a severity, a summary, a
// description, and a runbook_url naming a heading of docs/operations.md; and the unit tests give
// every alert a case.
func TestAlertRulesAreComplete(t *testing.T) {
	fams := families(t, exposition(t))
	ops, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := headingAnchors(string(ops))
	data, err := os.ReadFile(filepath.Join(monitoring, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules ruleFile
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	const runbook = "https://github.com/pgstream/pgstream/blob/main/docs/operations.md#"
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts = append(alerts, r.Alert)
			if bad := undefined(r.Expr, fams); len(bad) > 0 {
				t.Errorf("%s queries metrics that metrics.go does not define: %v", r.Alert, bad)
			}
			if r.For == "" {
				t.Errorf("%s has no for:", r.Alert)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s has no %s annotation", r.Alert, a)
				}
			}
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbook)
			if !ok || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q does not point at a heading of docs/operations.md (%s<anchor>)", r.Alert, r.Annotations["runbook_url"], runbook)
			}
		}
	}
	if len(alerts) == 0 {
		t.Fatal("alerts.yml holds no alert")
	}

	data, err = os.ReadFile(filepath.Join(monitoring, "alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			Name   string `yaml:"name"`
			Series []struct {
				Series string `yaml:"series"`
			} `yaml:"input_series"`
			Alerts []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(data, &tests); err != nil {
		t.Fatalf("alerts_test.yml: %v", err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, s := range tc.Series {
			if bad := undefined(s.Series, fams); len(bad) > 0 {
				t.Errorf("alerts_test.yml %q: series of metrics that metrics.go does not define: %v", tc.Name, bad)
			}
		}
		for _, a := range tc.Alerts {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, a := range alerts {
		if !fires[a] || !quiet[a] {
			t.Errorf("alerts_test.yml must show %s both firing (%v) and not firing (%v)", a, fires[a], quiet[a])
		}
	}
}

// docs/operations.md documents every metric in a table row of its own, and no metric that does not
// exist.
func TestOperationsDocListsEveryMetric(t *testing.T) {
	fams := families(t, exposition(t))
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, name := range contract {
		if !strings.Contains(text, "\n| `"+name+"` |") {
			t.Errorf("docs/operations.md has no table row for %s (| `%s` | type | labels | meaning | healthy |)", name, name)
		}
	}
	if bad := undefined(text, fams); len(bad) > 0 {
		t.Errorf("docs/operations.md names metrics that metrics.go does not define: %v", bad)
	}
}

var localLink = regexp.MustCompile(`\]\(([a-z]+\.md)?#([^)]+)\)`)

// The links of docs/operations.md to its own headings and to its sibling documents' headings
// resolve.
func TestOperationsDocLinks(t *testing.T) {
	dir := filepath.Join("..", "..", "docs")
	anchors := map[string]map[string]bool{}
	load := func(file string) map[string]bool {
		if a, ok := anchors[file]; ok {
			return a
		}
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		anchors[file] = headingAnchors(string(data))
		return anchors[file]
	}
	data, err := os.ReadFile(filepath.Join(dir, "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	links := localLink.FindAllStringSubmatch(string(data), -1)
	if len(links) == 0 {
		t.Fatal("no links to headings found: the pattern is wrong")
	}
	for _, l := range links {
		file := l[1]
		if file == "" {
			file = "operations.md"
		}
		if !load(file)[l[2]] {
			t.Errorf("link %s: %s has no heading with that anchor", l[0], file)
		}
	}
}
