package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiscout/apiscout/analyzer/template"
)

const templatesPath = "/api/v1/services/shop.example/templates"

func decisionID(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// documented checks a response against openapi.yaml.
func documented(t *testing.T, rt routers.Router, r req, w *httptest.ResponseRecorder) {
	t.Helper()
	hr := httptest.NewRequest(r.method, "http://127.0.0.1:8080"+r.target, strings.NewReader(r.body))
	if r.contentType != "" {
		hr.Header.Set("Content-Type", r.contentType)
	}
	route, params, err := rt.FindRoute(hr)
	if err != nil {
		t.Fatalf("%s %s not in the document: %v", r.method, r.target, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: hr, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: w.Code, Header: w.Header(),
		Body:    io.NopCloser(bytes.NewReader(w.Body.Bytes())),
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s: response does not match the document: %v\n%s", r.method, r.target, err, w.Body)
	}
}

// TestTemplateDecisionsAPI walks the routes in order: each step's status
// and message, and every response against the document.
func TestTemplateDecisionsAPI(t *testing.T) {
	_, rt := loadDoc(t)
	m := fixture()
	m.SetConfigTemplates([]template.Decision{{Action: template.Split, Template: "/users/me"}})
	s, _ := newTestServer(t, testConfig(), m)
	h := s.Handler()
	post := func(target, body string) req {
		return req{method: "POST", target: target, token: adminToken, body: body, contentType: "application/json"}
	}
	for _, c := range []struct {
		r    req
		want int
		says string // in the body
	}{
		{req{method: "GET", target: templatesPath, token: readToken}, 200, `"source":"config"`},
		{post(templatesPath, `{"action":"merge","template":"/reports/{report}"}`), 201, `"service":"shop.example"`},
		{post(templatesPath, `{"action":"merge","template":"/reports/{report}"}`), 200, `"action":"merge"`},
		{post("/api/v1/services/*/templates", `{"action":"pin","template":"/health"}`), 201, `"service":"*"`},
		{post(templatesPath, `{"action":"split","template":"/reports/{r}"}`), 409, "contradicts merge /reports/{report}"},
		{post(templatesPath, `{"action":"merge","template":"/reports/daily"}`), 400, "must end in the parameter"},
		{post(templatesPath, `{"action":"fold","template":"/reports/{r}"}`), 400, `action \"fold\"`},
		{post(templatesPath, `{"action":"pin","template":"reports"}`), 400, "does not start with /"},
		{post(templatesPath, `{"action":"pin","template":"/a//b"}`), 400, "empty segment"},
		{post(templatesPath, `{"action":"pin","template":"/a/{b}/{b}"}`), 400, "appears twice"},
		{post(templatesPath, `{"action":"pin","template":"/a","service":"x"}`), 400, "unknown field"},
		{post(templatesPath, `{"action":"pin","template":"/a"} {}`), 400, "one JSON object"},
		{post(templatesPath, `not json`), 400, "want {"},
		{post(templatesPath, `{"action":"pin","template":"/`+strings.Repeat("a", 5000)+`"}`), 413, "larger than"},
		{post("/api/v1/services/a%20b/templates", `{"action":"pin","template":"/a"}`), 400, "name a host"},
		{req{method: "POST", target: templatesPath, token: readToken, body: `{"action":"pin","template":"/a"}`, contentType: "application/json"}, 403, "admin"},
		{req{method: "GET", target: templatesPath, token: readToken}, 200, `"template":"/health"`},
		{req{method: "GET", target: "/api/v1/services/*/templates", token: readToken}, 200, `"template":"/health"`},
		{req{method: "DELETE", target: templatesPath + "/" + decisionID("merge /reports/{report}"), token: readToken}, 403, "admin"},
		{req{method: "DELETE", target: templatesPath + "/" + decisionID("merge /reports/{report}"), token: adminToken}, 204, ""},
		{req{method: "DELETE", target: templatesPath + "/" + decisionID("merge /reports/{report}"), token: adminToken}, 404, "not found"},
		{req{method: "DELETE", target: templatesPath + "/" + decisionID("split /users/me"), token: adminToken}, 404, "not found"}, // it is for every service
		{req{method: "DELETE", target: "/api/v1/services/*/templates/" + decisionID("split /users/me"), token: adminToken}, 409, "change it there"},
		{req{method: "DELETE", target: templatesPath + "/bm9wZQ", token: adminToken}, 404, "not found"},
	} {
		w := do(h, c.r)
		if w.Code != c.want || !strings.Contains(w.Body.String(), c.says) {
			t.Errorf("%s %.80s %.80s: %d %s; want %d saying %q", c.r.method, c.r.target, c.r.body, w.Code, w.Body, c.want, c.says)
		}
		if w.Code != http.StatusRequestEntityTooLarge {
			documented(t, rt, c.r, w)
		}
	}
	var list templateList
	decode(t, do(h, req{method: "GET", target: templatesPath, token: readToken}).Body.Bytes(), &list)
	if len(list.Items) != 2 || list.Items[0].Template != "/users/me" || list.Items[1].Template != "/health" {
		t.Fatalf("left in force: %+v", list.Items)
	}
	for _, it := range list.Items {
		if w := do(h, req{method: "DELETE", target: "/api/v1/services/*/templates/" + it.ID, token: adminToken}); w.Code != 204 && it.Source == "api" {
			t.Errorf("DELETE by the listed id of %s: %d %s", it.Template, w.Code, w.Body)
		}
	}
}

func TestTemplateDecisionsNeedAnEditor(t *testing.T) {
	s, err := New(Options{Config: testConfig(), Reader: fixture(), Reg: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []req{
		{method: "GET", target: templatesPath, token: readToken},
		{method: "POST", target: templatesPath, token: adminToken, body: `{"action":"pin","template":"/a"}`},
		{method: "DELETE", target: templatesPath + "/" + decisionID("pin /a"), token: adminToken},
	} {
		if w := do(s.Handler(), r); w.Code != http.StatusNotImplemented {
			t.Errorf("%s without an editor: %d %s", r.method, w.Code, w.Body)
		}
	}
}

// TestTemplateDecisionsCSRF: with a session cookie, a decision needs the
// session's CSRF token and a same-origin request, like the spec upload.
func TestTemplateDecisionsCSRF(t *testing.T) {
	s, _ := newTestServer(t, testConfig(), fixture())
	h := s.Handler()
	w := do(h, req{method: "POST", target: "/api/v1/session", body: `{"token":"` + adminToken + `"}`, contentType: "application/json"})
	if w.Code != 200 {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	cookies := w.Result().Cookies()
	var sess sessionBody
	if err := json.Unmarshal(w.Body.Bytes(), &sess); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		method string
		target string
		header map[string]string
		want   int
	}{
		{"post, no csrf token", "POST", templatesPath, nil, 403},
		{"post, wrong csrf token", "POST", templatesPath, map[string]string{csrfHeader: "x" + sess.CSRFToken[1:]}, 403},
		{"post, cross-site", "POST", templatesPath, map[string]string{csrfHeader: sess.CSRFToken, "Sec-Fetch-Site": "cross-site"}, 403},
		{"post, good", "POST", templatesPath, map[string]string{csrfHeader: sess.CSRFToken, "Sec-Fetch-Site": "same-origin"}, 201},
		{"delete, no csrf token", "DELETE", templatesPath + "/" + decisionID("split /users/me"), nil, 403},
		{"delete, foreign origin", "DELETE", templatesPath + "/" + decisionID("split /users/me"), map[string]string{csrfHeader: sess.CSRFToken, "Origin": "https://evil.example"}, 403},
		{"delete, good", "DELETE", templatesPath + "/" + decisionID("split /users/me"), map[string]string{csrfHeader: sess.CSRFToken}, 204},
	} {
		w := do(h, req{method: c.method, target: c.target, body: `{"action":"split","template":"/users/me"}`, contentType: "application/json", cookies: cookies, header: c.header})
		if w.Code != c.want {
			t.Errorf("%s: %d, want %d: %s", c.name, w.Code, c.want, w.Body)
		}
	}
}
