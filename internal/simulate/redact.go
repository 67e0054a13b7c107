package simulate

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/apiscout/apiscout/wire"
)

// RedactKey is the sensor.redact_key under which ToTransaction writes
// credential fingerprints. A sensor run with this key over the capture
// reports the same fingerprints, so transactions from either source name
// the same identities.
const RedactKey = "apiscout-simulator-redact-key"

// fingerprint is the sensor's "fp:<hex>": the first 8 bytes of
// HMAC-SHA256(RedactKey, secret) (the format documented by sensor/redact).
func fingerprint(secret string) string {
	m := hmac.New(sha256.New, []byte(RedactKey))
	m.Write([]byte(secret))
	return "fp:" + hex.EncodeToString(m.Sum(nil)[:8])
}

// redactHeader returns the value the sensor emits for a credential header
// (with sensor.keep_jwt_claims on, its default), and false for other
// headers. It follows sensor/redact's documented forms; the simulator
// does not import the sensor.
func redactHeader(h wire.Header) (string, bool) {
	switch strings.ToLower(h.Name) {
	case "authorization", "proxy-authorization":
		scheme, cred, ok := strings.Cut(h.Value, " ")
		if !ok {
			return fingerprint(h.Value) + jwtSuffix(h.Value), true
		}
		return scheme + " " + fingerprint(cred) + jwtSuffix(cred), true
	case "x-api-key", "api-key", "x-auth-token", "x-access-token":
		return fingerprint(h.Value) + jwtSuffix(h.Value), true
	case "cookie":
		parts := strings.Split(h.Value, "; ")
		for i, p := range parts {
			name, val, ok := strings.Cut(p, "=")
			if !ok {
				parts[i] = fingerprint(p)
				continue
			}
			parts[i] = name + "=" + fingerprint(val) + jwtSuffix(val)
		}
		return strings.Join(parts, "; "), true
	case "set-cookie":
		first, attrs, _ := strings.Cut(h.Value, ";")
		name, val, _ := strings.Cut(first, "=")
		v := name + "=" + fingerprint(val)
		if attrs != "" {
			v += ";" + attrs
		}
		return v, true
	}
	return "", false
}

// jwtSuffix is " jwt:<header>.<claims>" when v is a JWT, else "".
func jwtSuffix(v string) string {
	parts := strings.Split(v, ".")
	if len(parts) != 3 || !strings.HasPrefix(parts[0], "eyJ") || !strings.HasPrefix(parts[1], "eyJ") {
		return ""
	}
	return " jwt:" + parts[0] + "." + parts[1]
}

func redactHeaders(hs []wire.Header) []wire.Header {
	out := make([]wire.Header, len(hs))
	for i, h := range hs {
		if v, ok := redactHeader(h); ok {
			h.Value = v
		}
		out[i] = h
	}
	return out
}
