package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/template"
	"github.com/apiscout/apiscout/analyzer/web"
	"github.com/apiscout/apiscout/internal/config"
)

// maxSpecBytes bounds an uploaded spec; the largest public specs are a
// few MiB.
const maxSpecBytes = 16 << 20

// Options builds a Server.
type Options struct {
	Config config.UIConfig
	Reader Reader
	// Uploader accepts specs from admins; nil answers 501.
	Uploader SpecUploader
	// Templates takes admins' template decisions; nil answers 501.
	Templates TemplateEditor
	Log       *zap.Logger
	Reg       prometheus.Registerer
	// Now is the wall clock for sessions and rate limits; nil: time.Now.
	Now func() time.Time
	// Ready reports whether the data is complete (e.g. a capture file has
	// been read to its end); nil: always. Shown by the UI, not by /healthz.
	Ready func() bool
}

// Server is the HTTP face of the analyzer: REST API and web UI.
type Server struct {
	opt     Options
	guard   *guard
	routes  []route
	handler http.Handler
	tls     bool
	// tlsConfig holds the certificate, loaded by New so that a bad file
	// fails at start; nil without TLS.
	tlsConfig *tls.Config
	ui        fs.FS

	requests *prometheus.CounterVec
	authFail *prometheus.CounterVec
}

// route is one entry of the router; the OpenAPI test walks this table.
type route struct {
	method, pattern string
	need            role
	// csrfExempt marks the login form, which has no session yet; it is
	// still covered by the cross-origin check.
	csrfExempt bool
	h          func(w http.ResponseWriter, r *http.Request) error
}

// Authentication failure reasons (the label set of
// apiscout_api_auth_failures_total).
const (
	failMissing   = "missing"
	failInvalid   = "invalid"
	failForbidden = "forbidden"
	failCSRF      = "csrf"
	failLimited   = "rate_limited"
	failHost      = "host"
)

// New checks the configuration and builds the server. It refuses an open
// (tokenless) server on an address other than loopback.
func New(o Options) (*Server, error) {
	if o.Reader == nil {
		return nil, errors.New("api: no Reader")
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Reg == nil {
		o.Reg = prometheus.NewRegistry()
	}
	c := o.Config
	if len(c.ReadTokens) == 0 && len(c.AdminTokens) == 0 && !IsLoopback(c.Listen) {
		return nil, fmt.Errorf("ui.listen %q is not a loopback address and neither ui.read_tokens nor ui.admin_tokens is set: refusing to serve the inventory without authentication", c.Listen)
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 12 * time.Hour
	}
	tc, err := serverTLS(c)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opt:       o,
		guard:     newGuard(c, o.Now),
		tls:       tc != nil,
		tlsConfig: tc,
		ui:        web.FS(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_api_requests_total",
			Help: "HTTP requests served by the API and UI, by route pattern and status class.",
		}, []string{"route", "code"}),
		authFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_api_auth_failures_total",
			Help: "Requests refused by authentication, by reason: missing, invalid, forbidden, csrf, rate_limited, host.",
		}, []string{"reason"}),
	}
	for _, reason := range []string{failMissing, failInvalid, failForbidden, failCSRF, failLimited, failHost} {
		s.authFail.WithLabelValues(reason)
	}
	if err := o.Reg.Register(s.requests); err != nil {
		return nil, fmt.Errorf("api metrics: %w", err)
	}
	if err := o.Reg.Register(s.authFail); err != nil {
		return nil, fmt.Errorf("api metrics: %w", err)
	}
	s.routes = s.table()
	mux := http.NewServeMux()
	for _, rt := range s.routes {
		mux.Handle(rt.method+" "+rt.pattern, s.wrap(rt))
	}
	// Cross-origin protection (Sec-Fetch-Site / Origin) refuses every
	// state-changing request a foreign page makes the browser send,
	// cookie or not; the CSRF token below is the second lock.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.authFail.WithLabelValues(failCSRF).Inc()
		writeError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	s.handler = s.outer(cop.Handler(mux))
	return s, nil
}

// Handler returns the server's whole HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Routes lists "METHOD pattern" of every route, for documentation tests.
func (s *Server) Routes() []string {
	var out []string
	for _, r := range s.routes {
		out = append(out, r.method+" "+r.pattern)
	}
	return out
}

// Listen binds the configured address, so that a port in use fails at
// start rather than later.
func (s *Server) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", s.opt.Config.Listen)
	if err != nil {
		return nil, fmt.Errorf("ui.listen %s: %w", s.opt.Config.Listen, err)
	}
	return ln, nil
}

