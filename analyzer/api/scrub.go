package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"strings"
)

// The sensor redacts credentials and masks bodies before anything leaves
// it, and stores keep what they are given. The scrubber is the last line:
// every JSON document the API renders is walked and any string that still
// looks like a credential or an unmasked sensitive value is masked, so a
// misconfigured sensor (mask_bodies off) or an old row cannot leak through
// the UI. It costs a decode and an encode per response; pages are small.

var (
	reJWT        = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`)
	reAuthScheme = regexp.MustCompile(`(?i)\b(bearer|basic|digest)(\s+)([A-Za-z0-9._~+/=-]{8,})`)
	rePrivateKey = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)`)
	reKeyValue   = regexp.MustCompile(`(?i)\b(password|passwd|pwd|secret|client_secret|api[_-]?key|access_token|refresh_token|token)=([^&\s"']+)`)
	reVendorKey  = regexp.MustCompile(`\b(AKIA[0-9A-Z]{16}|(sk|rk|pk)_(live|test)_[0-9A-Za-z]{10,}|gh[pousr]_[0-9A-Za-z]{20,}|xox[abpr]-[0-9A-Za-z-]{10,}|AIza[0-9A-Za-z_-]{35})\b`)
	reCard       = regexp.MustCompile(`\b\d(?:[ -]?\d){12,18}\b`)
	reSSN        = regexp.MustCompile(`\b\d{3}-\d{2}-(\d{4})\b`)
	reEmail      = regexp.MustCompile(`\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b`)
	reIBAN       = regexp.MustCompile(`\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b`)
)

// secretKeys are object keys whose string values are always masked.
var secretKeys = map[string]bool{
	"password": true, "passwd": true, "secret": true, "client_secret": true,
	"api_key": true, "apikey": true, "access_token": true, "refresh_token": true,
	"authorization": true, "cookie": true, "set-cookie": true, "private_key": true,
	"proxy-authorization": true, "x-api-key": true, "cvv": true, "cvc": true, "pin": true,
}

// Redacted replaces a value that must not be shown at all.
const Redacted = "[redacted]"

// ScrubString masks credentials and sensitive values inside s.
func ScrubString(s string) string {
	if len(s) < 8 {
		return s
	}
	s = rePrivateKey.ReplaceAllString(s, "[private key]")
	s = reJWT.ReplaceAllString(s, "[jwt]")
	s = reAuthScheme.ReplaceAllStringFunc(s, maskCredential)
	s = reKeyValue.ReplaceAllString(s, "$1="+Redacted)
	s = reVendorKey.ReplaceAllString(s, Redacted)
	s = reCard.ReplaceAllStringFunc(s, maskCard)
	s = reSSN.ReplaceAllString(s, "***-**-$1")
	s = reEmail.ReplaceAllString(s, "$1***@$2")
	s = reIBAN.ReplaceAllStringFunc(s, maskIBAN)
	return s
}

// maskCredential masks the credential after an auth scheme name when it
// looks like one (a digit or a base64 symbol in it), so that prose such as
// "basic authentication" stays readable.
func maskCredential(m string) string {
	sub := reAuthScheme.FindStringSubmatch(m)
	if sub == nil || !strings.ContainsAny(sub[3], "0123456789+/=_-.~") || sub[3] == Redacted {
		return m
	}
	return sub[1] + sub[2] + Redacted
}

// maskCard keeps the last four digits of a Luhn-valid card number; other
// long digit runs (ids, timestamps) are left alone.
func maskCard(m string) string {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, m)
	if len(digits) < 13 || len(digits) > 19 || !luhn(digits) {
		return m
	}
	return strings.Repeat("*", len(digits)-4) + digits[len(digits)-4:]
}

func luhn(d string) bool {
	sum, double := 0, false
	for i := len(d) - 1; i >= 0; i-- {
		n := int(d[i] - '0')
		if double {
			n *= 2
			if n > 9 {
				n -= 9
			}
		}
		sum += n
		double = !double
	}
	return sum%10 == 0
}

// maskIBAN masks an IBAN whose mod-97 check holds, keeping the country
// and the last four characters.
func maskIBAN(m string) string {
	s := strings.ReplaceAll(m, " ", "")
	if len(s) < 15 || len(s) > 34 {
		return m
	}
	var num strings.Builder
	for _, r := range s[4:] + s[:4] {
		switch {
		case r >= '0' && r <= '9':
			num.WriteRune(r)
		case r >= 'A' && r <= 'Z':
			fmt.Fprintf(&num, "%d", r-'A'+10)
		default:
			return m
		}
	}
	n, ok := new(big.Int).SetString(num.String(), 10)
	if !ok || new(big.Int).Mod(n, big.NewInt(97)).Int64() != 1 {
		return m
	}
	return s[:2] + strings.Repeat("*", len(s)-6) + s[len(s)-4:]
}

// scrubValue walks a decoded JSON value and masks in place.
func scrubValue(v any) any {
	switch x := v.(type) {
	case string:
		return ScrubString(x)
	case json.Number:
		s := x.String()
		if m := maskCard(s); m != s {
			return m
		}
		return x
	case []any:
		for i := range x {
			x[i] = scrubValue(x[i])
		}
		return x
	case map[string]any:
		for k, val := range x {
			if secretKeys[strings.ToLower(k)] {
				if s, ok := val.(string); ok && s != "" {
					x[k] = Redacted
					continue
				}
				if _, ok := val.(json.Number); ok {
					x[k] = Redacted
					continue
				}
			}
			x[k] = scrubValue(val)
		}
		return x
	}
	return v
}

// marshalScrubbed renders v as JSON with every string scrubbed.
func marshalScrubbed(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	return scrubJSON(raw)
}

// scrubJSON scrubs an already encoded JSON document.
func scrubJSON(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var g any
	if err := dec.Decode(&g); err != nil {
		return nil, fmt.Errorf("scrub response: %w", err)
	}
	out, err := json.Marshal(scrubValue(g))
	if err != nil {
		return nil, fmt.Errorf("scrub response: %w", err)
	}
	return out, nil
}
