package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/apiscout/apiscout/internal/config"
)

// role is what a caller may do. Routes name the least role they need.
type role int

const (
	rolePublic role = iota // no credentials needed (/healthz, the login page)
	roleRead               // read-only token or session
	roleAdmin              // admin token or session: uploads specs
)

func (r role) String() string {
	switch r {
	case roleRead:
		return "read"
	case roleAdmin:
		return "admin"
	}
	return "public"
}

// sessionCookie holds the id of a browser session opened with a token.
const sessionCookie = "apiscout_session"

// csrfHeader must carry the session's CSRF token on every state-changing
// request authenticated by the session cookie. Bearer-token requests do
// not need it: a browser never attaches a bearer token on its own.
const csrfHeader = "X-CSRF-Token"

type session struct {
	role    role
	csrf    string
	expires time.Time
}

// guard authenticates requests and limits failures. Times come from now,
// the wall clock in production: sessions and rate limits are about the
// people using the UI, not about packet time.
type guard struct {
	open        bool // no tokens configured: loopback only, everyone admin
	read, admin [][sha256.Size]byte
	ttl         time.Duration
	limit       int // failures per client per window
	window      time.Duration
	now         func() time.Time

	mu       sync.Mutex
	sessions map[string]*session
	failures map[string]*failureWindow
}

type failureWindow struct {
	start time.Time
	count int
}

func newGuard(c config.UIConfig, now func() time.Time) *guard {
	g := &guard{
		ttl:      c.SessionTTL,
		limit:    c.AuthFailureLimit,
		window:   time.Minute,
		now:      now,
		sessions: map[string]*session{},
		failures: map[string]*failureWindow{},
	}
	for _, t := range c.ReadTokens {
		g.read = append(g.read, sha256.Sum256([]byte(t)))
	}
	for _, t := range c.AdminTokens {
		g.admin = append(g.admin, sha256.Sum256([]byte(t)))
	}
	g.open = len(g.read) == 0 && len(g.admin) == 0
	return g
}

// tokenRole compares a presented token with every configured one in
// constant time (hashes of equal length, no early exit).
func (g *guard) tokenRole(tok string) role {
	h := sha256.Sum256([]byte(tok))
	r := rolePublic
	for i := range g.admin {
		if subtle.ConstantTimeCompare(h[:], g.admin[i][:]) == 1 {
			r = roleAdmin
		}
	}
	for i := range g.read {
		if subtle.ConstantTimeCompare(h[:], g.read[i][:]) == 1 && r < roleRead {
			r = roleRead
		}
	}
	return r
}

// authResult says who the caller is and how they proved it.
type authResult struct {
	role    role
	session *session // nil for bearer or open access
	// presented is true when credentials were offered (a bad one counts
	// as a failure; none at all does not).
	presented bool
}

func (g *guard) authenticate(r *http.Request) authResult {
	if g.open {
		return authResult{role: roleAdmin}
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return authResult{presented: true}
		}
		return authResult{role: g.tokenRole(strings.TrimSpace(tok)), presented: true}
	}
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		g.mu.Lock()
		defer g.mu.Unlock()
		s, ok := g.sessions[c.Value]
		if !ok || g.now().After(s.expires) {
			delete(g.sessions, c.Value)
			return authResult{presented: true}
		}
		return authResult{role: s.role, session: s, presented: true}
	}
	return authResult{}
}

// newSession opens a browser session for a role and returns its id.
func (g *guard) newSession(r role) (string, *session) {
	id, csrf := randomToken(), randomToken()
	s := &session{role: r, csrf: csrf, expires: g.now().Add(g.ttl)}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.sessions) > 10000 {
		g.expireSessionsLocked()
	}
	g.sessions[id] = s
	return id, s
}

func (g *guard) endSession(id string) {
	g.mu.Lock()
	delete(g.sessions, id)
	g.mu.Unlock()
}

func (g *guard) expireSessionsLocked() {
	now := g.now()
	for id, s := range g.sessions {
		if now.After(s.expires) {
			delete(g.sessions, id)
		}
	}
}

// limited reports whether a client has used up its failures for the
// current window, and until when.
func (g *guard) limited(client string) (bool, time.Time) {
	if g.limit <= 0 {
		return false, time.Time{}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	f, ok := g.failures[client]
	if !ok {
		return false, time.Time{}
	}
	end := f.start.Add(g.window)
	if g.now().After(end) {
		delete(g.failures, client)
		return false, time.Time{}
	}
	return f.count >= g.limit, end
}

// fail records one authentication failure of a client.
func (g *guard) fail(client string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	f, ok := g.failures[client]
	if !ok || now.After(f.start.Add(g.window)) {
		if len(g.failures) > 100000 {
			for k, v := range g.failures {
				if now.After(v.start.Add(g.window)) {
					delete(g.failures, k)
				}
			}
		}
		f = &failureWindow{start: now}
		g.failures[client] = f
	}
	f.count++
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // the kernel's RNG never fails on Linux
	}
	return hex.EncodeToString(b)
}

// clientOf is the address failures are counted against. X-Forwarded-For
// is ignored on purpose: a client could otherwise pick its own bucket.
func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// IsLoopback reports whether a listen address binds only loopback.
// "localhost" counts; an empty host or 0.0.0.0 binds everything.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// loopbackHost reports whether a Host header names the loopback
// interface. An open (tokenless) server answers only those, so a web page
// that rebinds its own DNS name to 127.0.0.1 cannot read the inventory.
func loopbackHost(h string) bool {
	host, _, err := net.SplitHostPort(h)
	if err != nil {
		host = h
	}
	return IsLoopback(net.JoinHostPort(strings.Trim(host, "[]"), "0"))
}

// securityHeaders are set on every response. The UI loads only its own
// scripts and styles; nothing may frame it.
func securityHeaders(w http.ResponseWriter, tls bool) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	if tls {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

func subtleCompare(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
