// Package storeread adapts a result store (storage/embedded or
// storage/clickhouse, which share their read methods) to the API's Reader,
// so that `apiscout run` and the distributed analyzer serve the same API
// from the same kind of source. What a store query cannot express (several
// classifications at once, several data classes, a first-seen bound, an
// anomaly by id) is narrowed in the store as far as it goes and finished
// in memory.
package storeread

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/api"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/wire"
)

// Store is the read side of a result store, as the stores declare it.
type Store interface {
	Endpoints(ctx context.Context, q storage.EndpointQuery) ([]inventory.Endpoint, int, error)
	Services(ctx context.Context) ([]storage.ServiceSummary, error)
	Anomalies(ctx context.Context, q storage.AnomalyQuery) ([]anomaly.Anomaly, int, error)
	EndpointStats(ctx context.Context, service, method, path string, from, to time.Time) ([]storage.EndpointMinute, error)
	Transactions(ctx context.Context, q storage.TransactionQuery) ([]wire.Transaction, error)
}

// Specs renders specs; the analyzer's spec package provides them. Either
// function may be nil: no reconstructed spec (404) and no diff (empty).
type Specs struct {
	Reconstructed func(ctx context.Context, service string) ([]byte, error)
	Diff          func(ctx context.Context, service string) ([]api.DiffItem, error)
}

// Reader implements api.Reader and api.EvidenceReader over a Store.
type Reader struct {
	store Store
	specs Specs
	// scanCap bounds how many rows an in-memory fallback reads: past it
	// the answer covers the first scanCap matches of the store's part.
	scanCap int
}

// New returns a Reader over store.
func New(store Store, specs Specs) *Reader {
	return &Reader{store: store, specs: specs, scanCap: 200000}
}

// maxBuckets bounds the points of a time series sent to the UI: a week of
// minutes becomes 240 buckets of 42 minutes.
const maxBuckets = 240

// Services implements api.Reader.
func (r *Reader) Services(ctx context.Context) ([]inventory.Service, error) {
	sums, err := r.store.Services(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]inventory.Service, len(sums))
	for i, s := range sums {
		out[i] = s.Service
		out[i].Endpoints = nil
	}
	return out, nil
}

// Endpoints implements api.Reader.
func (r *Reader) Endpoints(ctx context.Context, q api.EndpointQuery) (api.EndpointPage, error) {
	sq := storage.EndpointQuery{Service: q.Service, Unauthenticated: q.Unauthenticated, Search: q.Search, Sort: q.Sort}
	if sq.Sort == "" {
		sq.Sort = "-risk"
	}
	// A method typed in the search box matches by method, which the
	// store's search (path or service) does not do.
	direct := q.FirstSeenAfter.IsZero() && !isMethod(q.Search)
	if isMethod(q.Search) {
		sq.Search = ""
	}
	switch len(q.Class) {
	case 0:
	case 1:
		sq.Classification = q.Class[0]
	default:
		direct = false
	}
	switch len(q.Sensitive) {
	case 0:
	case 1:
		sq.Sensitive = q.Sensitive[0]
	default:
		sq.Sensitive = "any"
		direct = false
	}
	if _, ok := storage.SortKeys[strings.TrimPrefix(sq.Sort, "-")]; !ok {
		sq.Sort = "-risk"
		direct = false
	}
	if direct {
		sq.Offset, sq.Limit = q.Offset, q.Limit
		if q.Limit == 0 {
			sq.Limit = 1 // the store reads 0 as its default page; only the total is wanted
		}
		items, total, err := r.store.Endpoints(ctx, sq)
		if err != nil {
			return api.EndpointPage{}, err
		}
		if q.Limit == 0 {
			items = nil
		}
		return api.EndpointPage{Total: total, Items: nonNil(items)}, nil
	}
	all, err := r.scanEndpoints(ctx, sq)
	if err != nil {
		return api.EndpointPage{}, err
	}
	match := all[:0]
	for i := range all {
		if api.MatchEndpoint(&all[i], &q) {
			match = append(match, all[i])
		}
	}
	if err := api.SortEndpoints(match, q.Sort); err != nil {
		return api.EndpointPage{}, err
	}
	return api.EndpointPage{Total: len(match), Items: api.Page(match, q.Offset, q.Limit)}, nil
}

// scanEndpoints reads every endpoint matching sq, page by page.
func (r *Reader) scanEndpoints(ctx context.Context, sq storage.EndpointQuery) ([]inventory.Endpoint, error) {
	var all []inventory.Endpoint
	sq.Limit = storage.MaxLimit
	for sq.Offset = 0; sq.Offset < r.scanCap; sq.Offset += sq.Limit {
		items, total, err := r.store.Endpoints(ctx, sq)
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		if len(items) == 0 || sq.Offset+len(items) >= total {
			break
		}
	}
	return all, nil
}

// Endpoint implements api.Reader.
func (r *Reader) Endpoint(ctx context.Context, service, method, path string) (inventory.Endpoint, error) {
	all, err := r.scanEndpoints(ctx, storage.EndpointQuery{Service: service, Search: path, Sort: "path"})
	if err != nil {
		return inventory.Endpoint{}, err
	}
	for _, e := range all {
		if e.Service == service && e.Method == method && e.Path == path {
			return e, nil
		}
	}
	return inventory.Endpoint{}, api.ErrNotFound
}

