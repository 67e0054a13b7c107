package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/apiscout/apiscout/internal/config"
)

func init() {
	// The UI's files are text; the document says so.
	for _, ct := range []string{"text/html", "text/css", "text/javascript"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
}

func loadDoc(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	b, err := Document()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatal(err)
	}
	doc.Servers = openapi3.Servers{{URL: "http://127.0.0.1:8080"}}
	rt, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return doc, rt
}

// concrete turns a mux pattern into a request path.
func concrete(pattern string) string {
	p := strings.TrimSuffix(pattern, "{$}")
	return regexp.MustCompile(`\{[a-z]+\}`).ReplaceAllString(p, "x")
}

func TestEveryRouteIsDocumented(t *testing.T) {
	_, rt := loadDoc(t)
	s, _ := newTestServer(t, testConfig(), fixture())
	routes := s.Routes()
	if len(routes) < 15 {
		t.Fatalf("only %d routes: %v", len(routes), routes)
	}
	for _, r := range routes {
		method, pattern, _ := strings.Cut(r, " ")
		hr := httptest.NewRequest(method, "http://127.0.0.1:8080"+concrete(pattern), nil)
		if _, _, err := rt.FindRoute(hr); err != nil {
			t.Errorf("%s is not in openapi.yaml: %v", r, err)
		}
	}
}

