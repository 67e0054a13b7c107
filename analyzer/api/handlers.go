package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/inventory"
)

// Paging bounds: the UI asks for 50 rows; a script may ask for up to 1000.
const (
	defaultLimit = 50
	maxLimit     = 1000
)

func (s *Server) table() []route {
	return []route{
		{method: "GET", pattern: "/healthz", need: rolePublic, h: s.healthz},
		{method: "GET", pattern: "/login", need: rolePublic, h: s.loginPage},
		{method: "POST", pattern: "/login", need: rolePublic, csrfExempt: true, h: s.loginForm},
		// The stylesheet is the one asset the login page needs.
		{method: "GET", pattern: "/assets/style.css", need: rolePublic, h: s.asset},
		{method: "GET", pattern: "/assets/{file}", need: roleRead, h: s.asset},
		{method: "GET", pattern: "/{$}", need: roleRead, h: s.index},
		{method: "GET", pattern: "/api/v1/openapi.json", need: roleRead, h: s.openapi},
		{method: "GET", pattern: "/api/v1/session", need: roleRead, h: s.getSession},
		{method: "POST", pattern: "/api/v1/session", need: rolePublic, csrfExempt: true, h: s.postSession},
		{method: "DELETE", pattern: "/api/v1/session", need: roleRead, h: s.deleteSession},
		{method: "GET", pattern: "/api/v1/summary", need: roleRead, h: s.summary},
		{method: "GET", pattern: "/api/v1/services", need: roleRead, h: s.services},
		{method: "GET", pattern: "/api/v1/services/{service}/openapi.json", need: roleRead, h: s.reconstructed},
		{method: "GET", pattern: "/api/v1/services/{service}/diff", need: roleRead, h: s.diff},
		{method: "PUT", pattern: "/api/v1/services/{service}/spec", need: roleAdmin, h: s.upload},
		{method: "GET", pattern: "/api/v1/services/{service}/templates", need: roleRead, h: s.listTemplates},
		{method: "POST", pattern: "/api/v1/services/{service}/templates", need: roleAdmin, h: s.addTemplate},
		{method: "DELETE", pattern: "/api/v1/services/{service}/templates/{id}", need: roleAdmin, h: s.removeTemplate},
		{method: "GET", pattern: "/api/v1/endpoints", need: roleRead, h: s.endpoints},
		{method: "GET", pattern: "/api/v1/endpoints/{id}", need: roleRead, h: s.endpoint},
		{method: "GET", pattern: "/api/v1/endpoints/{id}/stats", need: roleRead, h: s.stats},
		{method: "GET", pattern: "/api/v1/anomalies", need: roleRead, h: s.anomalies},
		{method: "GET", pattern: "/api/v1/anomalies/{id}", need: roleRead, h: s.anomaly},
		{method: "GET", pattern: "/api/v1/compliance", need: roleRead, h: s.compliance},
	}
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
	return nil
}

// ---- UI files ----

func (s *Server) index(w http.ResponseWriter, r *http.Request) error {
	return s.serveFile(w, r, "index.html")
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) error {
	if s.guard.open {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil
	}
	if r.URL.Query().Get("failed") == "" {
		return s.serveFile(w, r, "login.html")
	}
	// The page has no script: the failure is said by the server, in a
	// fixed sentence (nothing from the request is echoed).
	b, err := fs.ReadFile(s.ui, "login.html")
	if err != nil {
		return err
	}
	b = bytes.Replace(b, []byte("<!--failed-->"), []byte(`<p class="error">That token is not known here.</p>`), 1)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
	return nil
}

func (s *Server) asset(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("file")
	if name == "" {
		name = path.Base(r.URL.Path)
	}
	return s.serveFile(w, r, "assets/"+name)
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, name string) error {
	f, err := s.ui.Open(name)
	if err != nil {
		return ErrNotFound
	}
	_ = f.Close()
	// Assets are embedded in the binary: revalidate so that an upgrade is
	// seen at once.
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, s.ui, name)
	return nil
}

// ---- sessions ----

