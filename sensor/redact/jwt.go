package redact

import (
	"bytes"
	"encoding/base64"
	"strings"
)

const maxJWTSegment = 8 << 10

// jwtParts returns the header and claims segments of a JWT as sent, if v
// is one: three base64url segments, the first a JSON object naming "alg",
// the second a JSON object.
func jwtParts(v string) (header, claims string, ok bool) {
	h, rest, ok1 := strings.Cut(v, ".")
	c, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(sig, '.') >= 0 || h == "" || c == "" {
		return "", "", false
	}
	if len(h) > maxJWTSegment || len(c) > maxJWTSegment {
		return "", "", false
	}
	hb, err := decodeSegment(h)
	if err != nil || !isObject(hb) || !bytes.Contains(hb, []byte(`"alg"`)) {
		return "", "", false
	}
	cb, err := decodeSegment(c)
	if err != nil || !isObject(cb) {
		return "", "", false
	}
	return h, c, true
}

func decodeSegment(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func isObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}'
}
