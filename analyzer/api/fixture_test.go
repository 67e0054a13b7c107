package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/internal/config"
)

// Tokens of the test configuration.
const (
	readToken  = "read-token-0123456789"
	adminToken = "admin-token-0123456789"
)

// Values that must never come out of the API unmasked.
const (
	secretCard = "4111 1111 1111 1111"
	secretJWT  = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2lnbmF0dXJl"
	secretMail = "alice.smith@example.com"
	secretPass = "hunter2hunter2"
)

var t0 = time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)

// fixture is a small inventory with one endpoint of every kind the
// filters tell apart, and secrets planted where a careless store could
// leave them.
func fixture() *Memory {
	m := NewMemory()
	ep := func(svc, method, path string, class inventory.Classification, calls int64, risk float64, unauth bool, sens ...string) inventory.Endpoint {
		auth := []string{"bearer"}
		if unauth {
			auth = []string{"none"}
		}
		return inventory.Endpoint{
			Service: svc, Method: method, Path: path, Protocol: "http/1.1", Classification: class,
			Calls: calls, FirstSeen: t0.Add(-time.Duration(calls) * time.Hour), LastSeen: t0,
			Auth: auth, Sensitive: sens, Unauthenticated: unauth, RiskScore: risk,
		}
	}
	users := ep("shop.example", "GET", "/users/{userId}", inventory.Documented, 500, 0.4, false, "email")
	users.Detail = map[string]any{
		"parameters": []any{map[string]any{"name": "userId", "in": "path", "type": "integer"}},
		"statuses":   map[string]any{"200": 480, "404": 20},
		"examples": map[string]any{
			"card":          secretCard,
			"note":          "Authorization: Bearer " + secretJWT,
			"contact":       secretMail,
			"password":      secretPass,
			"query":         "login?user=bob&password=" + secretPass,
			"cvv":           123,
			"order_id":      "1234567890123",
			"auth_overview": "basic authentication over TLS",
		},
	}
	m.SetServices([]inventory.Service{
		{Host: "shop.example", FirstSeen: t0.Add(-30 * 24 * time.Hour), LastSeen: t0, Calls: 2000, Spec: "shop.yaml", RiskScore: 0.8, Endpoints: []inventory.Endpoint{
			users,
			ep("shop.example", "POST", "/orders", inventory.Documented, 300, 0.3, false, "card"),
			ep("shop.example", "GET", "/internal/debug", inventory.Shadow, 40, 0.9, true, "secret"),
			ep("shop.example", "GET", "/v1/cart", inventory.Zombie, 25, 0.6, false),
			ep("shop.example", "DELETE", "/users/{userId}", inventory.Orphan, 0, 0.1, false),
		}},
		{Host: "pay.example:8443", FirstSeen: t0.Add(-3 * 24 * time.Hour), LastSeen: t0.Add(-time.Hour), Calls: 900, RiskScore: 0.7, Endpoints: []inventory.Endpoint{
			ep("pay.example:8443", "POST", "/charge", inventory.Shadow, 60, 0.95, true, "card", "email"),
			ep("pay.example:8443", "GET", "/health", inventory.Shadow, 30, 0.05, true),
		}},
	})
	m.SetAnomalies([]anomaly.Anomaly{
		{ID: "a1", Type: "rate_spike", Severity: anomaly.High, OWASP: "API4:2023", Host: "shop.example", Method: "GET", Path: "/users/{userId}",
			Start: t0.Add(-2 * time.Hour), End: t0.Add(-time.Hour), Observed: 120, Expected: 10, Summary: "120 calls/min, baseline 10", Evidence: []string{"tx1", "tx2", "missing"}, State: anomaly.Closed, Count: 3},
		{ID: "a2", Type: "bola_enumeration", Severity: anomaly.Critical, OWASP: "API1:2023", Host: "shop.example", Method: "GET", Path: "/users/{userId}", Client: "10.0.0.7",
			Start: t0.Add(-30 * time.Minute), End: t0, Summary: "client read 400 ids never returned to it; token " + secretJWT, State: anomaly.Open, Count: 1},
		{ID: "a3", Type: "sensitive_data_exposure", Severity: anomaly.Medium, Host: "pay.example:8443", Method: "POST", Path: "/charge",
			Start: t0.Add(-3 * time.Hour), End: t0.Add(-3 * time.Hour), Summary: "card number in response: " + secretCard, State: anomaly.Open, Count: 1},
	})
	m.AddSamples(
		Sample{ID: "tx1", Time: t0.Add(-2 * time.Hour), Client: "10.0.0.7:50000", Service: "shop.example", Method: "GET", Path: "/users/17", Status: 200, LatencyMS: 12.5, Auth: "bearer"},
		Sample{ID: "tx2", Time: t0.Add(-2 * time.Hour), Client: "10.0.0.7:50001", Service: "shop.example", Method: "GET", Path: "/users/18?email=" + secretMail, Status: 200, LatencyMS: 9},
	)
	var pts []StatPoint
	for i := range 24 {
		pts = append(pts, StatPoint{Time: t0.Add(time.Duration(i-24) * time.Hour), Calls: int64(10 + i), Errors: int64(i % 3), P50: 10, P95: 40, P99: 90})
	}
	m.SetStats("shop.example", "GET", "/users/{userId}", pts)
	m.SetSpec("shop.example", []byte(`{"openapi":"3.0.3","info":{"title":"shop.example","version":"observed"},"paths":{"/users/{userId}":{"get":{"responses":{"200":{"description":"ok","content":{"application/json":{"example":{"email":"`+secretMail+`"}}}}}}}}}`))
	m.SetDiff("shop.example", []DiffItem{
		{Kind: "shadow", Severity: "high", Method: "GET", Path: "/internal/debug", Detail: "not in shop.yaml"},
		{Kind: "drift", Severity: "medium", Method: "GET", Path: "/users/{userId}", Location: "/email", Detail: "response field not in the spec"},
	})
	return m
}