type sessionBody struct {
	Role      string    `json:"role"`
	Open      bool      `json:"open"`
	CSRFToken string    `json:"csrf_token,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
	Ready     bool      `json:"ready"`
}

func (s *Server) ready() bool { return s.opt.Ready == nil || s.opt.Ready() }

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) error {
	a := authOf(r)
	b := sessionBody{Role: a.role.String(), Open: s.guard.open, Ready: s.ready()}
	if a.session != nil {
		b.CSRFToken, b.Expires = a.session.csrf, a.session.expires
	}
	// Not scrubbed: the CSRF token is the caller's own and looks random.
	return writeRaw(w, http.StatusOK, b)
}

type loginBody struct {
	Token string `json:"token"`
}

func (s *Server) postSession(w http.ResponseWriter, r *http.Request) error {
	if s.guard.open {
		return writeRaw(w, http.StatusOK, sessionBody{Role: roleAdmin.String(), Open: true, Ready: s.ready()})
	}
	raw, err := readBody(r, 4<<10)
	if err != nil {
		return err
	}
	var lb loginBody
	if err := json.Unmarshal(raw, &lb); err != nil || lb.Token == "" {
		return badRequest(`body must be {"token": "..."}`)
	}
	ro := s.guard.tokenRole(lb.Token)
	if ro == rolePublic {
		s.guard.fail(clientOf(r))
		s.authFail.WithLabelValues(failInvalid).Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="apiscout"`)
		writeError(w, http.StatusUnauthorized, "unknown token")
		return nil
	}
	sess := s.openSession(w, ro)
	return writeRaw(w, http.StatusOK, sessionBody{Role: ro.String(), CSRFToken: sess.csrf, Expires: sess.expires, Ready: s.ready()})
}

func (s *Server) openSession(w http.ResponseWriter, ro role) *session {
	id, sess := s.guard.newSession(ro)
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: s.tls,
		SameSite: http.SameSiteStrictMode, MaxAge: int(s.guard.ttl.Seconds()),
	})
	return sess
}

