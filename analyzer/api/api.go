// Package api serves the analyzer's results over HTTP: the JSON REST API
// described by its own OpenAPI document (openapi.yaml, served at
// /api/v1/openapi.json), bearer-token and session authentication with
// read-only and admin roles, and the embedded web UI.
//
// It reads through the Reader interface it declares here, implemented by
// the result stores (embedded and ClickHouse) and by Memory, so that the
// one-process `apiscout run` and the distributed analyzer serve the same
// API. Every JSON response passes through a scrubber: no credential or
// unmasked sensitive value leaves the server, whatever a store holds.
package api

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/inventory"
)

// ErrNotFound is returned by a Reader when the thing asked for does not
// exist; the API answers 404.
var ErrNotFound = errors.New("not found")

// Reader is what the API reads. Implementations must be safe for
// concurrent use; every method may be called from many requests at once.
type Reader interface {
	// Services lists the services without their endpoints (Endpoints may
	// be nil; the API does not render it).
	Services(ctx context.Context) ([]inventory.Service, error)
	// Endpoints returns one page of endpoints matching q, in q's order,
	// with the total number of matches.
	Endpoints(ctx context.Context, q EndpointQuery) (EndpointPage, error)
	// Endpoint returns one endpoint with its Detail, or ErrNotFound.
	Endpoint(ctx context.Context, service, method, path string) (inventory.Endpoint, error)
	// EndpointStats returns the endpoint's time series in [from, to),
	// oldest first.
	EndpointStats(ctx context.Context, service, method, path string, from, to time.Time) ([]StatPoint, error)
	// Anomalies returns one page of anomalies matching q, newest first.
	Anomalies(ctx context.Context, q AnomalyQuery) (AnomalyPage, error)
	// ReconstructedSpec renders the OpenAPI 3 document reconstructed from
	// traffic for one service, as JSON; ErrNotFound for an unknown service.
	ReconstructedSpec(ctx context.Context, service string) ([]byte, error)
	// SpecDiff compares a service's traffic with its spec. A service
	// without a spec yields no items and no error.
	SpecDiff(ctx context.Context, service string) ([]DiffItem, error)
}

// EvidenceReader is implemented by readers that keep sample transactions,
// so that an anomaly's evidence ids can be shown. Optional.
type EvidenceReader interface {
	// Transactions returns the samples among ids that are kept, in any
	// order; missing ids are left out, not an error.
	Transactions(ctx context.Context, ids []string) ([]Sample, error)
}

// SpecUploader accepts an OpenAPI (3) or Swagger (2) document for a
// service, from an admin. It returns an error wrapping ErrBadSpec when the
// document does not parse.
type SpecUploader interface {
	UploadSpec(ctx context.Context, service string, doc []byte) error
}

// ErrBadSpec marks an uploaded document that is not a valid spec; the API
// answers 422 with the message.
var ErrBadSpec = errors.New("invalid spec")

// EndpointQuery selects, orders and pages endpoints. Zero values mean
// "any"; several conditions are all required.
type EndpointQuery struct {
	Service string
	// Class keeps endpoints of these classifications (any of them).
	Class []inventory.Classification
	// Unauthenticated keeps endpoints with successful calls without
	// credentials.
	Unauthenticated bool
	// Sensitive keeps endpoints carrying any of these data classes.
	Sensitive []string
	// Search matches a substring of service, method or path, case folded.
	Search string
	// FirstSeenAfter keeps endpoints first seen at or after this time.
	FirstSeenAfter time.Time
	// Sort is one of SortKeys, optionally prefixed with "-" for
	// descending; empty sorts by descending risk.
	Sort   string
	Offset int
	// Limit of 0 returns no items, only the total.
	Limit int
}

// SortKeys are the accepted EndpointQuery.Sort values (without "-").
var SortKeys = []string{"risk", "calls", "first_seen", "last_seen", "service", "method", "path", "classification"}

// EndpointPage is one page of endpoints.
type EndpointPage struct {
	Total int                  `json:"total"`
	Items []inventory.Endpoint `json:"items"`
}

// AnomalyQuery selects and pages anomalies, newest start first.
type AnomalyQuery struct {
	ID       string
	From, To time.Time // on Start; zero is open
	Type     string
	Severity []anomaly.Severity
	Service  string
	// Method and Path narrow to one endpoint (with Service).
	Method, Path string
	State        anomaly.State
	Offset       int
	Limit        int
}

// AnomalyPage is one page of anomalies.
type AnomalyPage struct {
	Total int               `json:"total"`
	Items []anomaly.Anomaly `json:"items"`
}

// StatPoint is one bucket of an endpoint's time series.
type StatPoint struct {
	Time   time.Time `json:"time"`
	Calls  int64     `json:"calls"`
	Errors int64     `json:"errors"`
	// Latencies in milliseconds; 0 when unknown.
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
}

// DiffItem is one difference between traffic and a spec.
type DiffItem struct {
	// Kind: shadow (in traffic, not in spec), zombie (deprecated, still
	// called), orphan (in spec, unseen), drift (schema or status
	// mismatch).
	Kind     string `json:"kind"`
	Severity string `json:"severity"`
	Method   string `json:"method,omitempty"`
	Path     string `json:"path,omitempty"`
	// Location narrows drift: a parameter, a field pointer, a status.
	Location string `json:"location,omitempty"`
	Detail   string `json:"detail"`
}

// Sample is one kept transaction, metadata only: the API never renders
// headers or bodies of samples.
type Sample struct {
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Client    string    `json:"client"`
	Service   string    `json:"service"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Status    int       `json:"status"`
	LatencyMS float64   `json:"latency_ms"`
	Auth      string    `json:"auth,omitempty"`
	Flags     []string  `json:"flags,omitempty"`
}

// EndpointID is the opaque id of an endpoint in URLs: its key in
// unpadded base64url, so that no lookup table is needed to resolve it.
func EndpointID(service, method, path string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(service + " " + method + " " + path))
}

// ParseEndpointID reverses EndpointID.
func ParseEndpointID(id string) (service, method, path string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil {
		return "", "", "", ErrNotFound
	}
	parts := strings.SplitN(string(b), " ", 3)
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return "", "", "", ErrNotFound
	}
	return parts[0], parts[1], parts[2], nil
}
