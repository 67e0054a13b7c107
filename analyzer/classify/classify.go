// Package classify reads what a transaction says about authentication and
// sensitive data: the kind of credentials (from the sensor's redacted
// forms: "Bearer fp:… jwt:<h>.<c>", API-key fingerprints, cookies), the
// caller's identity and JWT claims, and the classes of sensitive data in
// JSON bodies (the sensor's typed masks such as [card:visa:1111:fp:…] as
// well as raw emails, phones, card numbers with a Luhn check, IBANs,
// national ids, secrets and private keys).
package classify

import (
	"encoding/base64"
	"encoding/json"
	"regexp"
	"sort"
	"strings"

	"github.com/apiscout/apiscout/wire"
)

// Auth kinds.
const (
	AuthNone   = "none"
	AuthBasic  = "basic"
	AuthBearer = "bearer"
	AuthJWT    = "jwt"
	AuthAPIKey = "apikey"
	AuthCookie = "cookie"
	AuthOther  = "other"
)

// apiKeyHeaders are the headers the sensor fingerprints as API keys.
var apiKeyHeaders = []string{"x-api-key", "api-key", "x-auth-token", "x-access-token", "apikey"}

// Auth describes a request's credentials.
type Auth struct {
	Kind string
	// Identity is the credential's fingerprint ("fp:…"), empty without one.
	Identity string
	// JWT header and claims when the sensor kept them.
	JWTHeader map[string]any
	Claims    map[string]any
	// InQuery is true when a credential travelled in the query string.
	InQuery bool
}

// Principal is the JWT subject, or "".
func (a *Auth) Principal() string {
	if s, ok := a.Claims["sub"].(string); ok {
		return s
	}
	return ""
}

