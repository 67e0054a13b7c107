package redact

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/wire"
)

// MinKeyLen is the shortest sensor.redact_key accepted: a short key makes
// fingerprints of short secrets easy to brute-force.
const MinKeyLen = 16

// headerKind says how a header's value is rewritten.
type headerKind uint8

const (
	kindNone      headerKind = iota
	kindAuth                 // scheme kept, credentials fingerprinted
	kindCookie               // every cookie value fingerprinted
	kindSetCookie            // first value fingerprinted, attributes kept
	kindSecret               // whole value fingerprinted
	kindURL                  // a URL whose query may carry secrets
)

var builtinHeaders = []struct {
	name string
	kind headerKind
}{
	{"Authorization", kindAuth},
	{"Proxy-Authorization", kindAuth},
	{"Cookie", kindCookie},
	{"Set-Cookie", kindSetCookie},
	{"X-API-Key", kindSecret},
	{"Api-Key", kindSecret},
	{"X-Auth-Token", kindSecret},
	{"X-Access-Token", kindSecret},
	{"X-Amz-Security-Token", kindSecret},
	{"X-CSRF-Token", kindSecret},
	{"X-XSRF-Token", kindSecret},
	{"Referer", kindURL},
	{"Location", kindURL},
	{"Content-Location", kindURL},
}

var builtinQuery = []string{
	"access_token", "api_key", "apikey", "key", "token", "id_token", "refresh_token",
	"client_secret", "password", "secret", "signature", "sig",
	"x-amz-signature", "x-amz-security-token",
}

// Kinds label the redactions counter; the set is fixed.
const (
	KindAuthorization = "authorization"
	KindCookie        = "cookie"
	KindSetCookie     = "set_cookie"
	KindHeader        = "header"
	KindQuery         = "query"
	KindJWTKept       = "jwt_claims_kept"
	KindCard          = "card"
	KindSSN           = "ssn"
	KindEmail         = "email"
	KindSecretField   = "secret_field"
	KindPrivateKey    = "private_key"
)

// Redactor rewrites transactions in place. It is safe for concurrent use:
// each call takes its own HMAC state from a pool.
type Redactor struct {
	key       []byte
	ephemeral bool
	headers   []namedKind
	query     []string
	keepJWT   bool
	mask      bool
	macs      chan hash.Hash
	counts    *prometheus.CounterVec
	byKind    map[string]prometheus.Counter
}

type namedKind struct {
	name string
	kind headerKind
}

// New builds a Redactor from the sensor section. An empty redact_key
// gets a random per-process key (see Ephemeral); a key shorter than
// MinKeyLen is an error naming the key.
func New(cfg config.SensorConfig) (*Redactor, error) {
	r := &Redactor{keepJWT: cfg.KeepJWTClaims, mask: cfg.MaskBodies}
	switch {
	case cfg.RedactKey == "":
		r.key = make([]byte, 32)
		if _, err := rand.Read(r.key); err != nil {
			return nil, fmt.Errorf("sensor.redact_key: generating a per-process key: %w", err)
		}
		r.ephemeral = true
	case len(cfg.RedactKey) < MinKeyLen:
		return nil, fmt.Errorf("sensor.redact_key: %d bytes, want at least %d (set APISCOUT_SENSOR_REDACT_KEY)", len(cfg.RedactKey), MinKeyLen)
	default:
		r.key = []byte(cfg.RedactKey)
	}
	for _, h := range builtinHeaders {
		r.headers = append(r.headers, namedKind{h.name, h.kind})
	}
	for _, h := range cfg.RedactHeaders {
		h = strings.TrimSpace(h)
		if h == "" || strings.ContainsAny(h, " :\t") {
			return nil, fmt.Errorf("sensor.redact_headers: %q is not a header name", h)
		}
		if r.headerKind(h) == kindNone {
			r.headers = append(r.headers, namedKind{h, kindSecret})
		}
	}
	r.query = append(r.query, builtinQuery...)
	for _, q := range cfg.RedactQuery {
		q = strings.TrimSpace(q)
		if q == "" || strings.ContainsAny(q, "&=") {
			return nil, fmt.Errorf("sensor.redact_query: %q is not a parameter name", q)
		}
		r.query = append(r.query, q)
	}
	r.macs = make(chan hash.Hash, 64)
	r.counts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "apiscout", Subsystem: "redact", Name: "values_total",
		Help: "Values fingerprinted or masked before leaving the sensor, by kind.",
	}, []string{"kind"})
	r.byKind = map[string]prometheus.Counter{}
	for _, k := range []string{KindAuthorization, KindCookie, KindSetCookie, KindHeader, KindQuery,
		KindJWTKept, KindCard, KindSSN, KindEmail, KindSecretField, KindPrivateKey} {
		r.byKind[k] = r.counts.WithLabelValues(k)
	}
	return r, nil
}

