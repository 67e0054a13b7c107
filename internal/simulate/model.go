// Package simulate makes realistic API traffic with known answers: the
// services, their real path templates and how a published spec classifies
// them (documented, shadow, zombie, orphan), clients with credentials,
// JSON bodies carrying personal data, a daily rhythm, and labelled attack
// episodes. Output is a pure function of the Options (scenario, seed,
// days, duration, size).
//
// Two layers, so tests can skip packets:
//   - Run streams time-ordered Exchanges (request and response headers
//     and bodies, addresses, connection and position on it, latency,
//     encodings, the endpoint it is of); Generate collects them.
//     ToTransaction (and Transactions) give the wire.Transaction a sensor
//     would emit for each: credential headers as sensor/redact's
//     fingerprints under RedactKey with JWT claims kept, framing headers,
//     wire and decoded lengths, packet times, gap and capture loss; bodies
//     unmasked. A test reads the capture with the real sensor and checks
//     that it agrees field for field.
//   - PcapWriter turns exchanges into TCP conversations (handshake,
//     segments at the MSS in 1514-byte frames, ACKs, chunked and gzip
//     bodies on the wire, FIN after keep-alive idleness, holes where the
//     capture is lossy) and streams them as pcap in packet-time order.
//
// WriteFiles writes truth.json (every endpoint with its true class),
// labels.jsonl (one Label per episode, anomaly type names of the
// detectors) and specs/<host>.yaml (OpenAPI 3 without the shadow
// endpoints, zombies deprecated, orphans documented and never called).
//
// Scenarios (Scenarios):
//   - demo: four services (shop, banking, identity with an MCP server,
//     admin), 2.5 hours from Monday 09:00, about 30,000 exchanges, four
//     attacks (credential stuffing, BOLA enumeration, injection, BFLA);
//     make run.
//   - inventory: the demo's services at twice the rate plus a content API
//     (v1 beside v2, 64-hex digests, base64 links, dates and emails in
//     paths, /authors/me beside /authors/{authorName}, GraphQL, MCP
//     tools/list), two hours, for template and classification scoring.
//   - anomalies: Days (default 2) of baseline at two fifths of the demo's
//     rates (about 90,000 exchanges a day), then from 10:00 one episode
//     of each of the 17 detector types, 35 minutes apart and labelled:
//     credential_stuffing, bola_enumeration, injection_attempt, bfla,
//     shadow_endpoint, zombie_call, rate_spike, rate_drop, error_surge,
//     latency_regression, scraping, data_exfiltration,
//     sensitive_data_exposure, unauthenticated_access, schema_drift,
//     jwt_weakness, sensor_blind (capture loss on every service). Stream
//     it: it is too long to hold.
//   - bench: JSON API traffic at fifty times the demo's rate, larger list
//     responses, a third of connections short, 30% gzip and 30% chunked
//     responses, until the capture reaches SizeMB MiB (default 200).
package simulate

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Endpoint is one real operation of a simulated service.
type Endpoint struct {
	Method   string `json:"method"`
	Template string `json:"path"`
	// Class is the truth: documented, shadow, zombie or orphan.
	Class string `json:"classification"`
	// Weight is the endpoint's share of its service's calls (0: never
	// called, an orphan).
	Weight float64 `json:"-"`
	// Auth the endpoint requires: none, bearer, apikey, cookie.
	Auth string `json:"auth"`
	// Resp builds the response body; nil: a small generic object.
	Resp func(r *rand.Rand, params map[string]string) map[string]any `json:"-"`
	// Req builds the request body (POST/PUT/PATCH).
	Req func(r *rand.Rand) map[string]any `json:"-"`
	// Sensitive lists the data classes the response carries.
	Sensitive []string `json:"sensitive,omitempty"`
	// Status picks the status code; nil: 200 (201 for POST).
	Status func(r *rand.Rand) int `json:"-"`
	// LoginLike endpoints take credentials.
	LoginLike bool `json:"login_like,omitempty"`
	// Role restricts callers (admin endpoints).
	Role string `json:"role,omitempty"`
	// Operation names a GraphQL operation or MCP tool carried in the body.
	Operation string `json:"operation,omitempty"`
}

