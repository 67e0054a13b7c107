package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/apiscout/apiscout/storage/storagetest"
)

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name     string `json:"name"`
			Type     string `json:"type"`
			Query    any    `json:"query"`
			AllValue string `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			RefID      string `json:"refId"`
			RawSQL     string `json:"rawSql"`
			Format     int    `json:"format"`
			QueryType  string `json:"queryType"`
			EditorType string `json:"editorType"`
		} `json:"targets"`
		Datasource struct {
			Type string `json:"type"`
		} `json:"datasource"`
	} `json:"panels"`
}

// grafanaMacros expands what the ClickHouse data source plugin
// (grafana-clickhouse-datasource) expands before a query reaches the
// server, the way it does.
type grafanaMacros struct {
	from, to time.Time
	interval time.Duration
	vars     map[string]string
}

var (
	reTimeFilter   = regexp.MustCompile(`\$__timeFilter\(([^)]+)\)`)
	reTimeInterval = regexp.MustCompile(`\$__timeInterval\(([^)]+)\)`)
	reVarFormat    = regexp.MustCompile(`\$\{(\w+):(\w+)\}`)
	reVarBraces    = regexp.MustCompile(`\$\{(\w+)\}`)
	reVarPlain     = regexp.MustCompile(`\$(\w+)`)
	reLeftover     = regexp.MustCompile(`\$\{?\w+`)
)

func sqlString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func (g *grafanaMacros) expand(t *testing.T, q string) string {
	t.Helper()
	from, to := g.from.Unix(), g.to.Unix()
	q = reTimeFilter.ReplaceAllString(q, fmt.Sprintf("$1 >= toDateTime(%d) AND $1 <= toDateTime(%d)", from, to))
	q = reTimeInterval.ReplaceAllString(q, fmt.Sprintf("toStartOfInterval(toDateTime($1), INTERVAL %d second)", int(g.interval.Seconds())))
	q = strings.NewReplacer(
		"$__fromTime", fmt.Sprintf("toDateTime(%d)", from),
		"$__toTime", fmt.Sprintf("toDateTime(%d)", to),
		"$__interval_s", fmt.Sprint(int(g.interval.Seconds())),
	).Replace(q)
	q = reVarFormat.ReplaceAllStringFunc(q, func(m string) string {
		p := reVarFormat.FindStringSubmatch(m)
		v, ok := g.vars[p[1]]
		if !ok {
			t.Errorf("query uses unknown variable %s", p[1])
			return m
		}
		switch p[2] {
		case "sqlstring", "singlequote":
			return sqlString(v)
		case "raw":
			return v
		}
		t.Errorf("query uses variable format %s the test does not know", p[2])
		return m
	})
	sub := func(re *regexp.Regexp) {
		q = re.ReplaceAllStringFunc(q, func(m string) string {
			name := re.FindStringSubmatch(m)[1]
			if v, ok := g.vars[name]; ok {
				return v
			}
			return m
		})
	}
	sub(reVarBraces)
	sub(reVarPlain)
	if l := reLeftover.FindString(q); l != "" {
		t.Errorf("query keeps %s after Grafana's expansion: an unknown macro or variable", l)
	}
	return q
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "dashboards", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("dashboards/: %d dashboards, want at least 4", len(files))
	}
	out := map[string]dashboard{}
	uids := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: no uid or title", f)
		}
		if prev, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s share uid %s", f, prev, d.UID)
		}
		uids[d.UID] = f
		out[filepath.Base(f)] = d
	}
	return out
}

// TestDashboards runs every panel query of every dashboard, with Grafana's
// macros and variables expanded, against a server filled with a generated
// run, and fails on an error or an empty answer (the data has something
// for every panel).
func TestDashboards(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	d := storagetest.Generate(6, testStart, 60, 100)
	if err := storagetest.WriteAll(ctx, s, d); err != nil {
		t.Fatal(err)
	}
	// A resent batch: the dashboards must not count it twice.
	if err := s.WriteAnomalies(ctx, d.Anomalies); err != nil {
		t.Fatal(err)
	}
	for name, db := range loadDashboards(t) {
		for _, useAll := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/all=%v", name, useAll), func(t *testing.T) {
				checkDashboard(t, ctx, s, d, db, useAll)
			})
		}
	}
}

// checkDashboard expands db's variables (the first value of each, or
// "All" where offered when useAll) and runs its panels.
func checkDashboard(t *testing.T, ctx context.Context, s *Store, d *storagetest.Data, db dashboard, useAll bool) {
	g := &grafanaMacros{from: d.Start, to: d.End, interval: time.Minute, vars: map[string]string{}}
	panels := 0
	for _, v := range db.Templating.List {
		switch v.Type {
		case "datasource":
			continue
		case "constant", "textbox", "custom":
			if v.Name == "database" {
				g.vars[v.Name] = s.opts.Database
				continue
			}
			g.vars[v.Name] = fmt.Sprint(v.Query)
		case "query":
			q, _ := v.Query.(string)
			if m, ok := v.Query.(map[string]any); ok {
				q, _ = m["query"].(string)
			}
			rows, err := s.conn.Query(ctx, g.expand(t, q))
			if err != nil {
				t.Fatalf("variable %s: %v\n%s", v.Name, err, q)
			}
			var first string
			for rows.Next() {
				if first == "" {
					if err := rows.Scan(&first); err != nil {
						t.Fatalf("variable %s: %v", v.Name, err)
					}
				}
			}
			rows.Close()
			if first == "" {
				t.Fatalf("variable %s: no values", v.Name)
			}
			g.vars[v.Name] = first
			if useAll && v.AllValue != "" {
				g.vars[v.Name] = v.AllValue
			}
		default:
			t.Fatalf("variable %s: type %s the test does not know", v.Name, v.Type)
		}
	}
	for _, p := range db.Panels {
		if p.Datasource.Type != "grafana-clickhouse-datasource" {
			t.Errorf("panel %q: data source %q, want grafana-clickhouse-datasource", p.Title, p.Datasource.Type)
		}
		for _, tg := range p.Targets {
			if tg.RawSQL == "" {
				t.Errorf("panel %q target %s: no rawSql", p.Title, tg.RefID)
				continue
			}
			// The plugin's values: editorType sql; queryType table
			// (format 1) or timeSeries (format 0).
			if tg.EditorType != "sql" || !(tg.QueryType == "table" && tg.Format == 1 || tg.QueryType == "timeSeries" && tg.Format == 0) {
				t.Errorf("panel %q target %s: editorType %q, queryType %q, format %d", p.Title, tg.RefID, tg.EditorType, tg.QueryType, tg.Format)
			}
			if (p.Type == "timeseries") != (tg.QueryType == "timeSeries") {
				t.Errorf("panel %q (%s) has a %s query", p.Title, p.Type, tg.QueryType)
			}
			panels++
			q := g.expand(t, tg.RawSQL)
			n, err := countRows(ctx, s, q)
			if err != nil {
				t.Errorf("panel %q: %v\n%s", p.Title, err, q)
				continue
			}
			if n == 0 {
				t.Errorf("panel %q: no rows from data that should give some\n%s", p.Title, q)
			}
		}
	}
	if panels == 0 {
		t.Error("no panel queries")
	}
	t.Logf("%s: %d panel queries ran, variables %v", db.UID, panels, g.vars)
}

// countRows runs q and counts its rows (columns of any type).
func countRows(ctx context.Context, s *Store, q string) (int, error) {
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

// TestGrafanaProvisioning checks that the provisioning files parse, that
// the data source is the plugin the dashboards ask for, and that the
// dashboards provider points where the README mounts dashboards/.
func TestGrafanaProvisioning(t *testing.T) {
	root := filepath.Join(repoRoot(t), "deploy", "grafana", "provisioning")
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Type     string         `yaml:"type"`
			UID      string         `yaml:"uid"`
			JSONData map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(root, "datasources", "clickhouse.yaml"), &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "grafana-clickhouse-datasource" {
		t.Fatalf("data source provisioning: %+v", ds)
	}
	if p := ds.Datasources[0].JSONData["protocol"]; p != "native" {
		t.Errorf("data source protocol %v, want native", p)
	}
	var dp struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(root, "dashboards", "apiscout.yaml"), &dp)
	if len(dp.Providers) != 1 || dp.Providers[0].Type != "file" || dp.Providers[0].Options.Path != "/var/lib/grafana/dashboards/apiscout" {
		t.Fatalf("dashboard provisioning: %+v", dp)
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "grafana", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "dashboards:"+dp.Providers[0].Options.Path) {
		t.Error("deploy/grafana/README.md does not mount dashboards/ where the provider reads")
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
