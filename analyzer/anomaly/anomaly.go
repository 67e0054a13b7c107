// Package anomaly holds the anomaly record the detectors raise and the
// incident lifecycle around it: one open incident per type and target,
// updated while it lasts and closed when traffic is normal again.
package anomaly

import "time"

// Severity orders anomalies for routing and display.
type Severity string

const (
	Info     Severity = "info"
	Low      Severity = "low"
	Medium   Severity = "medium"
	High     Severity = "high"
	Critical Severity = "critical"
)

// State of an incident.
type State string

const (
	Open   State = "open"
	Closed State = "closed"
)

// Anomaly is one incident: a type on a target (service, endpoint, client).
type Anomaly struct {
	ID       string    `json:"id"`
	Type     string    `json:"type"` // stable machine name, e.g. rate_spike
	Severity Severity  `json:"severity"`
	OWASP    string    `json:"owasp,omitempty"` // e.g. API4:2023
	Host     string    `json:"host"`
	Method   string    `json:"method,omitempty"`
	Path     string    `json:"path,omitempty"`
	Client   string    `json:"client,omitempty"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Observed float64   `json:"observed,omitempty"`
	Expected float64   `json:"expected,omitempty"`
	Summary  string    `json:"summary"`
	// Evidence lists ids of sample transactions.
	Evidence []string `json:"evidence,omitempty"`
	State    State    `json:"state"`
	Count    int64    `json:"count"` // events folded into this incident

	// Fields below were added after the first release of the record; all
	// are optional for consumers.

	// Event says what this copy of the incident reports: opened (first
	// sight, State open), updated (new evidence, State open) or closed
	// (State closed, End is the last evidence). Consumers that keep one
	// row per incident upsert by ID; consumers that notify act on opened
	// (and closed).
	Event Event `json:"event,omitempty"`
	// Updated is the packet time this copy was produced.
	Updated time.Time `json:"updated,omitempty"`
	// Opened is the packet time the incident was first reported: Start
	// is its first evidence, which a window detector judges only when the
	// window closes, so time to detect is Opened minus the attack's start.
	Opened time.Time `json:"opened,omitempty"`
	// Details holds detector-specific facts: mode=brute_force,
	// class=card, field=/user/email, categories=sqli,xss, mirror=...
	Details map[string]string `json:"details,omitempty"`
}

// Event names the lifecycle step an Anomaly value reports.
type Event string

const (
	EventOpened  Event = "opened"
	EventUpdated Event = "updated"
	EventClosed  Event = "closed"
)

// Types: the stable machine names of the anomaly types. Storage, API, UI
// and alert receivers may rely on them.
const (
	TypeShadowEndpoint        = "shadow_endpoint"
	TypeZombieCall            = "zombie_call"
	TypeRateSpike             = "rate_spike"
	TypeRateDrop              = "rate_drop"
	TypeErrorSurge            = "error_surge"
	TypeLatencyRegression     = "latency_regression"
	TypeResponseSize          = "response_size_anomaly"
	TypeCredentialStuffing    = "credential_stuffing"
	TypeBOLAEnumeration       = "bola_enumeration"
	TypeBFLA                  = "bfla"
	TypeScraping              = "scraping"
	TypeDataExfiltration      = "data_exfiltration"
	TypeSensitiveDataExposure = "sensitive_data_exposure"
	TypeUnauthenticatedAccess = "unauthenticated_access"
	TypeInjectionAttempt      = "injection_attempt"
	TypeSchemaDrift           = "schema_drift"
	TypeJWTWeakness           = "jwt_weakness"
	TypeSensorBlind           = "sensor_blind"
)

// Rank orders severities: info 0 ... critical 4; unknown is -1.
func (s Severity) Rank() int {
	switch s {
	case Info:
		return 0
	case Low:
		return 1
	case Medium:
		return 2
	case High:
		return 3
	case Critical:
		return 4
	}
	return -1
}

// Target is what an incident is about: one open incident exists per
// type and target.
type Target struct {
	Type, Host, Method, Path, Client string
}

// ClientScoped reports whether incidents of type t are about a client on
// a service rather than an endpoint: an attacker probing fifty endpoints
// is one incident. Method and Path of such an incident are those of its
// first evidence.
func ClientScoped(t string) bool {
	switch t {
	case TypeBOLAEnumeration, TypeBFLA, TypeScraping, TypeDataExfiltration, TypeInjectionAttempt:
		return true
	case TypeCredentialStuffing:
		return true // brute force: per client; spread: Client is empty
	}
	return false
}

// TargetOf returns the target of a.
func TargetOf(a *Anomaly) Target {
	if ClientScoped(a.Type) {
		return Target{Type: a.Type, Host: a.Host, Client: a.Client}
	}
	return Target{Type: a.Type, Host: a.Host, Method: a.Method, Path: a.Path, Client: a.Client}
}
