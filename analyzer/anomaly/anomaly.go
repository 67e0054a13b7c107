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
}