func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request) error {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.guard.endSession(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: s.tls, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// loginForm is the login page's plain HTML form: it works without
// JavaScript and leaves no token in the browser's storage.
func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) error {
	if s.guard.open {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		return badRequest("bad form: %v", err)
	}
	ro := s.guard.tokenRole(r.PostForm.Get("token"))
	if ro == rolePublic {
		s.guard.fail(clientOf(r))
		s.authFail.WithLabelValues(failInvalid).Inc()
		http.Redirect(w, r, "/login?failed=1", http.StatusSeeOther)
		return nil
	}
	s.openSession(w, ro)
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

// writeRaw renders v without scrubbing; only for the API's own values.
func writeRaw(w http.ResponseWriter, code int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// ---- API document ----

func (s *Server) openapi(w http.ResponseWriter, _ *http.Request) error {
	b, err := Document()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
	return nil
}

// ---- summary ----

// Summary is the overview page's data.
type Summary struct {
	// DataTime is the latest packet time seen; "this week" counts back
	// from it, so a replayed capture gives the same overview.
	DataTime        time.Time         `json:"data_time,omitzero"`
	Ready           bool              `json:"ready"`
	Services        int               `json:"services"`
	Endpoints       int               `json:"endpoints"`
	Classes         map[string]int    `json:"classes"`
	Unauthenticated int               `json:"unauthenticated"`
	Sensitive       int               `json:"sensitive"`
	NewThisWeek     int               `json:"new_this_week"`
	Anomalies       AnomalyCounts     `json:"anomalies"`
	TopRisks        []endpointItem    `json:"top_risks"`
	NewEndpoints    []endpointItem    `json:"new_endpoints"`
	RecentAnomalies []anomaly.Anomaly `json:"recent_anomalies"`
}

// AnomalyCounts counts anomalies in total, open, and by severity.
type AnomalyCounts struct {
	Total      int            `json:"total"`
	Open       int            `json:"open"`
	BySeverity map[string]int `json:"by_severity"`
}

// endpointItem is an endpoint as listed: with its URL id.
type endpointItem struct {
	ID string `json:"id"`
	inventory.Endpoint
}

func items(eps []inventory.Endpoint, keepDetail bool) []endpointItem {
	out := make([]endpointItem, len(eps))
	for i, e := range eps {
		if !keepDetail {
			e.Detail = nil
		}
		out[i] = endpointItem{ID: EndpointID(e.Service, e.Method, e.Path), Endpoint: e}
	}
	return out
}

// AllSensitive lists every data class the compliance regimes know, for
// the "carries sensitive data" count.
func AllSensitive() []string {
	var out []string
	for _, rg := range Regimes {
		out = append(out, rg.Classes...)
	}
	return out
}

func (s *Server) summary(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	svcs, err := s.opt.Reader.Services(ctx)
	if err != nil {
		return fmt.Errorf("services: %w", err)
	}
	sum := Summary{Ready: s.ready(), Services: len(svcs), Classes: map[string]int{}}
	for _, sv := range svcs {
		if sv.LastSeen.After(sum.DataTime) {
			sum.DataTime = sv.LastSeen
		}
	}
	count := func(q EndpointQuery) (int, error) {
		p, err := s.opt.Reader.Endpoints(ctx, q)
		return p.Total, err
	}
	var errs []error
	add := func(dst *int, q EndpointQuery) {
		n, err := count(q)
		errs = append(errs, err)
		*dst = n
	}
	add(&sum.Endpoints, EndpointQuery{})
	for _, c := range []inventory.Classification{inventory.Documented, inventory.Shadow, inventory.Zombie, inventory.Orphan} {
		var n int
		add(&n, EndpointQuery{Class: []inventory.Classification{c}})
		sum.Classes[string(c)] = n
	}
	add(&sum.Unauthenticated, EndpointQuery{Unauthenticated: true})
	add(&sum.Sensitive, EndpointQuery{Sensitive: AllSensitive()})
	weekAgo := sum.DataTime.Add(-7 * 24 * time.Hour)
	if !sum.DataTime.IsZero() {
		p, err := s.opt.Reader.Endpoints(ctx, EndpointQuery{FirstSeenAfter: weekAgo, Sort: "-first_seen", Limit: 10})
		errs = append(errs, err)
		sum.NewThisWeek, sum.NewEndpoints = p.Total, items(p.Items, false)
	} else {
		sum.NewEndpoints = []endpointItem{}
	}
	top, err := s.opt.Reader.Endpoints(ctx, EndpointQuery{Sort: "-risk", Limit: 10})
	errs = append(errs, err)
	sum.TopRisks = items(top.Items, false)
	if sum.Anomalies, err = s.anomalyCounts(ctx, AnomalyQuery{}); err != nil {
		errs = append(errs, err)
	}
	recent, err := s.opt.Reader.Anomalies(ctx, AnomalyQuery{Limit: 8})
	errs = append(errs, err)
	sum.RecentAnomalies = nonNil(recent.Items)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	return writeJSON(w, http.StatusOK, sum)
}

func (s *Server) anomalyCounts(ctx context.Context, base AnomalyQuery) (AnomalyCounts, error) {
	c := AnomalyCounts{BySeverity: map[string]int{}}
	base.Limit = 0
	p, err := s.opt.Reader.Anomalies(ctx, base)
	if err != nil {
		return c, err
	}
	c.Total = p.Total
	q := base
	q.State = anomaly.Open
	if p, err = s.opt.Reader.Anomalies(ctx, q); err != nil {
		return c, err
	}
	c.Open = p.Total
	for _, sev := range []anomaly.Severity{anomaly.Critical, anomaly.High, anomaly.Medium, anomaly.Low, anomaly.Info} {
		q := base
		q.Severity = []anomaly.Severity{sev}
		if p, err = s.opt.Reader.Anomalies(ctx, q); err != nil {
			return c, err
		}
		c.BySeverity[string(sev)] = p.Total
	}
	return c, nil
}

func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}

// ---- services and specs ----

type servicesBody struct {
	Items []inventory.Service `json:"items"`
}

func (s *Server) services(w http.ResponseWriter, r *http.Request) error {
	svcs, err := s.opt.Reader.Services(r.Context())
	if err != nil {
		return fmt.Errorf("services: %w", err)
	}
	for i := range svcs {
		svcs[i].Endpoints = nil
	}
	return writeJSON(w, http.StatusOK, servicesBody{Items: nonNil(svcs)})
}

func (s *Server) reconstructed(w http.ResponseWriter, r *http.Request) error {
	svc := r.PathValue("service")
	doc, err := s.opt.Reader.ReconstructedSpec(r.Context(), svc)
	if err != nil {
		return err
	}
	b, err := scrubJSON(doc)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-openapi.json"`, fileSafe(svc)))
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// fileSafe keeps a service name usable as a download file name.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

type diffBody struct {
	Service string     `json:"service"`
	Spec    string     `json:"spec,omitempty"`
	Items   []DiffItem `json:"items"`
}

func (s *Server) diff(w http.ResponseWriter, r *http.Request) error {
	svc := r.PathValue("service")
	ctx := r.Context()
	svcs, err := s.opt.Reader.Services(ctx)
	if err != nil {
		return fmt.Errorf("services: %w", err)
	}
	body := diffBody{Service: svc}
	found := false
	for _, sv := range svcs {
		if sv.Host == svc {
			found, body.Spec = true, sv.Spec
		}
	}
	if !found {
		return ErrNotFound
	}
	items, err := s.opt.Reader.SpecDiff(ctx, svc)
	if err != nil {
		return fmt.Errorf("spec diff %s: %w", svc, err)
	}
	body.Items = nonNil(items)
	return writeJSON(w, http.StatusOK, body)
}

type uploadBody struct {
	Service string `json:"service"`
	Status  string `json:"status"`
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request) error {
	if s.opt.Uploader == nil {
		return &httpError{code: http.StatusNotImplemented, msg: "this server does not accept spec uploads (set analyzer.specs instead)"}
	}
	svc := r.PathValue("service")
	doc, err := readBody(r, maxSpecBytes)
	if err != nil {
		return err
	}
	if err := s.opt.Uploader.UploadSpec(r.Context(), svc, doc); err != nil {
		return err
	}
	s.opt.Log.Info("spec uploaded", zap.String("service", svc), zap.Int("bytes", len(doc)))
	return writeJSON(w, http.StatusOK, uploadBody{Service: svc, Status: "accepted"})
}

// ---- endpoints ----

func (s *Server) endpoints(w http.ResponseWriter, r *http.Request) error {
	q, err := parseEndpointQuery(r.URL.Query())
	if err != nil {
		return err
	}
	p, err := s.opt.Reader.Endpoints(r.Context(), q)
	if err != nil {
		return fmt.Errorf("endpoints: %w", err)
	}
	return writeJSON(w, http.StatusOK, endpointsBody{Total: p.Total, Offset: q.Offset, Limit: q.Limit, Items: items(p.Items, false)})
}

type endpointsBody struct {
	Total  int            `json:"total"`
	Offset int            `json:"offset"`
	Limit  int            `json:"limit"`
	Items  []endpointItem `json:"items"`
}

func parseEndpointQuery(v url.Values) (EndpointQuery, error) {
	q := EndpointQuery{
		Service:         v.Get("service"),
		Search:          strings.TrimSpace(v.Get("q")),
		Sort:            v.Get("sort"),
		Unauthenticated: v.Get("unauthenticated") == "true",
		Sensitive:       list(v, "sensitive"),
	}
	if u := v.Get("unauthenticated"); u != "" && u != "true" && u != "false" {
		return q, badRequest("unauthenticated: %q is not true or false", u)
	}
	for _, c := range list(v, "class") {
		switch inventory.Classification(c) {
		case inventory.Documented, inventory.Shadow, inventory.Zombie, inventory.Orphan:
			q.Class = append(q.Class, inventory.Classification(c))
		default:
			return q, badRequest("class: %q is not documented, shadow, zombie or orphan", c)
		}
	}
	if sk := strings.TrimPrefix(q.Sort, "-"); sk != "" && !contains(SortKeys, sk) {
		return q, badRequest("sort: %q is not one of %s (optionally prefixed with -)", sk, strings.Join(SortKeys, ", "))
	}
	var err error
	if q.FirstSeenAfter, err = timeParam(v, "first_seen_after"); err != nil {
		return q, err
	}
	q.Offset, q.Limit, err = pageParams(v)
	return q, err
}

type endpointBody struct {
	endpointItem
	Anomalies []anomaly.Anomaly `json:"anomalies"`
}

func (s *Server) endpoint(w http.ResponseWriter, r *http.Request) error {
	svc, m, p, err := ParseEndpointID(r.PathValue("id"))
	if err != nil {
		return err
	}
	e, err := s.opt.Reader.Endpoint(r.Context(), svc, m, p)
	if err != nil {
		return err
	}
	an, err := s.opt.Reader.Anomalies(r.Context(), AnomalyQuery{Service: svc, Method: m, Path: p, Limit: 20})
	if err != nil {
		return fmt.Errorf("anomalies of %s: %w", e.Key(), err)
	}
	return writeJSON(w, http.StatusOK, endpointBody{endpointItem: items([]inventory.Endpoint{e}, true)[0], Anomalies: nonNil(an.Items)})
}

type statsBody struct {
	Points []StatPoint `json:"points"`
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) error {
	svc, m, p, err := ParseEndpointID(r.PathValue("id"))
	if err != nil {
		return err
	}
	v := r.URL.Query()
	from, err := timeParam(v, "from")
	if err != nil {
		return err
	}
	to, err := timeParam(v, "to")
	if err != nil {
		return err
	}
	if _, err := s.opt.Reader.Endpoint(r.Context(), svc, m, p); err != nil {
		return err
	}
	pts, err := s.opt.Reader.EndpointStats(r.Context(), svc, m, p, from, to)
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	return writeJSON(w, http.StatusOK, statsBody{Points: nonNil(pts)})
}

// ---- anomalies ----

type anomaliesBody struct {
	Total  int               `json:"total"`
	Offset int               `json:"offset"`
	Limit  int               `json:"limit"`
	Items  []anomaly.Anomaly `json:"items"`
}

func (s *Server) anomalies(w http.ResponseWriter, r *http.Request) error {
	v := r.URL.Query()
	q := AnomalyQuery{Type: v.Get("type"), Service: v.Get("service"), Method: v.Get("method"), Path: v.Get("path")}
	for _, sev := range list(v, "severity") {
		switch anomaly.Severity(sev) {
		case anomaly.Info, anomaly.Low, anomaly.Medium, anomaly.High, anomaly.Critical:
			q.Severity = append(q.Severity, anomaly.Severity(sev))
		default:
			return badRequest("severity: %q is not info, low, medium, high or critical", sev)
		}
	}
	switch st := anomaly.State(v.Get("state")); st {
	case "", anomaly.Open, anomaly.Closed:
		q.State = st
	default:
		return badRequest("state: %q is not open or closed", st)
	}
	var err error
	if q.From, err = timeParam(v, "from"); err != nil {
		return err
	}
	if q.To, err = timeParam(v, "to"); err != nil {
		return err
	}
	if q.Offset, q.Limit, err = pageParams(v); err != nil {
		return err
	}
	p, err := s.opt.Reader.Anomalies(r.Context(), q)
	if err != nil {
		return fmt.Errorf("anomalies: %w", err)
	}
	return writeJSON(w, http.StatusOK, anomaliesBody{Total: p.Total, Offset: q.Offset, Limit: q.Limit, Items: nonNil(p.Items)})
}

type anomalyBody struct {
	Anomaly    anomaly.Anomaly `json:"anomaly"`
	EndpointID string          `json:"endpoint_id,omitempty"`
	Evidence   []Sample        `json:"evidence"`
}

func (s *Server) anomaly(w http.ResponseWriter, r *http.Request) error {
	p, err := s.opt.Reader.Anomalies(r.Context(), AnomalyQuery{ID: r.PathValue("id"), Limit: 1})
	if err != nil {
		return fmt.Errorf("anomaly: %w", err)
	}
	if len(p.Items) == 0 {
		return ErrNotFound
	}
	a := p.Items[0]
	body := anomalyBody{Anomaly: a, Evidence: []Sample{}}
	if a.Method != "" && a.Path != "" {
		body.EndpointID = EndpointID(a.Host, a.Method, a.Path)
	}
	if er, ok := s.opt.Reader.(EvidenceReader); ok && len(a.Evidence) > 0 {
		ss, err := er.Transactions(r.Context(), a.Evidence)
		if err != nil {
			return fmt.Errorf("evidence of %s: %w", a.ID, err)
		}
		body.Evidence = nonNil(ss)
	}
	return writeJSON(w, http.StatusOK, body)
}

// ---- compliance ----

// Regime groups data classes under one compliance framework.
type Regime struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Classes []string `json:"classes"`
}

// Regimes maps the detectors' data classes to what auditors ask about.
// Classes a detector never emits simply match nothing.
var Regimes = []Regime{
	{ID: "personal", Name: "Personal data (GDPR, CCPA)", Classes: []string{"email", "phone", "national_id", "ssn", "passport", "iban", "name", "address", "date_of_birth", "dob", "ip_address", "geolocation", "location"}},
	{ID: "card", Name: "Card data (PCI DSS)", Classes: []string{"card", "pan", "cvv"}},
	{ID: "credentials", Name: "Credentials", Classes: []string{"secret", "password", "private_key", "api_key", "token", "jwt", "credential"}},
}

type complianceRegime struct {
	Regime
	Endpoints       int            `json:"endpoints"`
	Unauthenticated int            `json:"unauthenticated"`
	Items           []endpointItem `json:"items"`
}

type complianceBody struct {
	Regimes []complianceRegime `json:"regimes"`
}

// compliance lists, per regime, how many endpoints carry its data and the
// unauthenticated ones first (what an auditor looks at first), then the
// riskiest others, up to limit.
func (s *Server) compliance(w http.ResponseWriter, r *http.Request) error {
	_, limit, err := pageParams(r.URL.Query())
	if err != nil {
		return err
	}
	ctx := r.Context()
	body := complianceBody{}
	for _, rg := range Regimes {
		all, err := s.opt.Reader.Endpoints(ctx, EndpointQuery{Sensitive: rg.Classes, Limit: limit})
		if err != nil {
			return fmt.Errorf("compliance %s: %w", rg.ID, err)
		}
		open, err := s.opt.Reader.Endpoints(ctx, EndpointQuery{Sensitive: rg.Classes, Unauthenticated: true, Limit: limit})
		if err != nil {
			return fmt.Errorf("compliance %s: %w", rg.ID, err)
		}
		list := open.Items
		for _, e := range all.Items {
			if len(list) >= limit {
				break
			}
			if !e.Unauthenticated {
				list = append(list, e)
			}
		}
		body.Regimes = append(body.Regimes, complianceRegime{Regime: rg, Endpoints: all.Total, Unauthenticated: open.Total, Items: items(list, false)})
	}
	return writeJSON(w, http.StatusOK, body)
}

// ---- parameters ----

func list(v url.Values, name string) []string {
	var out []string
	for _, s := range v[name] {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func timeParam(v url.Values, name string) (time.Time, error) {
	s := v.Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badRequest("%s: %q is not an RFC 3339 time (2025-01-31T12:00:00Z)", name, s)
	}
	return t, nil
}

func pageParams(v url.Values) (offset, limit int, err error) {
	limit = defaultLimit
	if s := v.Get("offset"); s != "" {
		if offset, err = strconv.Atoi(s); err != nil || offset < 0 {
			return 0, 0, badRequest("offset: %q is not a non-negative integer", s)
		}
	}
	if s := v.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 0 || limit > maxLimit {
			return 0, 0, badRequest("limit: %q is not an integer from 0 to %d", s, maxLimit)
		}
	}
	return offset, limit, nil
}
