package web_test

import (
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/api"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/analyzer/web/webtest"
	"github.com/apiscout/apiscout/internal/config"
)

// ArtifactDir is where screenshots go (ignored by git), relative to this
// package.
var artifactDir = filepath.Join("..", "..", ".artifacts", "browser")

// TestBrowserWalkthrough runs the browser walkthrough on an in-memory
// inventory; screenshots go to .artifacts/browser.
func TestBrowserWalkthrough(t *testing.T) {
	m := demoInventory()
	s, err := api.New(api.Options{Config: config.Default().UI, Reader: m, Uploader: m, Templates: m})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	webtest.Walkthrough(t, srv.URL, artifactDir)
}

// demoInventory is a few realistic services with shadow and zombie
// endpoints, sensitive data and a couple of attacks, held in memory.
func demoInventory() *api.Memory {
	m := api.NewMemory()
	end := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	type ep struct {
		method, path string
		class        inventory.Classification
		unauth       bool
		sens         []string
	}
	svcs := map[string][]ep{
		"shop.example.com": {
			{"GET", "/api/v2/products", inventory.Documented, true, nil},
			{"GET", "/api/v2/products/{productId}", inventory.Documented, true, nil},
			{"GET", "/api/v2/users/{userId}", inventory.Documented, false, []string{"email", "phone"}},
			{"POST", "/api/v2/orders", inventory.Documented, false, []string{"card", "email"}},
			{"GET", "/api/v1/cart", inventory.Zombie, false, nil},
			{"GET", "/internal/debug/vars", inventory.Shadow, true, []string{"secret"}},
			{"GET", "/api/v2/users/{userId}/export", inventory.Shadow, false, []string{"email", "national_id"}},
			{"DELETE", "/api/v2/users/{userId}", inventory.Orphan, false, nil},
		},
		"payments.internal:8443": {
			{"POST", "/v1/charges", inventory.Documented, false, []string{"card"}},
			{"GET", "/v1/charges/{chargeId}", inventory.Documented, false, []string{"card"}},
			{"POST", "/v1/refunds", inventory.Shadow, true, []string{"card"}},
			{"GET", "/v0/charges", inventory.Zombie, false, []string{"card"}},
		},
		"auth.example.com": {
			{"POST", "/oauth/token", inventory.Documented, true, []string{"secret"}},
			{"POST", "/login", inventory.Documented, true, []string{"password", "email"}},
			{"GET", "/.well-known/jwks.json", inventory.Documented, true, nil},
		},
	}
	var services []inventory.Service
	i := 0
	for host, eps := range svcs {
		s := inventory.Service{Host: host, FirstSeen: end.Add(-14 * 24 * time.Hour), LastSeen: end, Spec: "specs/" + strings.Split(host, ".")[0] + ".yaml"}
		for _, e := range eps {
			i++
			risk := 0.1 + float64(i%5)/10
			if e.class == inventory.Shadow {
				risk += 0.4
			}
			if e.unauth && len(e.sens) > 0 {
				risk += 0.2
			}
			auth := []string{"jwt"}
			if e.unauth {
				auth = []string{"none"}
			}
			calls := int64(100 + i*37)
			s.Calls += calls
			s.Endpoints = append(s.Endpoints, inventory.Endpoint{
				Service: host, Method: e.method, Path: e.path, Protocol: "http/1.1", Classification: e.class,
				Calls: calls, FirstSeen: end.Add(-time.Duration(i*20) * time.Hour), LastSeen: end,
				Auth: auth, Sensitive: e.sens, Unauthenticated: e.unauth, RiskScore: min(risk, 1),
				Detail: map[string]any{
					"parameters":      []map[string]any{{"name": "limit", "in": "query", "type": "integer", "required": false}},
					"status_codes":    map[string]int{"200": int(calls) - 7, "404": 5, "500": 2},
					"response_schema": map[string]any{"type": "object", "properties": map[string]any{"id": map[string]string{"type": "string"}}},
				},
			})
			var pts []api.StatPoint
			for k := range 60 {
				c := int64(20 + (k*7+i)%15)
				if k > 50 && e.class == inventory.Shadow {
					c *= 6
				}
				pts = append(pts, api.StatPoint{Time: end.Add(time.Duration(k-60) * time.Minute), Calls: c, Errors: int64(k % 4 / 3), P50: 12, P95: 40 + float64(k%9), P99: 90 + float64(k%13)})
			}
			m.SetStats(host, e.method, e.path, pts)
		}
		services = append(services, s)
		m.SetSpec(host, []byte(fmt.Sprintf(`{"openapi":"3.0.3","info":{"title":%q,"version":"observed"},"paths":{}}`, host)))
		m.SetDiff(host, []api.DiffItem{{Kind: "shadow", Severity: "high", Method: "GET", Path: "/internal/debug/vars", Detail: "called but not in the spec"}})
	}
	m.SetServices(services)
	var as []anomaly.Anomaly
	add := func(id, typ string, sev anomaly.Severity, host, method, path, summary string, ago time.Duration, st anomaly.State) {
		as = append(as, anomaly.Anomaly{ID: id, Type: typ, Severity: sev, Host: host, Method: method, Path: path, Client: "203.0.113.7",
			Start: end.Add(-ago), End: end.Add(-ago + 5*time.Minute), Observed: 140, Expected: 22, Summary: summary,
			Evidence: []string{id + "-tx1", id + "-tx2"}, State: st, Count: 3})
		m.AddSamples(api.Sample{ID: id + "-tx1", Time: end.Add(-ago), Client: "203.0.113.7:41000", Service: host, Method: method, Path: path, Status: 200, LatencyMS: 14, Auth: "none"},
			api.Sample{ID: id + "-tx2", Time: end.Add(-ago + time.Second), Client: "203.0.113.7:41001", Service: host, Method: method, Path: path, Status: 200, LatencyMS: 11, Auth: "none"})
	}
	add("an-1", "rate_spike", anomaly.High, "shop.example.com", "GET", "/internal/debug/vars", "140 calls/min against a baseline of 22", 40*time.Minute, anomaly.Open)
	add("an-2", "bola_enumeration", anomaly.Critical, "shop.example.com", "GET", "/api/v2/users/{userId}/export", "one client read 412 user ids never returned to it", 3*time.Hour, anomaly.Open)
	add("an-3", "credential_stuffing", anomaly.High, "auth.example.com", "POST", "/login", "1,900 failed logins from 40 addresses", 26*time.Hour, anomaly.Closed)
	add("an-4", "sensitive_data_exposure", anomaly.Medium, "payments.internal:8443", "POST", "/v1/refunds", "card numbers in responses without authentication", 50*time.Hour, anomaly.Open)
	add("an-5", "error_burst", anomaly.Low, "payments.internal:8443", "GET", "/v0/charges", "5xx rate 12% against 0.3%", 80*time.Hour, anomaly.Closed)
	m.SetAnomalies(as)
	return m
}