// Ephemeral reports whether the key was generated for this process
// because sensor.redact_key was empty.
func (r *Redactor) Ephemeral() bool { return r.ephemeral }

// Register adds the redaction counters to reg.
func (r *Redactor) Register(reg prometheus.Registerer) error {
	if err := reg.Register(r.counts); err != nil {
		return fmt.Errorf("redact metrics: %w", err)
	}
	return nil
}

func (r *Redactor) count(kind string) { r.byKind[kind].Inc() }

func (r *Redactor) headerKind(name string) headerKind {
	for _, h := range r.headers {
		if equalFold(h.name, name) {
			return h.kind
		}
	}
	return kindNone
}

func (r *Redactor) secretParam(name string) bool {
	for _, q := range r.query {
		if equalFold(q, name) {
			return true
		}
	}
	return false
}

func (r *Redactor) appendFP(b []byte, secret string) []byte {
	var mac hash.Hash
	select {
	case mac = <-r.macs:
		mac.Reset()
	default:
		mac = hmac.New(sha256.New, r.key)
	}
	// Write does not keep its argument: no copy of the secret is needed.
	mac.Write(unsafe.Slice(unsafe.StringData(secret), len(secret)))
	var sum [sha256.Size]byte
	mac.Sum(sum[:0])
	select {
	case r.macs <- mac:
	default:
	}
	b = append(b, "fp:"...)
	return hex.AppendEncode(b, sum[:8])
}

// Apply redacts tx in place: header values, query parameters and, when
// mask_bodies is on, bodies. Strings are replaced, never edited, so
// values shared with other records stay intact.
func (r *Redactor) Apply(tx *wire.Transaction) {
	creds := r.redactHeaders(tx.RequestHeaders, true)
	creds = r.redactHeaders(tx.RequestTrailers, true) || creds
	r.redactHeaders(tx.ResponseHeaders, false)
	r.redactHeaders(tx.ResponseTrailers, false)
	if tx.Query != "" {
		if q, n := r.redactQuery(tx.Query); n > 0 {
			tx.Query = q
			creds = true
		}
	}
	if r.mask {
		if b, secret := r.maskBody(tx.RequestBody, tx.RequestContentType); b != nil {
			tx.RequestBody = b
			creds = creds || secret
		}
		if b, _ := r.maskBody(tx.ResponseBody, tx.ResponseContentType); b != nil {
			tx.ResponseBody = b
		}
	}
	if creds {
		tx.Flags |= wire.FlagCleartextCredentials
	}
}

// redactHeaders rewrites the values of hs; it reports whether a credential
// (not a cookie) was present.
func (r *Redactor) redactHeaders(hs []wire.Header, request bool) bool {
	creds := false
	for i := range hs {
		h := &hs[i]
		switch r.headerKind(h.Name) {
		case kindAuth:
			h.Value = r.authValue(h.Value)
			r.count(KindAuthorization)
			creds = true
		case kindCookie:
			h.Value = r.cookieValue(h.Value)
			r.count(KindCookie)
		case kindSetCookie:
			h.Value = r.setCookieValue(h.Value)
			r.count(KindSetCookie)
		case kindSecret:
			h.Value = r.secretValue(h.Value)
			r.count(KindHeader)
			creds = creds || request
		case kindURL:
			if i := strings.IndexByte(h.Value, '?'); i >= 0 {
				frag := ""
				q := h.Value[i+1:]
				if j := strings.IndexByte(q, '#'); j >= 0 {
					q, frag = q[:j], q[j:]
				}
				if nq, n := r.redactQuery(q); n > 0 {
					h.Value = h.Value[:i+1] + nq + frag
				}
			}
		}
	}
	return creds
}