// Roles gathers role, roles, scope, scp and groups claims.
func (a *Auth) Roles() []string {
	var out []string
	for _, k := range []string{"role", "roles", "scope", "scp", "groups"} {
		switch v := a.Claims[k].(type) {
		case string:
			out = append(out, strings.Fields(v)...)
		case []any:
			for _, x := range v {
				if s, ok := x.(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// ReadAuthCached is ReadAuth with decoded credentials kept in cache by
// the Authorization value's fingerprint (or the value, when unredacted): a session's token is decoded
// once, not on every call. The cache is bounded by the caller.
func ReadAuthCached(tx *wire.Transaction, cache map[string]Auth) Auth {
	for _, h := range tx.RequestHeaders {
		if len(h.Name) == 13 && strings.EqualFold(h.Name, "authorization") {
			fp := fingerprint(h.Value)
			if fp == "" {
				// An unredacted credential (a capture read without the
				// sensor's redaction): key by the value itself.
				if len(h.Value) > 2048 {
					break
				}
				fp = h.Value
			}
			if a, ok := cache[fp]; ok {
				return a
			}
			a := ReadAuth(tx)
			if len(cache) >= 100000 {
				clear(cache)
			}
			// Kept: copies, so the cache pins no transaction's bytes.
			a.Identity = strings.Clone(a.Identity)
			cache[strings.Clone(fp)] = a
			return a
		}
	}
	return ReadAuth(tx)
}

// ReadAuth classifies the request's credentials.
func ReadAuth(tx *wire.Transaction) Auth {
	var a Auth
	for _, h := range tx.RequestHeaders {
		name := strings.ToLower(h.Name)
		switch {
		case name == "authorization" || name == "proxy-authorization":
			a.readAuthorization(h.Value)
			return a
		case contains(apiKeyHeaders, name):
			a.Kind, a.Identity = AuthAPIKey, fingerprint(h.Value)
			a.readJWT(h.Value)
		case name == "cookie" && a.Kind == "":
			a.Kind, a.Identity = AuthCookie, fingerprint(h.Value)
			a.readJWT(h.Value)
		}
	}
	if a.Kind == "" && strings.Contains(tx.Query, "=fp:") {
		for _, kv := range strings.Split(tx.Query, "&") {
			k, v, _ := strings.Cut(kv, "=")
			if strings.HasPrefix(v, "fp:") && !strings.Contains(strings.ToLower(k), "sig") {
				a.Kind, a.Identity, a.InQuery = AuthAPIKey, v, true
				break
			}
		}
	}
	if a.Kind == "" {
		a.Kind = AuthNone
	}
	return a
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (a *Auth) readAuthorization(v string) {
	scheme, rest, _ := strings.Cut(v, " ")
	switch strings.ToLower(scheme) {
	case "basic":
		a.Kind = AuthBasic
	case "bearer":
		a.Kind = AuthBearer
	default:
		if strings.HasPrefix(scheme, "fp:") {
			a.Kind, rest = AuthOther, v
		} else {
			a.Kind = AuthOther
		}
	}
	a.Identity = fingerprint(rest)
	if a.readJWT(rest) {
		a.Kind = AuthJWT
	} else if a.Identity == "" && a.Kind == AuthBearer {
		// A raw (unredacted) token: parse it if it is a JWT.
		if parts := strings.Split(strings.TrimSpace(rest), "."); len(parts) == 3 {
			if a.parseJWT(parts[0], parts[1]) {
				a.Kind = AuthJWT
			}
		}
	}
}

// fingerprint returns the first "fp:<hex>" in v.
func fingerprint(v string) string {
	i := strings.Index(v, "fp:")
	if i < 0 {
		return ""
	}
	end := i + 3
	for end < len(v) && isHex(v[end]) {
		end++
	}
	return v[i:end]
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

func (a *Auth) readJWT(v string) bool {
	i := strings.Index(v, "jwt:")
	if i < 0 {
		return false
	}
	seg := v[i+4:]
	if j := strings.IndexAny(seg, " ;,"); j >= 0 {
		seg = seg[:j]
	}
	h, c, ok := strings.Cut(seg, ".")
	return ok && a.parseJWT(h, c)
}

func (a *Auth) parseJWT(h, c string) bool {
	hb, err1 := base64.RawURLEncoding.DecodeString(strings.TrimRight(h, "="))
	cb, err2 := base64.RawURLEncoding.DecodeString(strings.TrimRight(c, "="))
	if err1 != nil || err2 != nil {
		return false
	}
	if json.Unmarshal(hb, &a.JWTHeader) != nil || json.Unmarshal(cb, &a.Claims) != nil {
		a.JWTHeader, a.Claims = nil, nil
		return false
	}
	return true
}

// Sensitive data classes.
const (
	Email      = "email"
	Phone      = "phone"
	Card       = "card"
	IBAN       = "iban"
	NationalID = "national_id"
	Secret     = "secret"
	PrivateKey = "private_key"
	Token      = "token"
)

var (
	reEmail = regexp.MustCompile(`^[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}$`)
	rePhone = regexp.MustCompile(`^\+?[0-9][0-9 \-().]{7,18}[0-9]$`)
	reIBAN  = regexp.MustCompile(`^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$`)
	reSSN   = regexp.MustCompile(`^[0-9]{3}-[0-9]{2}-[0-9]{4}$`)
	reJWT   = regexp.MustCompile(`^eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*$`)
)

// masks the sensor writes, by class.
var masks = []struct{ prefix, class string }{
	{"[card:", Card}, {"[ssn:", NationalID}, {"[email:", Email}, {"[secret:", Secret}, {"[private_key:", PrivateKey},
}

// ValueClass classifies one string value ("" when it is nothing
// sensitive).
func ValueClass(v string) string {
	if len(v) < 5 || len(v) > 4096 {
		return ""
	}
	// The sensor masks what it finds anywhere in a body, inside free
	// text too ("call me at [email:…]"): a mask anywhere in the value
	// names its class.
	for i := strings.IndexByte(v, '['); i >= 0; {
		for _, m := range masks {
			if strings.HasPrefix(v[i:], m.prefix) {
				return m.class
			}
		}
		j := strings.IndexByte(v[i+1:], '[')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	switch {
	case strings.Contains(v, "PRIVATE KEY-----"):
		return PrivateKey
	case strings.IndexByte(v, '@') > 0 && reEmail.MatchString(v):
		return Email
	case reSSN.MatchString(v):
		return NationalID
	case isCard(v):
		return Card
	case len(v) >= 15 && v[0] >= 'A' && v[0] <= 'Z' && reIBAN.MatchString(v):
		return IBAN
	case (v[0] == '+' || v[0] == '(') && rePhone.MatchString(v):
		return Phone
	case strings.HasPrefix(v, "eyJ") && reJWT.MatchString(v):
		return Token
	}
	return ""
}

// isCard: 13-19 digits passing the Luhn check.
func isCard(v string) bool {
	digits := 0
	sum, double := 0, false
	for i := len(v) - 1; i >= 0; i-- {
		c := v[i]
		if c == ' ' || c == '-' {
			continue
		}
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
		digits++
	}
	return digits >= 13 && digits <= 19 && sum%10 == 0
}

// Field is a sensitive value found at a JSON path.
type Field struct {
	Path  string
	Class string
}

// Body walks a JSON document and reports the sensitive fields, the
// paths and types of every field (for schemas), and object ids found.
type Body struct {
	Sensitive []Field
	// Fields maps JSON paths (/a/b, arrays as /a/[]) to JSON types.
	Fields map[string]string
	// IDs are values of fields named id or *_id / *Id.
	IDs []string
}

// ReadJSON parses b; ok is false when it is not JSON (or JSON lines).
func ReadJSON(b []byte) (Body, bool) {
	var out Body
	if len(b) == 0 {
		return out, false
	}
	out.Fields = map[string]string{}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	found := false
	for {
		var v any
		if err := dec.Decode(&v); err != nil {
			break
		}
		found = true
		out.walk("", "", v, 0)
	}
	return out, found
}

func (b *Body) walk(path, key string, v any, depth int) {
	if depth > 32 || len(b.Fields) > 512 {
		return
	}
	switch x := v.(type) {
	case map[string]any:
		b.Fields[orRoot(path)] = "object"
		for k, val := range x {
			b.walk(path+"/"+k, k, val, depth+1)
		}
	case []any:
		b.Fields[orRoot(path)] = "array"
		for i, val := range x {
			if i >= 20 {
				break
			}
			b.walk(path+"/[]", key, val, depth+1)
		}
	case string:
		b.Fields[path] = "string"
		if c := ValueClass(x); c != "" {
			b.Sensitive = append(b.Sensitive, Field{Path: path, Class: c})
		} else if c := nameClass(key); c != "" {
			b.Sensitive = append(b.Sensitive, Field{Path: path, Class: c})
		}
		if isIDKey(key) && len(b.IDs) < 50 {
			b.IDs = append(b.IDs, x)
		}
	case json.Number:
		if _, err := x.Int64(); err == nil {
			b.Fields[path] = "integer"
		} else {
			b.Fields[path] = "number"
		}
		if isCard(x.String()) {
			b.Sensitive = append(b.Sensitive, Field{Path: path, Class: Card})
		}
		if isIDKey(key) && len(b.IDs) < 50 {
			b.IDs = append(b.IDs, x.String())
		}
	case bool:
		b.Fields[path] = "boolean"
	case nil:
		b.Fields[path] = "null"
	}
}

func orRoot(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// NameClass flags fields whose names say what they hold when the value
// itself was masked or is not recognisable.
func NameClass(key string) string { return nameClass(key) }

// IsIDKey tells whether a field name holds an object id (id, *_id, *Id).
func IsIDKey(k string) bool { return isIDKey(k) }

func nameClass(key string) string {
	var buf [64]byte
	kb := buf[:0]
	for i := 0; i < len(key) && len(kb) < len(buf); i++ {
		c := key[i]
		switch {
		case c == '_' || c == '-':
			continue
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		kb = append(kb, c)
	}
	k := string(kb)
	switch {
	case strings.Contains(k, "password") || strings.Contains(k, "passwd") || strings.Contains(k, "secret"):
		return Secret
	case k == "ssn" || strings.Contains(k, "nationalid") || strings.Contains(k, "taxid"):
		return NationalID
	case k == "iban":
		return IBAN
	case strings.HasSuffix(k, "accesstoken") || strings.HasSuffix(k, "refreshtoken") || k == "apikey":
		return Token
	}
	return ""
}

func isIDKey(k string) bool {
	return k == "id" || strings.HasSuffix(k, "_id") || (strings.HasSuffix(k, "Id") && len(k) > 2)
}

// Classes returns the distinct classes of fields, sorted.
func Classes(fs []Field) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range fs {
		if !seen[f.Class] {
			seen[f.Class] = true
			out = append(out, f.Class)
		}
	}
	sort.Strings(out)
	return out
}
