package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

const dashboardPath = "../deploy/grafana-dashboard.json"

// Every query of the shipped Grafana dashboard names metrics the exporter serves, with
// labels those metrics have: a renamed metric or label fails here, not on an operator's
// empty panel.
func TestDashboardQueriesServedMetrics(t *testing.T) {
	e := New()
	allSeries(t, e)
	mfs, err := e.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]map[string]bool{} // metric (and a histogram's series) -> labels
	for _, mf := range mfs {
		names := []string{mf.GetName()}
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			names = append(names, mf.GetName()+"_bucket", mf.GetName()+"_sum", mf.GetName()+"_count")
		}
		for _, n := range names {
			labels[n] = map[string]bool{"instance": true, "job": true} // the scrape target's
			for _, m := range mf.Metric {
				for _, l := range m.Label {
					labels[n][l.GetName()] = true
				}
			}
			if strings.HasSuffix(n, "_bucket") {
				labels[n]["le"] = true
			}
		}
	}

	exprs := dashboardExprs(t)
	if len(exprs) < 10 {
		t.Fatalf("%d queries in %s: the dashboard was not read", len(exprs), dashboardPath)
	}
	metricRef := regexp.MustCompile(`\b((?:discotrace|process|go)_[a-z_]+)(\{[^}]*\})?`)
	matcher := regexp.MustCompile(`(\w+)\s*(?:=~|!=|!~|=)`)
	grouping := regexp.MustCompile(`\bby \(([^)]*)\)`)
	served := 0
	for _, expr := range exprs {
		var used []string // the metrics of this query
		for _, m := range metricRef.FindAllStringSubmatch(expr, -1) {
			name := m[1]
			if labels[name] == nil {
				t.Errorf("query %q: %s is not served", expr, name)
				continue
			}
			if strings.HasPrefix(name, "discotrace_") {
				served++
			}
			used = append(used, name)
			for _, l := range matcher.FindAllStringSubmatch(m[2], -1) {
				if !labels[name][l[1]] {
					t.Errorf("query %q: %s has no label %s", expr, name, l[1])
				}
			}
		}
		for _, g := range grouping.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(g[1], ",") {
				l = strings.TrimSpace(l)
				found := false
				for _, name := range used {
					found = found || labels[name][l]
				}
				if !found {
					t.Errorf("query %q groups by %s, a label none of its metrics has", expr, l)
				}
			}
		}
	}
	if served == 0 {
		t.Errorf("the dashboard queries no discotrace metric")
	}
}

// dashboardExprs returns every query of the dashboard: the panels' targets and the
// template variables' queries.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("panel %q has a target without a query", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(map[string]any); ok && v.Type == "query" {
			exprs = append(exprs, q["query"].(string))
		}
	}
	return exprs
}