// EndpointStats implements api.Reader: minutes merged into at most
// maxBuckets points (calls and errors summed, quantiles taken from the
// busiest minute's p50 and the worst minute's p95 and p99).
func (r *Reader) EndpointStats(ctx context.Context, service, method, path string, from, to time.Time) ([]api.StatPoint, error) {
	mins, err := r.store.EndpointStats(ctx, service, method, path, from, to)
	if err != nil {
		return nil, err
	}
	return Buckets(mins, maxBuckets), nil
}

// Buckets merges minutes (oldest first) into at most n points.
func Buckets(mins []storage.EndpointMinute, n int) []api.StatPoint {
	if len(mins) == 0 {
		return nil
	}
	first, last := mins[0].Minute, mins[len(mins)-1].Minute
	step := time.Minute
	if span := last.Sub(first) + time.Minute; span > time.Duration(n)*time.Minute {
		step = (span + time.Duration(n) - 1) / time.Duration(n)
		step = step.Round(time.Minute)
		if step < time.Minute {
			step = time.Minute
		}
	}
	var out []api.StatPoint
	var busiest uint64
	for _, m := range mins {
		t := first.Add(m.Minute.Sub(first) / step * step)
		if len(out) == 0 || !out[len(out)-1].Time.Equal(t) {
			out = append(out, api.StatPoint{Time: t})
			busiest = 0
		}
		p := &out[len(out)-1]
		p.Calls += int64(m.Calls)
		p.Errors += int64(m.Errors4xx + m.Errors5xx + m.NoResponse)
		if m.Calls >= busiest {
			busiest, p.P50 = m.Calls, m.LatencyP50
		}
		p.P95 = max(p.P95, m.LatencyP95)
		p.P99 = max(p.P99, m.LatencyP99)
	}
	return out
}

// Anomalies implements api.Reader.
func (r *Reader) Anomalies(ctx context.Context, q api.AnomalyQuery) (api.AnomalyPage, error) {
	sq := storage.AnomalyQuery{Host: q.Service, Method: q.Method, Path: q.Path, Type: q.Type, State: string(q.State), From: q.From, To: q.To}
	direct := q.ID == "" && len(q.Severity) <= 1
	if len(q.Severity) == 1 {
		sq.Severity = string(q.Severity[0])
	}
	if direct {
		sq.Offset, sq.Limit = q.Offset, q.Limit
		if q.Limit == 0 {
			sq.Limit = 1
		}
		items, total, err := r.store.Anomalies(ctx, sq)
		if err != nil {
			return api.AnomalyPage{}, err
		}
		if q.Limit == 0 {
			items = nil
		}
		return api.AnomalyPage{Total: total, Items: nonNil(items)}, nil
	}
	var match []anomaly.Anomaly
	sq.Limit = storage.MaxLimit
	for sq.Offset = 0; sq.Offset < r.scanCap; sq.Offset += sq.Limit {
		items, total, err := r.store.Anomalies(ctx, sq)
		if err != nil {
			return api.AnomalyPage{}, err
		}
		for i := range items {
			if api.MatchAnomaly(&items[i], &q) {
				match = append(match, items[i])
			}
		}
		if len(items) == 0 || sq.Offset+len(items) >= total || (q.ID != "" && len(match) > 0) {
			break
		}
	}
	return api.AnomalyPage{Total: len(match), Items: api.Page(match, q.Offset, q.Limit)}, nil
}

// ReconstructedSpec implements api.Reader.
func (r *Reader) ReconstructedSpec(ctx context.Context, service string) ([]byte, error) {
	if r.specs.Reconstructed == nil {
		return nil, api.ErrNotFound
	}
	return r.specs.Reconstructed(ctx, service)
}

// SpecDiff implements api.Reader.
func (r *Reader) SpecDiff(ctx context.Context, service string) ([]api.DiffItem, error) {
	if r.specs.Diff == nil {
		return nil, nil
	}
	return r.specs.Diff(ctx, service)
}

// Transactions implements api.EvidenceReader: metadata only.
func (r *Reader) Transactions(ctx context.Context, ids []string) ([]api.Sample, error) {
	txs, err := r.store.Transactions(ctx, storage.TransactionQuery{IDs: ids, Limit: len(ids)})
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	out := make([]api.Sample, 0, len(txs))
	for i := range txs {
		out = append(out, Sample(&txs[i]))
	}
	return out, nil
}

// Sample keeps what the evidence view shows of a transaction: no header
// value, no body, no query string.
func Sample(tx *wire.Transaction) api.Sample {
	s := api.Sample{
		ID: tx.ID(), Time: tx.RequestStart, Client: tx.Client.String(), Service: tx.Host,
		Method: tx.Method, Path: tx.Path, Status: tx.Status, Auth: authKind(tx), Flags: tx.Flags.Names(),
	}
	if !tx.ResponseEnd.IsZero() {
		s.LatencyMS = float64(tx.ResponseEnd.Sub(tx.RequestStart).Microseconds()) / 1000
	}
	return s
}

// authKind names the credential a request carried, from header names and
// the scheme word only.
func authKind(tx *wire.Transaction) string {
	if v, ok := tx.RequestHeader("Authorization"); ok {
		scheme, _, _ := strings.Cut(strings.TrimSpace(v), " ")
		return strings.ToLower(scheme)
	}
	for _, h := range []string{"X-API-Key", "Api-Key", "X-Auth-Token"} {
		if _, ok := tx.RequestHeader(h); ok {
			return "apikey"
		}
	}
	if _, ok := tx.RequestHeader("Cookie"); ok {
		return "cookie"
	}
	return "none"
}

func isMethod(s string) bool {
	switch strings.ToUpper(s) {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT":
		return true
	}
	return false
}

func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}