// authValue keeps the scheme and fingerprints the credentials.
func (r *Redactor) authValue(v string) string {
	v = strings.TrimSpace(v)
	scheme, cred, ok := strings.Cut(v, " ")
	if !ok || !isToken(scheme) {
		return r.secretValue(v)
	}
	cred = strings.TrimSpace(cred)
	b := make([]byte, 0, len(scheme)+24)
	b = append(b, scheme...)
	b = append(b, ' ')
	b = r.appendFP(b, cred)
	b = r.appendJWT(b, cred)
	return string(b)
}

// secretValue fingerprints a whole value, keeping JWT claims if asked.
func (r *Redactor) secretValue(v string) string {
	b := r.appendFP(make([]byte, 0, 24), v)
	b = r.appendJWT(b, v)
	return string(b)
}

func (r *Redactor) appendJWT(b []byte, v string) []byte {
	if !r.keepJWT {
		return b
	}
	h, c, ok := jwtParts(v)
	if !ok {
		return b
	}
	r.count(KindJWTKept)
	b = append(b, " jwt:"...)
	b = append(b, h...)
	b = append(b, '.')
	return append(b, c...)
}

// cookieValue fingerprints each cookie of a Cookie header.
func (r *Redactor) cookieValue(v string) string {
	b := make([]byte, 0, len(v)+16)
	first := true
	for len(v) > 0 {
		var piece string
		if i := strings.IndexByte(v, ';'); i >= 0 {
			piece, v = v[:i], v[i+1:]
		} else {
			piece, v = v, ""
		}
		piece = strings.TrimSpace(piece)
		if piece == "" {
			continue
		}
		if !first {
			b = append(b, "; "...)
		}
		first = false
		name, val, ok := strings.Cut(piece, "=")
		if !ok {
			b = r.appendFP(b, piece)
			continue
		}
		b = append(b, name...)
		b = append(b, '=')
		b = r.appendFP(b, val)
		b = r.appendJWT(b, strings.Trim(val, `"`))
	}
	return string(b)
}

// setCookieValue fingerprints the cookie's value and keeps its attributes
// (Path, Secure, HttpOnly, SameSite, Expires), which are not secret and
// matter to the analyzer.
func (r *Redactor) setCookieValue(v string) string {
	pair, attrs, _ := strings.Cut(v, ";")
	name, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
	b := make([]byte, 0, len(v)+16)
	if ok {
		b = append(b, name...)
		b = append(b, '=')
		b = r.appendFP(b, val)
		b = r.appendJWT(b, strings.Trim(val, `"`))
	} else {
		b = r.appendFP(b, pair)
	}
	if attrs != "" || strings.Contains(v, ";") {
		b = append(b, ';')
		b = append(b, attrs...)
	}
	return string(b)
}

// redactQuery fingerprints the values of secret parameters in a raw
// query; it returns the query and how many values it replaced.
func (r *Redactor) redactQuery(q string) (string, int) {
	n := 0
	var b []byte
	rest := q
	done := 0 // bytes of q already copied into b
	for off := 0; len(rest) > 0; {
		piece := rest
		if i := strings.IndexAny(rest, "&;"); i >= 0 {
			piece = rest[:i]
		}
		if name, val, ok := strings.Cut(piece, "="); ok && val != "" && r.secretParam(unescape(name)) {
			if b == nil {
				b = make([]byte, 0, len(q)+16)
			}
			vstart := off + len(name) + 1
			b = append(b, q[done:vstart]...)
			b = r.appendFP(b, unescape(val))
			done = off + len(piece)
			n++
			r.count(KindQuery)
		}
		if len(piece) == len(rest) {
			break
		}
		off += len(piece) + 1
		rest = rest[len(piece)+1:]
	}
	if n == 0 {
		return q, 0
	}
	b = append(b, q[done:]...)
	return string(b), n
}

// unescape percent-decodes s (and '+' as space); invalid escapes stay.
func unescape(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if ca >= 'A' && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if cb >= 'A' && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}