// TestResponsesMatchDocument sends a request of every kind and validates
// status, headers and body against the document.
func TestResponsesMatchDocument(t *testing.T) {
	_, rt := loadDoc(t)
	m := fixture()
	s, _ := newTestServer(t, testConfig(), m)
	h := s.Handler()
	users := EndpointID("shop.example", "GET", "/users/{userId}")
	spec := `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{}}`
	cases := []struct {
		r    req
		want int
	}{
		{req{method: "GET", target: "/healthz"}, 200},
		{req{method: "GET", target: "/login"}, 200},
		{req{method: "GET", target: "/login?failed=1"}, 200},
		{req{method: "POST", target: "/login", body: "token=" + readToken, contentType: "application/x-www-form-urlencoded"}, 303},
		{req{method: "POST", target: "/login", body: "token=nope", contentType: "application/x-www-form-urlencoded"}, 303},
		{req{method: "GET", target: "/", token: readToken}, 200},
		{req{method: "GET", target: "/"}, 303},
		{req{method: "GET", target: "/assets/app.js", token: readToken}, 200},
		{req{method: "GET", target: "/assets/style.css"}, 200},
		{req{method: "GET", target: "/assets/nope.js", token: readToken}, 404},
		{req{method: "GET", target: "/api/v1/openapi.json", token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/session", token: readToken}, 200},
		{req{method: "POST", target: "/api/v1/session", body: `{"token":"` + adminToken + `"}`, contentType: "application/json"}, 200},
		{req{method: "POST", target: "/api/v1/session", body: `{"token":"wrong-token-0000000"}`, contentType: "application/json"}, 401},
		{req{method: "POST", target: "/api/v1/session", body: `{}`, contentType: "application/json"}, 400},
		{req{method: "DELETE", target: "/api/v1/session", token: readToken}, 204},
		{req{method: "GET", target: "/api/v1/summary", token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/summary"}, 401},
		{req{method: "GET", target: "/api/v1/services", token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/services/shop.example/openapi.json", token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/services/nope.example/openapi.json", token: readToken}, 404},
		{req{method: "GET", target: "/api/v1/services/shop.example/diff", token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/services/pay.example:8443/diff", token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/services/nope.example/diff", token: readToken}, 404},
		{req{method: "PUT", target: "/api/v1/services/shop.example/spec", token: adminToken, body: spec, contentType: "application/json"}, 200},
		{req{method: "PUT", target: "/api/v1/services/shop.example/spec", token: adminToken, body: `{"openapi":"3.0.3"}`, contentType: "application/json"}, 422},
		{req{method: "PUT", target: "/api/v1/services/shop.example/spec", token: readToken, body: spec, contentType: "application/json"}, 403},
		{req{method: "GET", target: "/api/v1/endpoints", token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/endpoints?class=shadow,zombie&sort=-calls&limit=2&offset=1", token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/endpoints?unauthenticated=true&sensitive=card&q=pay", token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/endpoints?first_seen_after=2025-03-01T00:00:00Z", token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/endpoints?sort=bogus", token: readToken}, 400},
		{req{method: "GET", target: "/api/v1/endpoints?class=ghost", token: readToken}, 400},
		{req{method: "GET", target: "/api/v1/endpoints?limit=5000", token: readToken}, 400},
		{req{method: "GET", target: "/api/v1/endpoints/" + users, token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/endpoints/bm9wZQ", token: readToken}, 404},
		{req{method: "GET", target: "/api/v1/endpoints/" + users + "/stats", token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/endpoints/" + users + "/stats?from=2025-03-10T00:00:00Z&to=2025-03-10T06:00:00Z", token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/endpoints/" + users + "/stats?from=yesterday", token: readToken}, 400},
		{req{method: "GET", target: "/api/v1/anomalies", token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/anomalies?severity=critical,high&state=open&service=shop.example", token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/anomalies?severity=awful", token: readToken}, 400},
		{req{method: "GET", target: "/api/v1/anomalies/a1", token: readToken}, 200},
		{req{method: "GET", target: "/api/v1/anomalies/zz", token: readToken}, 404},
		{req{method: "GET", target: "/api/v1/compliance", token: readToken}, 200},
	}
	for _, c := range cases {
		t.Run(c.r.method+" "+c.r.target, func(t *testing.T) {
			w := do(h, c.r)
			if w.Code != c.want {
				t.Fatalf("status %d, want %d: %s", w.Code, c.want, w.Body.String())
			}
			hr := httptest.NewRequest(c.r.method, "http://127.0.0.1:8080"+c.r.target, nil)
			route, params, err := rt.FindRoute(hr)
			if err != nil {
				t.Fatalf("not in document: %v", err)
			}
			in := &openapi3filter.RequestValidationInput{Request: hr, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
			out := &openapi3filter.ResponseValidationInput{
				RequestValidationInput: in, Status: w.Code, Header: w.Header(),
				Body:    io.NopCloser(bytes.NewReader(w.Body.Bytes())),
				Options: &openapi3filter.Options{IncludeResponseStatus: true},
			}
			if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
				t.Errorf("response does not match the document: %v\n%s", err, w.Body.String())
			}
		})
	}
}

func TestOpenServerRefusedOffLoopback(t *testing.T) {
	for _, c := range []struct {
		listen string
		tokens bool
		ok     bool
	}{
		{"127.0.0.1:8080", false, true},
		{"[::1]:8080", false, true},
		{"localhost:8080", false, true},
		{"0.0.0.0:8080", false, false},
		{":8080", false, false},
		{"10.1.2.3:8080", false, false},
		{"0.0.0.0:8080", true, true},
	} {
		cfg := config.Default().UI
		cfg.Listen = c.listen
		if c.tokens {
			cfg.ReadTokens = []string{readToken}
		}
		_, err := New(Options{Config: cfg, Reader: NewMemory()})
		if (err == nil) != c.ok {
			t.Errorf("listen %s tokens %v: err %v, want ok=%v", c.listen, c.tokens, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "ui.listen") {
			t.Errorf("error does not name the key: %v", err)
		}
	}
}

// TestEveryRouteNeedsAuth: with tokens configured, only the health check,
// the login page and its stylesheet, and the login calls answer without
// credentials.
func TestEveryRouteNeedsAuth(t *testing.T) {
	c := testConfig()
	c.AuthFailureLimit = 0 // every refusal here must be 401, not 429
	s, _ := newTestServer(t, c, fixture())
	public := []string{"GET /healthz", "GET /login", "POST /login", "GET /assets/style.css", "POST /api/v1/session"}
	for _, r := range s.Routes() {
		if slices.Contains(public, r) {
			continue
		}
		method, pattern, _ := strings.Cut(r, " ")
		w := do(s.Handler(), req{method: method, target: concrete(pattern)})
		if w.Code != http.StatusUnauthorized && w.Code != http.StatusSeeOther {
			t.Errorf("%s without credentials: %d, want 401 or 303 to /login", r, w.Code)
		}
		w = do(s.Handler(), req{method: method, target: concrete(pattern), token: "not-a-token-at-all"})
		if w.Code != http.StatusUnauthorized && w.Code != http.StatusSeeOther {
			t.Errorf("%s with a wrong token: %d", r, w.Code)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	s, _ := newTestServer(t, testConfig(), fixture())
	for _, target := range []string{"/healthz", "/api/v1/summary", "/"} {
		w := do(s.Handler(), req{method: "GET", target: target, token: readToken})
		for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} {
			if w.Header().Get(h) == "" {
				t.Errorf("%s: no %s header", target, h)
			}
		}
		if csp := w.Header().Get("Content-Security-Policy"); strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("CSP allows inline code: %s", csp)
		}
	}
}

func TestFailureRateLimit(t *testing.T) {
	c := testConfig()
	c.AuthFailureLimit = 3
	s, clk := newTestServer(t, c, fixture())
	h := s.Handler()
	from := "192.0.2.9:4000"
	for i := range 3 {
		if w := do(h, req{method: "GET", target: "/api/v1/summary", token: "wrong-token-00000000", remote: from}); w.Code != 401 {
			t.Fatalf("failure %d: %d", i, w.Code)
		}
	}
	// The address is now limited, even with a good token, and the login
	// calls are limited too.
	if w := do(h, req{method: "GET", target: "/api/v1/summary", token: readToken, remote: from}); w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("after the limit: %d %v", w.Code, w.Header())
	}
	if w := do(h, req{method: "POST", target: "/api/v1/session", body: `{"token":"` + readToken + `"}`, remote: from}); w.Code != 429 {
		t.Fatalf("login after the limit: %d", w.Code)
	}
	// Another address is not affected; missing credentials do not count.
	if w := do(h, req{method: "GET", target: "/api/v1/summary", token: readToken, remote: "192.0.2.10:4000"}); w.Code != 200 {
		t.Fatalf("other address: %d", w.Code)
	}
	clk.t = clk.t.Add(61 * time.Second)
	if w := do(h, req{method: "GET", target: "/api/v1/summary", token: readToken, remote: from}); w.Code != 200 {
		t.Fatalf("after the window: %d", w.Code)
	}
}

func TestSessionAndCSRF(t *testing.T) {
	s, clk := newTestServer(t, testConfig(), fixture())
	h := s.Handler()
	w := do(h, req{method: "POST", target: "/api/v1/session", body: `{"token":"` + adminToken + `"}`, contentType: "application/json"})
	if w.Code != 200 {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie: %+v", cookies)
	}
	var sess sessionBody
	if err := json.Unmarshal(w.Body.Bytes(), &sess); err != nil || sess.CSRFToken == "" || sess.Role != "admin" {
		t.Fatalf("session %s: %v", w.Body, err)
	}
	spec := `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{}}`
	for _, c := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"no csrf token", nil, 403},
		{"wrong csrf token", map[string]string{csrfHeader: "x" + sess.CSRFToken[1:]}, 403},
		{"cross-site", map[string]string{csrfHeader: sess.CSRFToken, "Sec-Fetch-Site": "cross-site"}, 403},
		{"foreign origin", map[string]string{csrfHeader: sess.CSRFToken, "Origin": "https://evil.example"}, 403},
		{"good", map[string]string{csrfHeader: sess.CSRFToken, "Sec-Fetch-Site": "same-origin"}, 200},
	} {
		w := do(h, req{method: "PUT", target: "/api/v1/services/shop.example/spec", body: spec, cookies: cookies, header: c.header})
		if w.Code != c.want {
			t.Errorf("%s: %d, want %d: %s", c.name, w.Code, c.want, w.Body)
		}
	}
	if w := do(h, req{method: "GET", target: "/api/v1/summary", cookies: cookies}); w.Code != 200 {
		t.Fatalf("read with session: %d", w.Code)
	}
	// The session expires.
	clk.t = clk.t.Add(testConfig().SessionTTL + time.Minute)
	if w := do(h, req{method: "GET", target: "/api/v1/summary", cookies: cookies}); w.Code != 401 {
		t.Fatalf("expired session: %d", w.Code)
	}
}

func TestLoginFormSetsSession(t *testing.T) {
	s, _ := newTestServer(t, testConfig(), fixture())
	w := do(s.Handler(), req{method: "POST", target: "/login", body: "token=" + readToken, contentType: "application/x-www-form-urlencoded"})
	if w.Code != 303 || w.Header().Get("Location") != "/" || len(w.Result().Cookies()) != 1 {
		t.Fatalf("login form: %d %v", w.Code, w.Header())
	}
	w = do(s.Handler(), req{method: "GET", target: "/", cookies: w.Result().Cookies()})
	if w.Code != 200 || !strings.Contains(w.Body.String(), "<html") {
		t.Fatalf("index with session: %d", w.Code)
	}
	w = do(s.Handler(), req{method: "POST", target: "/login", body: "token=guess", contentType: "application/x-www-form-urlencoded"})
	if w.Header().Get("Location") != "/login?failed=1" || len(w.Result().Cookies()) != 0 {
		t.Fatalf("bad login: %v", w.Header())
	}
	for target, says := range map[string]bool{"/login?failed=1": true, "/login": false} {
		w = do(s.Handler(), req{method: "GET", target: target})
		if strings.Contains(w.Body.String(), "not known") != says {
			t.Errorf("%s: failure message shown %v, want %v", target, !says, says)
		}
	}
}

// TestOpenServerRefusesForeignHosts: without tokens a DNS-rebinding page
// could reach 127.0.0.1; the Host header gives it away.
func TestOpenServerRefusesForeignHosts(t *testing.T) {
	s, _ := newTestServer(t, config.Default().UI, fixture())
	for _, c := range []struct {
		host string
		want int
	}{{"127.0.0.1:8080", 200}, {"localhost:8080", 200}, {"[::1]:8080", 200}, {"rebind.evil.example:8080", 421}} {
		hr := httptest.NewRequest("GET", "http://"+c.host+"/api/v1/summary", nil)
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, hr)
		if w.Code != c.want {
			t.Errorf("Host %s: %d, want %d", c.host, w.Code, c.want)
		}
	}
}

// TestNoSecretLeaves plants credentials and sensitive values in every
// field a store could fill and reads every route.
func TestNoSecretLeaves(t *testing.T) {
	s, _ := newTestServer(t, testConfig(), fixture())
	users := EndpointID("shop.example", "GET", "/users/{userId}")
	secrets := []string{secretCard, strings.ReplaceAll(secretCard, " ", ""), secretJWT, secretMail, secretPass, `"cvv":123`}
	for _, target := range []string{
		"/api/v1/summary", "/api/v1/endpoints?limit=100", "/api/v1/endpoints/" + users, "/api/v1/anomalies",
		"/api/v1/anomalies/a1", "/api/v1/anomalies/a2", "/api/v1/anomalies/a3", "/api/v1/compliance",
		"/api/v1/services/shop.example/openapi.json", "/api/v1/services/shop.example/diff",
	} {
		w := do(s.Handler(), req{method: "GET", target: target, token: readToken})
		if w.Code != 200 {
			t.Fatalf("%s: %d", target, w.Code)
		}
		for _, sec := range secrets {
			if strings.Contains(w.Body.String(), sec) {
				t.Errorf("%s leaks %q", target, sec)
			}
		}
	}
	// What is not secret stays readable.
	w := do(s.Handler(), req{method: "GET", target: "/api/v1/endpoints/" + users, token: readToken})
	for _, keep := range []string{"1234567890123", "basic authentication over TLS", "************1111", "a***@example.com"} {
		if !strings.Contains(w.Body.String(), keep) {
			t.Errorf("endpoint detail lost %q: %s", keep, w.Body)
		}
	}
}

func TestScrubString(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"card 4111-1111-1111-1111 ok", "card ************1111 ok"},
		{"not a card 4111111111111112", "not a card 4111111111111112"},
		{"Authorization: Bearer abc.def-123456", "Authorization: Bearer " + Redacted},
		{"Basic dXNlcjpwYXNzd29yZA==", "Basic " + Redacted},
		{"basic authentication", "basic authentication"},
		{"tok " + secretJWT + " end", "tok [jwt] end"},
		{"a=1&api_key=s3cr3t&b=2", "a=1&api_key=" + Redacted + "&b=2"},
		{"key AKIAIOSFODNN7EXAMPLE here", "key " + Redacted + " here"},
		{"ssn 078-05-1120", "ssn ***-**-1120"},
		{"mail bob@corp.example.org", "mail b***@corp.example.org"},
		{"iban GB82WEST12345698765432", "iban GB****************5432"},
		{"not iban GB00WEST12345698765432", "not iban GB00WEST12345698765432"},
		{"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----", "[private key]"},
		{"/users/{userId}", "/users/{userId}"},
		{"2025-03-10T12:00:00Z", "2025-03-10T12:00:00Z"},
	} {
		if got := ScrubString(c.in); got != c.want {
			t.Errorf("ScrubString(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestEndpointIDRoundTrip(t *testing.T) {
	for _, k := range [][3]string{{"shop.example", "GET", "/users/{userId}"}, {"pay.example:8443", "POST", "/a b/c"}, {"", "GET", "/"}} {
		s, m, p, err := ParseEndpointID(EndpointID(k[0], k[1], k[2]))
		if err != nil || s != k[0] || m != k[1] || p != k[2] {
			t.Errorf("%v: got %q %q %q %v", k, s, m, p, err)
		}
	}
	for _, bad := range []string{"!!", "Zm9v", ""} {
		if _, _, _, err := ParseEndpointID(bad); err == nil {
			t.Errorf("ParseEndpointID(%q) accepted", bad)
		}
	}
}

func TestCheckSpec(t *testing.T) {
	for _, c := range []struct {
		name, doc string
		ok        bool
	}{
		{"openapi json", `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{}}`, true},
		{"openapi yaml", "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: {}\n", true},
		{"swagger yaml", "swagger: '2.0'\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get:\n      responses:\n        200: {description: ok}\n", true},
		{"no version", `{"info":{}}`, false},
		{"no info", `{"openapi":"3.0.3","paths":{}}`, false},
		{"garbage", "::: not yaml [", false},
	} {
		err := CheckSpec([]byte(c.doc))
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}