// Serve answers on ln until ctx ends, over TLS when configured.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(s.opt.Log.Named("http")),
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	var err error
	if s.tls {
		srv.TLSConfig = s.tlsConfig
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ui server: %w", err)
	}
	return nil
}

// serverTLS loads the HTTPS settings, nil when ui.tls_cert is empty.
// TLS 1.0 and 1.1 are refused: every browser that runs the UI speaks 1.2.
func serverTLS(c config.UIConfig) (*tls.Config, error) {
	if c.TLSCert == "" && c.TLSKey == "" {
		if c.TLSClientCA != "" {
			return nil, errors.New("ui.tls_client_ca: set, but ui.tls_cert and ui.tls_key are not")
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("ui.tls_cert/ui.tls_key: %w", err)
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.TLSClientCA != "" {
		pem, err := os.ReadFile(c.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("ui.tls_client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ui.tls_client_ca: no PEM certificate in %s", c.TLSClientCA)
		}
		t.ClientCAs, t.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return t, nil
}

// outer sets the security headers and, on an open server, refuses Host
// headers that do not name loopback (DNS rebinding).
func (s *Server) outer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w, s.tls)
		if s.guard.open && !loopbackHost(r.Host) {
			s.authFail.WithLabelValues(failHost).Inc()
			writeError(w, http.StatusMisdirectedRequest, "this server answers only to localhost names (no tokens are configured)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// wrap authenticates, authorizes and checks CSRF for one route, then
// runs it and counts the outcome.
func (s *Server) wrap(rt route) http.Handler {
	name := rt.method + " " + rt.pattern
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() { s.requests.WithLabelValues(name, fmt.Sprintf("%dxx", sw.code()/100)).Inc() }()
		if rt.need > rolePublic || rt.csrfExempt {
			client := clientOf(r)
			if lim, until := s.guard.limited(client); lim {
				s.authFail.WithLabelValues(failLimited).Inc()
				sw.Header().Set("Retry-After", fmt.Sprint(int(time.Until(until).Seconds())+1))
				writeError(sw, http.StatusTooManyRequests, "too many failed authentications from this address; retry later")
				return
			}
		}
		if rt.need > rolePublic {
			a := s.guard.authenticate(r)
			if a.role == rolePublic {
				reason := failMissing
				if a.presented {
					reason = failInvalid
					s.guard.fail(clientOf(r))
				}
				s.authFail.WithLabelValues(reason).Inc()
				s.unauthorized(sw, r)
				return
			}
			if a.role < rt.need {
				s.authFail.WithLabelValues(failForbidden).Inc()
				writeError(sw, http.StatusForbidden, "this needs an admin token")
				return
			}
			if a.session != nil && !safeMethod(r.Method) && !rt.csrfExempt {
				if got := r.Header.Get(csrfHeader); got == "" || !equalConst(got, a.session.csrf) {
					s.authFail.WithLabelValues(failCSRF).Inc()
					writeError(sw, http.StatusForbidden, "missing or wrong "+csrfHeader+" header")
					return
				}
			}
			r = r.WithContext(context.WithValue(r.Context(), authKey{}, a))
		}
		if err := rt.h(sw, r); err != nil {
			s.fail(sw, r, err)
		}
	})
}

type authKey struct{}

func authOf(r *http.Request) authResult {
	a, _ := r.Context().Value(authKey{}).(authResult)
	return a
}

// unauthorized answers 401 to the API and sends browsers to the login
// page.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/api/") && r.Method == http.MethodGet {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="apiscout"`)
	writeError(w, http.StatusUnauthorized, "authentication required: send Authorization: Bearer TOKEN")
}

// httpError carries a status to fail.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	switch {
	case errors.As(err, &he):
		writeError(w, he.code, he.msg)
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case errors.Is(err, ErrBadSpec):
		writeError(w, http.StatusUnprocessableEntity, err.Error())
	case errors.Is(err, template.ErrDecision):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrTemplateConflict):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, context.Canceled):
		// The client went away; nothing to answer.
	default:
		s.opt.Log.Error("api request failed", zap.String("path", r.URL.Path), zap.Error(err))
		writeError(w, http.StatusInternalServerError, "internal error (see the server log)")
	}
}

// writeJSON renders v scrubbed of secrets.
func writeJSON(w http.ResponseWriter, code int, v any) error {
	b, err := marshalScrubbed(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(errorBody{Error: msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func equalConst(a, b string) bool {
	return len(a) == len(b) && subtleCompare(a, b)
}

// statusWriter remembers the status for the request counter.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// readBody reads at most limit bytes of a request body.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, badRequest("reading body: %v", err)
	}
	if int64(len(b)) > limit {
		return nil, &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("body larger than %d bytes", limit)}
	}
	return b, nil
}
