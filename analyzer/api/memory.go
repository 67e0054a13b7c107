package api

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/inventory"
)

// Memory is a Reader (and SpecUploader, TemplateEditor and
// EvidenceReader) over values held in memory: what an analyzer's Engine
// knows right now, or fixtures in tests. Filtering, sorting and paging
// are done on every call, which costs about a millisecond per 10,000
// endpoints.
type Memory struct {
	mu        sync.RWMutex
	services  []inventory.Service
	endpoints []inventory.Endpoint
	anomalies []anomaly.Anomaly // newest start first
	stats     map[string][]StatPoint
	specs     map[string][]byte // reconstructed, by service
	uploaded  map[string][]byte // uploaded by admins, by service
	diffs     map[string][]DiffItem
	samples   map[string]Sample
	templates []TemplateRule
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{
		stats:    map[string][]StatPoint{},
		specs:    map[string][]byte{},
		uploaded: map[string][]byte{},
		diffs:    map[string][]DiffItem{},
		samples:  map[string]Sample{},
	}
}

// SetServices replaces the inventory. Endpoints are taken from each
// service's Endpoints; the service's Host is written into each endpoint's
// Service when empty.
func (m *Memory) SetServices(svcs []inventory.Service) {
	var eps []inventory.Endpoint
	out := make([]inventory.Service, len(svcs))
	for i, s := range svcs {
		for _, e := range s.Endpoints {
			if e.Service == "" {
				e.Service = s.Host
			}
			eps = append(eps, e)
		}
		s.Endpoints = nil
		out[i] = s
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	m.mu.Lock()
	m.services, m.endpoints = out, eps
	m.mu.Unlock()
}

// SetAnomalies replaces the anomalies.
func (m *Memory) SetAnomalies(as []anomaly.Anomaly) {
	as = slices.Clone(as)
	sort.SliceStable(as, func(i, j int) bool { return as[i].Start.After(as[j].Start) })
	m.mu.Lock()
	m.anomalies = as
	m.mu.Unlock()
}

// SetStats sets the time series of one endpoint, oldest first.
func (m *Memory) SetStats(service, method, path string, pts []StatPoint) {
	m.mu.Lock()
	m.stats[service+" "+method+" "+path] = pts
	m.mu.Unlock()
}

// SetSpec sets the reconstructed OpenAPI document of a service.
func (m *Memory) SetSpec(service string, doc []byte) {
	m.mu.Lock()
	m.specs[service] = doc
	m.mu.Unlock()
}

// SetDiff sets the spec diff of a service.
func (m *Memory) SetDiff(service string, items []DiffItem) {
	m.mu.Lock()
	m.diffs[service] = items
	m.mu.Unlock()
}

// AddSamples keeps sample transactions for evidence.
func (m *Memory) AddSamples(ss ...Sample) {
	m.mu.Lock()
	for _, s := range ss {
		m.samples[s.ID] = s
	}
	m.mu.Unlock()
}

// Uploaded returns the spec an admin uploaded for service, if any.
func (m *Memory) Uploaded(service string) ([]byte, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, ok := m.uploaded[service]
	return b, ok
}

// Services implements Reader.
func (m *Memory) Services(context.Context) ([]inventory.Service, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Clone(m.services), nil
}

// Endpoints implements Reader.
func (m *Memory) Endpoints(_ context.Context, q EndpointQuery) (EndpointPage, error) {
	less, err := endpointOrder(q.Sort)
	if err != nil {
		return EndpointPage{}, err
	}
	// Sort pointers and copy only the page: an endpoint is a few hundred
	// bytes, and a count (Limit 0) needs no order at all.
	m.mu.RLock()
	defer m.mu.RUnlock()
	var match []*inventory.Endpoint
	for i := range m.endpoints {
		if MatchEndpoint(&m.endpoints[i], &q) {
			match = append(match, &m.endpoints[i])
		}
	}
	if q.Limit <= 0 {
		return EndpointPage{Total: len(match), Items: []inventory.Endpoint{}}, nil
	}
	sort.Slice(match, func(i, j int) bool { return less(match[i], match[j]) })
	pg := page(match, q.Offset, q.Limit)
	items := make([]inventory.Endpoint, len(pg))
	for i, e := range pg {
		items[i] = *e
	}
	return EndpointPage{Total: len(match), Items: items}, nil
}

// Endpoint implements Reader.
func (m *Memory) Endpoint(_ context.Context, service, method, path string) (inventory.Endpoint, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, e := range m.endpoints {
		if e.Service == service && e.Method == method && e.Path == path {
			return e, nil
		}
	}
	return inventory.Endpoint{}, ErrNotFound
}

// EndpointStats implements Reader.
func (m *Memory) EndpointStats(_ context.Context, service, method, path string, from, to time.Time) ([]StatPoint, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []StatPoint
	for _, p := range m.stats[service+" "+method+" "+path] {
		if (!from.IsZero() && p.Time.Before(from)) || (!to.IsZero() && !p.Time.Before(to)) {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// Anomalies implements Reader.
func (m *Memory) Anomalies(_ context.Context, q AnomalyQuery) (AnomalyPage, error) {
	m.mu.RLock()
	var match []anomaly.Anomaly
	for i := range m.anomalies {
		if MatchAnomaly(&m.anomalies[i], &q) {
			match = append(match, m.anomalies[i])
		}
	}
	m.mu.RUnlock()
	return AnomalyPage{Total: len(match), Items: page(match, q.Offset, q.Limit)}, nil
}

// ReconstructedSpec implements Reader.
func (m *Memory) ReconstructedSpec(_ context.Context, service string) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if b, ok := m.specs[service]; ok {
		return b, nil
	}
	return nil, ErrNotFound
}

// SpecDiff implements Reader.
func (m *Memory) SpecDiff(_ context.Context, service string) ([]DiffItem, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Clone(m.diffs[service]), nil
}

// Transactions implements EvidenceReader.
func (m *Memory) Transactions(_ context.Context, ids []string) ([]Sample, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Sample
	for _, id := range ids {
		if s, ok := m.samples[id]; ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// UploadSpec implements SpecUploader: the document must parse as OpenAPI
// 3 or Swagger 2.
func (m *Memory) UploadSpec(_ context.Context, service string, doc []byte) error {
	if err := CheckSpec(doc); err != nil {
		return err
	}
	m.mu.Lock()
	m.uploaded[service] = slices.Clone(doc)
	m.mu.Unlock()
	return nil
}

// MatchEndpoint reports whether e satisfies q's conditions (not its
// order or page). Stores that filter in memory can share it.
func MatchEndpoint(e *inventory.Endpoint, q *EndpointQuery) bool {
	if q.Service != "" && e.Service != q.Service {
		return false
	}
	if len(q.Class) > 0 && !slices.Contains(q.Class, e.Classification) {
		return false
	}
	if q.Unauthenticated && !e.Unauthenticated {
		return false
	}
	if len(q.Sensitive) > 0 && !slices.ContainsFunc(e.Sensitive, func(s string) bool { return slices.Contains(q.Sensitive, s) }) {
		return false
	}
	if !q.FirstSeenAfter.IsZero() && e.FirstSeen.Before(q.FirstSeenAfter) {
		return false
	}
	if q.Search != "" {
		s := strings.ToLower(q.Search)
		if !strings.Contains(strings.ToLower(e.Service), s) && !strings.Contains(strings.ToLower(e.Path), s) && !strings.EqualFold(e.Method, q.Search) {
			return false
		}
	}
	return true
}

// MatchAnomaly reports whether a satisfies q's conditions.
func MatchAnomaly(a *anomaly.Anomaly, q *AnomalyQuery) bool {
	switch {
	case q.ID != "" && a.ID != q.ID,
		!q.From.IsZero() && a.Start.Before(q.From),
		!q.To.IsZero() && !a.Start.Before(q.To),
		q.Type != "" && a.Type != q.Type,
		len(q.Severity) > 0 && !slices.Contains(q.Severity, a.Severity),
		q.Service != "" && a.Host != q.Service,
		q.Method != "" && a.Method != q.Method,
		q.Path != "" && a.Path != q.Path,
		q.State != "" && a.State != q.State:
		return false
	}
	return true
}

// endpointOrder returns the "less" function of a sort key; ties are
// broken by the endpoint key so that pages are stable.
func endpointOrder(key string) (func(a, b *inventory.Endpoint) bool, error) {
	desc := strings.HasPrefix(key, "-")
	key = strings.TrimPrefix(key, "-")
	if key == "" {
		key, desc = "risk", true
	}
	var cmp func(a, b *inventory.Endpoint) int
	switch key {
	case "risk":
		cmp = func(a, b *inventory.Endpoint) int { return compare(a.RiskScore, b.RiskScore) }
	case "calls":
		cmp = func(a, b *inventory.Endpoint) int { return compare(a.Calls, b.Calls) }
	case "first_seen":
		cmp = func(a, b *inventory.Endpoint) int { return a.FirstSeen.Compare(b.FirstSeen) }
	case "last_seen":
		cmp = func(a, b *inventory.Endpoint) int { return a.LastSeen.Compare(b.LastSeen) }
	case "service":
		cmp = func(a, b *inventory.Endpoint) int { return strings.Compare(a.Service, b.Service) }
	case "method":
		cmp = func(a, b *inventory.Endpoint) int { return strings.Compare(a.Method, b.Method) }
	case "path":
		cmp = func(a, b *inventory.Endpoint) int { return strings.Compare(a.Path, b.Path) }
	case "classification":
		cmp = func(a, b *inventory.Endpoint) int {
			return strings.Compare(string(a.Classification), string(b.Classification))
		}
	default:
		return nil, fmt.Errorf("sort: %q is not one of %s (optionally prefixed with -)", key, strings.Join(SortKeys, ", "))
	}
	return func(a, b *inventory.Endpoint) bool {
		c := cmp(a, b)
		if desc {
			c = -c
		}
		if c != 0 {
			return c < 0
		}
		return a.Key() < b.Key()
	}, nil
}

func compare[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func page[T any](xs []T, offset, limit int) []T {
	if offset >= len(xs) || limit <= 0 {
		return []T{}
	}
	end := min(len(xs), offset+limit)
	return xs[offset:end]
}

// SortEndpoints orders eps by an EndpointQuery.Sort key, for readers
// that filter in memory what their store cannot.
func SortEndpoints(eps []inventory.Endpoint, key string) error {
	less, err := endpointOrder(key)
	if err != nil {
		return err
	}
	sort.SliceStable(eps, func(i, j int) bool { return less(&eps[i], &eps[j]) })
	return nil
}

// Page returns xs[offset:offset+limit], clipped; empty (not nil) when
// nothing is left.
func Page[T any](xs []T, offset, limit int) []T { return page(xs, max(offset, 0), limit) }
