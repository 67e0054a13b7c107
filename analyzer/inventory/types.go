// Package inventory holds the API inventory the analyzer builds from
// transactions: services, their endpoints (method + path template) and
// what was observed on each. It is pure logic: no I/O, no goroutines, and
// time comes from the transactions (packet time).
package inventory

import "time"

// Classification of an endpoint against the specs.
type Classification string

const (
	Documented Classification = "documented"
	Shadow     Classification = "shadow"
	Zombie     Classification = "zombie"
	Orphan     Classification = "orphan"
)

// Service is one API host (and port where it matters).
type Service struct {
	Host      string    `json:"host"`
	Addresses []string  `json:"addresses,omitempty"`
	Mirrors   []string  `json:"mirrors,omitempty"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Calls     int64     `json:"calls"`
	// Spec names the spec bound to this service, if any.
	Spec      string     `json:"spec,omitempty"`
	RiskScore float64    `json:"risk_score"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one operation of a service as observed. The exported fields
// here are the stable core that storage, the API and the UI rely on; the
// rest of what is known about an endpoint lives in Detail, which is
// rendered to JSON as a whole.
type Endpoint struct {
	Service        string         `json:"service"`
	Method         string         `json:"method"`
	Path           string         `json:"path"` // template in OpenAPI form: /users/{userId}
	Protocol       string         `json:"protocol,omitempty"`
	Classification Classification `json:"classification"`
	Calls          int64          `json:"calls"`
	FirstSeen      time.Time      `json:"first_seen"`
	LastSeen       time.Time      `json:"last_seen"`
	// Auth lists the authentication kinds seen: none, basic, bearer, jwt,
	// apikey, cookie.
	Auth []string `json:"auth"`
	// Sensitive lists data classes seen: email, phone, card, national_id,
	// iban, secret, private_key, ...
	Sensitive []string `json:"sensitive"`
	// Unauthenticated is true when successful calls without credentials
	// were seen.
	Unauthenticated bool     `json:"unauthenticated"`
	RiskScore       float64  `json:"risk_score"`
	Findings        []string `json:"findings,omitempty"`
	Detail          any      `json:"detail,omitempty"`
}

// Key identifies an endpoint within the whole inventory.
func (e *Endpoint) Key() string { return e.Service + " " + e.Method + " " + e.Path }
