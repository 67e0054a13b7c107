package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/api"
	"github.com/apiscout/apiscout/analyzer/api/storeread"
	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/wire"
)

// analyzerProcess is one start of the analyzer over the embedded store:
// the engine as runAnalyzer and runRun open it, and the REST API over it.
type analyzerProcess struct {
	store analysisStore
	eng   *lockedEngine
	api   http.Handler
}

const templatesAdmin = "admin-token-templates-0123"

func startAnalyzerProcess(t *testing.T, path string) *analyzerProcess {
	t.Helper()
	ctx := context.Background()
	cfg := config.Default()
	cfg.Storage.Kind, cfg.Storage.Path = "embedded", path
	cfg.UI.AdminTokens = []string{templatesAdmin}
	cfg.Analyzer.Templates = []string{"split /users/me"}
	a := &app{cfg: cfg, log: zap.NewNop(), reg: prometheus.NewRegistry()}
	store, err := openAnalysisStore(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := openEngine(ctx, a, store)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Options{Config: cfg.UI, Reader: storeread.New(store, eng.specs()), Templates: eng, Reg: a.reg})
	if err != nil {
		t.Fatal(err)
	}
	return &analyzerProcess{store: store, eng: eng, api: srv.Handler()}
}

func (p *analyzerProcess) call(method, target, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://127.0.0.1:8080"+target, strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+templatesAdmin)
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	p.api.ServeHTTP(w, r)
	return w
}

func (p *analyzerProcess) get(paths ...string) {
	for i, path := range paths {
		p.eng.Process(&wire.Transaction{Host: "shop.example", Method: "GET", Path: path, Status: 200,
			RequestStart: time.Date(2026, 3, 1, 12, 0, i, 0, time.UTC),
			Client:       netip.MustParseAddrPort("10.0.0.7:40000"), Server: netip.MustParseAddrPort("10.0.0.1:80")})
	}
}

func (p *analyzerProcess) endpoints() map[string]int64 {
	out := map[string]int64{}
	for _, s := range p.eng.Services() {
		for _, ep := range s.Endpoints {
			out[ep.Method+" "+ep.Path] = ep.Calls
		}
	}
	return out
}

// TestTemplateDecisionKeptAcrossRestart: a decision made through the REST
// API is saved in the real embedded store and in force after a restart;
// one withdrawn stays withdrawn.
func TestTemplateDecisionKeptAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apiscout.db")
	p := startAnalyzerProcess(t, path)
	p.get("/reports/daily", "/reports/daily", "/reports/weekly")
	for _, body := range []string{`{"action":"merge","template":"/reports/{report}"}`, `{"action":"split","template":"/files/{name}"}`} {
		if w := p.call("POST", "/api/v1/services/shop.example/templates", body); w.Code != http.StatusCreated {
			t.Fatalf("POST %s: %d %s", body, w.Code, w.Body)
		}
	}
	if w := p.call("POST", "/api/v1/services/shop.example/templates", `{"action":"merge","template":"/files/{file}"}`); w.Code != http.StatusConflict {
		t.Fatalf("a contradicting decision: %d %s", w.Code, w.Body)
	}
	if got := p.endpoints(); got["GET /reports/{report}"] != 3 {
		t.Fatalf("merge not applied at once: %v", got)
	}
	p.store.Close()

	p = startAnalyzerProcess(t, path)
	p.get("/reports/monthly", "/files/a.pdf")
	got := p.endpoints()
	for _, k := range []string{"GET /reports/{report}", "GET /files/a.pdf"} {
		if _, ok := got[k]; !ok {
			t.Errorf("after the restart: no %s in %v", k, got)
		}
	}
	w := p.call("GET", "/api/v1/services/shop.example/templates", "")
	var list struct {
		Items []struct{ Action, Template, Service, Source string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil {
		t.Fatalf("%v: %s", err, w.Body)
	}
	var listed []string
	for _, it := range list.Items {
		listed = append(listed, strings.Join([]string{it.Action, it.Template, it.Service, it.Source}, " "))
	}
	if want := []string{"split /users/me * config", "merge /reports/{report} shop.example api", "split /files/{name} shop.example api"}; !slices.Equal(listed, want) {
		t.Errorf("listed after the restart: %q; want %q", listed, want)
	}
	id := base64.RawURLEncoding.EncodeToString([]byte("merge /reports/{report}"))
	if w := p.call("DELETE", "/api/v1/services/shop.example/templates/"+id, ""); w.Code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", w.Code, w.Body)
	}
	p.store.Close()

	p = startAnalyzerProcess(t, path)
	defer p.store.Close()
	ds := p.eng.e.OperatorTemplates()
	if len(ds) != 1 || ds[0].Template != "/files/{name}" {
		t.Fatalf("after the second restart: %v", ds)
	}
	if rules, _ := p.eng.Templates(context.Background(), "shop.example"); len(rules) != 2 || !rules[0].Config {
		t.Fatalf("the configured decision is not listed first: %+v", rules)
	}
}
