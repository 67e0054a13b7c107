// Package template infers endpoint path templates from observed paths,
// per service: /users/42/orders/7 becomes /users/{userId}/orders/{orderId}.
//
// Each path segment is classified (integers, UUIDs, hex ids and hashes,
// object ids, base64 and random tokens, dates, emails, SKUs) and combined
// with structure: a position whose static values keep multiplying, each
// seen once or twice, becomes a parameter (slugs, names, free-form ids),
// while few, stable siblings stay literal (/users/me beside /users/{id},
// /v1 beside /v2). Templates from specs and operator pins are matched
// first and win. A template once published never goes back: promotion is
// one way, so the inventory does not flap. Memory is bounded per service:
// past MaxNodes new literal segments are taken as parameters.
package template

import (
	"strings"
	"unicode"
)

// Kind classifies a segment value.
type Kind uint8

const (
	Literal Kind = iota
	Int
	UUID
	Hex
	ObjectID
	Token
	Date
	Email
	SKU
)

var kindNames = [...]string{"literal", "integer", "uuid", "hex", "objectid", "token", "date", "email", "sku"}

func (k Kind) String() string { return kindNames[k] }

// Classify tells whether a segment looks like an identifier, and which.
func Classify(s string) Kind {
	n := len(s)
	if n == 0 {
		return Literal
	}
	digits, letters, hex, upper, lower, dashes, other := 0, 0, 0, 0, 0, 0, 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
			hex++
		case r >= 'a' && r <= 'f':
			letters++
			hex++
			lower++
		case r >= 'A' && r <= 'F':
			letters++
			hex++
			upper++
		case r >= 'a' && r <= 'z':
			letters++
			lower++
		case r >= 'A' && r <= 'Z':
			letters++
			upper++
		case r == '-':
			dashes++
		case r == '@' || r == '.' || r == '_' || r == '+' || r == '=' || r == '%' || r == '~':
			other++
		default:
			if !unicode.IsPrint(r) {
				other++
			}
		}
	}
	switch {
	case digits == n:
		return Int
	case strings.Contains(s, "@") && strings.Contains(s[strings.IndexByte(s, '@'):], "."):
		return Email
	case n == 36 && dashes == 4 && hex == 32 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-':
		return UUID
	case n == 24 && hex == 24:
		return ObjectID
	case n >= 16 && hex == n && digits > 0:
		return Hex
	case n == 10 && s[4] == '-' && s[7] == '-' && digits == 8:
		return Date
	case isSKU(s):
		return SKU
	case n >= 16 && digits > 0 && letters > 0 && (upper > 0 || dashes+other > 0) && dashes <= 2:
		return Token // base64 or random tokens mix cases and digits
	case n >= 12 && digits >= 3 && letters > 0 && dashes == 0:
		return Token
	}
	return Literal
}

// isSKU: letters, a dash, digits (AB-1234, SKU-00042).
func isSKU(s string) bool {
	i := strings.IndexByte(s, '-')
	if i < 1 || i > 5 || i == len(s)-1 {
		return false
	}
	for _, r := range s[:i] {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	for _, r := range s[i+1:] {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// ParamName names a parameter from the literal segment before it:
// users → userId, categories → categoryId, addresses → addressId.
func ParamName(prev string, taken map[string]bool) string {
	base := "id"
	if prev != "" && Classify(prev) == Literal && !strings.HasPrefix(prev, "{") {
		p := strings.ToLower(prev)
		p = strings.Map(func(r rune) rune {
			if r == '-' || r == '_' || r == '.' {
				return -1
			}
			return r
		}, p)
		switch {
		case strings.HasSuffix(p, "ies") && len(p) > 4:
			p = p[:len(p)-3] + "y"
		case strings.HasSuffix(p, "sses") || strings.HasSuffix(p, "shes") || strings.HasSuffix(p, "ches") || strings.HasSuffix(p, "xes"):
			p = p[:len(p)-2]
		case strings.HasSuffix(p, "s") && !strings.HasSuffix(p, "ss") && !strings.HasSuffix(p, "us") && len(p) > 3:
			p = p[:len(p)-1]
		}
		if p != "" && len(p) <= 40 {
			base = p + "Id"
		}
	}
	name := base
	for i := 2; taken[name]; i++ {
		name = base + string(rune('0'+i))
	}
	return name
}