// Service is one simulated API host.
type Service struct {
	Host      string     `json:"host"`
	Addr      string     `json:"address"`
	Title     string     `json:"title"`
	BasePath  string     `json:"-"`
	Endpoints []Endpoint `json:"endpoints"`
	// RatePerMin is the mean request rate at the daily peak.
	RatePerMin float64 `json:"-"`
}

// id generators for every style real APIs use.
func intID(r *rand.Rand) string { return fmt.Sprint(1000 + r.IntN(90000)) }
func uuid(r *rand.Rand) string {
	b := make([]byte, 16)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
func objectID(r *rand.Rand) string { return hexN(r, 24) }
func sha1hex(r *rand.Rand) string  { return hexN(r, 40) }
func hexN(r *rand.Rand, n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[r.IntN(16)]
	}
	return string(b)
}
func token(r *rand.Rand) string {
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := make([]byte, 22)
	for i := range b {
		b[i] = alpha[r.IntN(len(alpha))]
	}
	return string(b)
}
func sku(r *rand.Rand) string {
	return fmt.Sprintf("%c%c-%04d", 'A'+rune(r.IntN(26)), 'A'+rune(r.IntN(26)), r.IntN(10000))
}
func date(r *rand.Rand) string {
	return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, r.IntN(600)).Format("2006-01-02")
}

var firstNames = []string{"ann", "bob", "chen", "dana", "eve", "farid", "gia", "hugo", "ines", "jon", "kofi", "lena", "mia", "noor", "omar", "pia"}
var lastNames = []string{"smith", "garcia", "kim", "mueller", "rossi", "dubois", "silva", "novak", "ito", "khan"}
var slugWords = []string{"how", "to", "reset", "your", "password", "pricing", "update", "new", "api", "release", "notes", "guide", "migrate", "security", "best", "practices", "spring", "sale"}

func email(r *rand.Rand) string {
	return firstNames[r.IntN(len(firstNames))] + "." + lastNames[r.IntN(len(lastNames))] + fmt.Sprint(r.IntN(100)) + "@example.com"
}
func phone(r *rand.Rand) string { return fmt.Sprintf("+1-202-555-%04d", r.IntN(10000)) }
func slug(r *rand.Rand) string {
	n := 2 + r.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = slugWords[r.IntN(len(slugWords))]
	}
	return strings.Join(parts, "-")
}

// cardNumbers pass the Luhn check.
var cardNumbers = []string{"4111111111111111", "5555555555554444", "4012888888881881", "378282246310005", "6011111111111117"}
var ibans = []string{"DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606", "NL91ABNA0417164300"}

// ssn is a US social security number of the valid form (area not 000, 666
// or 9xx; group and serial not zero), the national id the sensor masks.
func ssn(r *rand.Rand) string {
	area := 1 + r.IntN(665)
	return fmt.Sprintf("%03d-%02d-%04d", area, 1+r.IntN(99), 1+r.IntN(9999))
}

// valueFor returns a value for a path parameter by its name's style.
func valueFor(r *rand.Rand, style string) string {
	switch style {
	case "int":
		return intID(r)
	case "uuid":
		return uuid(r)
	case "oid":
		return objectID(r)
	case "sha1":
		return sha1hex(r)
	case "token":
		return token(r)
	case "sku":
		return sku(r)
	case "date":
		return date(r)
	case "email":
		return email(r)
	case "slug":
		return slug(r)
	case "sha256":
		return hexN(r, 64)
	case "b64":
		// 24 random bytes in URL-safe base64: download and share links.
		b := make([]byte, 24)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return base64.RawURLEncoding.EncodeToString(b)
	case "name":
		return firstNames[r.IntN(len(firstNames))] + "-" + lastNames[r.IntN(len(lastNames))]
	}
	return intID(r)
}