// testConfig has one read and one admin token.
func testConfig() config.UIConfig {
	c := config.Default().UI
	c.ReadTokens = []string{readToken}
	c.AdminTokens = []string{adminToken}
	return c
}

// clock is a settable wall clock for rate-limit and session tests.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestServer(t testing.TB, c config.UIConfig, m *Memory) (*Server, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2025, 3, 11, 0, 0, 0, 0, time.UTC)}
	s, err := New(Options{Config: c, Reader: m, Uploader: m, Templates: m, Reg: prometheus.NewRegistry(), Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return s, clk
}

// req is one request to the handler.
type req struct {
	method, target, token, body, contentType string
	header                                   map[string]string
	cookies                                  []*http.Cookie
	remote                                   string
}

func do(h http.Handler, r req) *httptest.ResponseRecorder {
	var body *strings.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	} else {
		body = strings.NewReader("")
	}
	hr := httptest.NewRequest(r.method, "http://127.0.0.1:8080"+r.target, body)
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.contentType != "" {
		hr.Header.Set("Content-Type", r.contentType)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	for _, c := range r.cookies {
		hr.AddCookie(c)
	}
	if r.remote != "" {
		hr.RemoteAddr = r.remote
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, hr)
	return w
}

// bigMemory has n endpoints spread over 20 services, for benchmarks and
// paging tests.
func bigMemory(n int) *Memory {
	m := NewMemory()
	svcs := make([]inventory.Service, 20)
	classes := []inventory.Classification{inventory.Documented, inventory.Documented, inventory.Shadow, inventory.Zombie, inventory.Orphan}
	for i := range svcs {
		svcs[i] = inventory.Service{Host: fmt.Sprintf("svc%02d.example", i), FirstSeen: t0.Add(-time.Hour), LastSeen: t0}
	}
	for i := range n {
		s := &svcs[i%20]
		s.Endpoints = append(s.Endpoints, inventory.Endpoint{
			Service: s.Host, Method: []string{"GET", "POST", "PUT", "DELETE"}[i%4], Path: fmt.Sprintf("/r%d/{id}", i),
			Classification: classes[i%5], Calls: int64(i * 7 % 1000), RiskScore: float64(i*13%100) / 100,
			FirstSeen: t0.Add(-time.Duration(i) * time.Minute), LastSeen: t0, Unauthenticated: i%7 == 0,
			Sensitive: [][]string{nil, {"email"}, {"card"}, nil, {"secret", "email"}}[i%5],
		})
	}
	m.SetServices(svcs)
	return m
}

func itoa(n int) string { return fmt.Sprint(n) }

func decode(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}
