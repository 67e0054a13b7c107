// Package storage holds what every result store shares: the row and query
// types of the read API, the per-minute endpoint statistics, the sort
// allow-list, transaction sampling and the batch identity used to make a
// resent insert harmless. The stores themselves live in storage/clickhouse
// (a server, for the distributed deployment) and storage/embedded (one
// file, for one process); both have the same methods, so a consumer (the
// analyzer, the REST API, the CLI) declares the interface it needs over
// the subset it calls.
//
// # Write side (called by the analyzer)
//
//	WriteTransactions(ctx, []*wire.Transaction) error  // metadata, sampled; bodies only if configured
//	WriteEndpoints(ctx, []inventory.Endpoint) error    // versioned by LastSeen: the latest state wins
//	WriteServices(ctx, []inventory.Service) error      // versioned by LastSeen; Endpoints not stored here
//	WriteAnomalies(ctx, []anomaly.Anomaly) error       // incident updates by ID: the latest (End, Count, State) wins
//	WriteStats(ctx, []storage.EndpointMinute) error    // one row per endpoint and minute; a rewrite with more calls wins
//	WriteHeartbeats(ctx, []wire.Heartbeat) error
//	SaveCheckpoint(ctx, key string, data []byte, offsets map[int]int64) error
//	LoadCheckpoint(ctx, key string) (storage.Checkpoint, error) // storage.ErrNotFound when none
//
// A write returns only when the rows are stored (or the store gave up after
// its retries): an error means "not known to be stored", so the caller must
// not commit its Kafka offsets and should stop consuming until a write
// succeeds again (backpressure; nothing is dropped). Writing the same rows
// twice is harmless: every table is keyed, and every read below counts each
// key once. Batcher puts any write behind a bounded buffer flushed by size
// and time; package storage/minutes folds transactions into the per-minute
// EndpointMinute rows by packet time.
//
// # Read side (for the REST API, the web UI and the CLI)
//
//	Endpoints(ctx, storage.EndpointQuery) ([]inventory.Endpoint, int, error) // page and total matching
//	Services(ctx) ([]storage.ServiceSummary, error)
//	Anomalies(ctx, storage.AnomalyQuery) ([]anomaly.Anomaly, int, error)
//	EndpointStats(ctx, service, method, path string, from, to time.Time) ([]storage.EndpointMinute, error)
//	Transactions(ctx, storage.TransactionQuery) ([]wire.Transaction, error)
//	Close() error
//
// Records come back whole: the stores keep the stable fields as columns for
// filtering and sorting, and the complete record as JSON (transactions: in
// their wire encoding, see AppendTransactionRecord), so fields added to
// inventory.Endpoint, anomaly.Anomaly or wire.Transaction later are stored
// and returned without a schema change. User input never becomes
// SQL text: values are bound parameters and sort keys come from the
// allow-list in SortKeys.
package storage

import (
	"errors"
	"fmt"
	"hash/fnv"
	"iter"
	"strings"
	"time"

	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/wire"
)

// ErrNotFound is returned by LoadCheckpoint when no checkpoint exists.
var ErrNotFound = errors.New("storage: not found")

// EndpointMinute is the traffic of one endpoint in one minute of packet
// time: what the dashboards and the endpoint page draw. The analyzer emits
// it when the minute is complete; emitting it again with more calls (late
// transactions) replaces the earlier row.
type EndpointMinute struct {
	Service string    `json:"service"`
	Method  string    `json:"method"`
	Path    string    `json:"path"`
	Minute  time.Time `json:"minute"` // start of the minute, UTC
	Calls   uint64    `json:"calls"`
	// Errors4xx and Errors5xx count responses by class; NoResponse counts
	// requests without a response.
	Errors4xx  uint64 `json:"errors_4xx"`
	Errors5xx  uint64 `json:"errors_5xx"`
	NoResponse uint64 `json:"no_response"`
	// Unauthenticated counts calls without credentials.
	Unauthenticated uint64 `json:"unauthenticated"`
	// Latency quantiles in milliseconds, from request start to response
	// end.
	LatencyP50 float64 `json:"latency_p50_ms"`
	LatencyP90 float64 `json:"latency_p90_ms"`
	LatencyP95 float64 `json:"latency_p95_ms"`
	LatencyP99 float64 `json:"latency_p99_ms"`
	LatencyMax float64 `json:"latency_max_ms"`
	// Body bytes on the wire, summed.
	RequestBytes  uint64 `json:"request_bytes"`
	ResponseBytes uint64 `json:"response_bytes"`
	// StatusCodes counts responses by status code.
	StatusCodes map[uint16]uint64 `json:"status_codes,omitempty"`
}

// Checkpoint is the analyzer state saved for one key (a service, or a
// Kafka partition), with the offsets it reflects.
type Checkpoint struct {
	Key     string        `json:"key"`
	Data    []byte        `json:"data"`
	Offsets map[int]int64 `json:"offsets"`
	// SavedAt is the writer's clock when it was saved; Version orders
	// saves of one key (the latest wins).
	SavedAt time.Time `json:"saved_at"`
	Version uint64    `json:"version"`
}

// ServiceSummary is one service with counts over its endpoints: the rows of
// the inventory overview.
type ServiceSummary struct {
	inventory.Service
	EndpointCount   int `json:"endpoint_count"`
	Shadow          int `json:"shadow"`
	Zombie          int `json:"zombie"`
	Unauthenticated int `json:"unauthenticated_endpoints"`
	Sensitive       int `json:"sensitive_endpoints"`
}

// EndpointQuery selects endpoints for the inventory page. Zero values mean
// "any"; Limit 0 means DefaultLimit.
type EndpointQuery struct {
	Service        string
	Classification inventory.Classification
	// Unauthenticated keeps only endpoints called successfully without
	// credentials.
	Unauthenticated bool
	// Sensitive keeps endpoints where this data class was seen; "any"
	// keeps every endpoint with at least one class.
	Sensitive string
	// Search is a substring of the path or the service, ASCII letters
	// matched without regard to case.
	Search string
	// Sort is one of SortKeys, with a leading "-" for descending; "" is
	// "-calls".
	Sort   string
	Limit  int
	Offset int
}

// AnomalyQuery selects incidents. Zero values mean "any"; From/To bound
// the incident's start.
type AnomalyQuery struct {
	Host     string
	Method   string
	Path     string
	Type     string
	Severity string
	State    string
	From, To time.Time
	Limit    int
	Offset   int
}

// TransactionQuery selects stored transactions, newest first: by ids (an
// anomaly's evidence) or by service and time. Give Service and a time
// range with IDs when known (an incident's host, start and end): ClickHouse
// finds rows by service and time, and ids alone make it read the table.
type TransactionQuery struct {
	IDs      []string
	Service  string
	From, To time.Time
	Limit    int
}

// DefaultLimit and MaxLimit bound every page.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// PageLimit clamps a requested page size.
func PageLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}

// SortKeys is the allow-list of endpoint sort keys and the column each
// maps to in both stores.
var SortKeys = map[string]string{
	"calls":      "calls",
	"last_seen":  "last_seen",
	"first_seen": "first_seen",
	"risk":       "risk_score",
	"path":       "path",
	"service":    "service",
	"method":     "method",
}

// SortColumn resolves an EndpointQuery.Sort value to a column from the
// allow-list and a direction. Anything else is an error naming the keys.
func SortColumn(sort string) (column string, desc bool, err error) {
	if sort == "" {
		sort = "-calls"
	}
	desc = strings.HasPrefix(sort, "-")
	col, ok := SortKeys[strings.TrimPrefix(sort, "-")]
	if !ok {
		keys := make([]string, 0, len(SortKeys))
		for k := range SortKeys {
			keys = append(keys, k)
		}
		return "", false, fmt.Errorf("storage: sort %q is not one of %s (prefix - for descending)", sort, strings.Join(sorted(keys), ", "))
	}
	return col, desc, nil
}

func sorted(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

// Sampled reports whether a transaction id is kept when 1 in n is stored.
// It hashes the id, so the same transaction is kept or dropped the same way
// on every retry and replay, and on every analyzer.
func Sampled(id string, n int) bool {
	if n <= 1 {
		return true
	}
	h := fnv.New64a()
	h.Write([]byte(id))
	return h.Sum64()%uint64(n) == 0
}

// BatchToken identifies a batch by its table and the ids of its rows, so
// a batch rebuilt from the same source carries the same token and a server
// that deduplicates by token stores it once.
func BatchToken(table string, ids iter.Seq[string]) string {
	h := fnv.New128a()
	h.Write([]byte(table))
	n := 0
	ids(func(id string) bool {
		h.Write([]byte{0})
		h.Write([]byte(id))
		n++
		return true
	})
	return fmt.Sprintf("%s-%d-%x", table, n, h.Sum(nil))
}

// Version orders the states of one record: microseconds of t, then a
// tie-break (an incident's count, its state) in the low 12 bits. Packet
// time, not the writer's clock, so a replay writes the same versions.
func Version(t time.Time, tiebreak uint64) uint64 {
	if t.IsZero() || t.Before(time.Unix(0, 0)) {
		return min(tiebreak, 1<<12-1)
	}
	return uint64(t.UnixMicro())<<12 | min(tiebreak, 1<<12-1)
}

// AnomalyVersion is the version of an incident update: later End first,
// then a larger Count, then closed over open.
func AnomalyVersion(end time.Time, count int64, closed bool) uint64 {
	tb := uint64(0)
	if count > 0 {
		tb = uint64(min(count, 1<<11-1)) << 1
	}
	if closed {
		tb |= 1
	}
	return Version(end, tb)
}

// SortServices returns the summaries in order, each once.
func SortServices(byName map[string]*ServiceSummary, order []string) []ServiceSummary {
	names := sorted(append([]string(nil), order...))
	out := make([]ServiceSummary, 0, len(names))
	for i, n := range names {
		if i > 0 && names[i-1] == n {
			continue
		}
		out = append(out, *byName[n])
	}
	return out
}

// AppendTransactionRecord appends the record stored with a transaction:
// its wire encoding (protobuf, the sensor-analyzer contract), bodies left
// out unless storeBodies. Not JSON, unlike the other records: encoding
// JSON costs ~6µs a transaction against ~0.5µs, and the row ~3 times the
// bytes, which the insert rate of the transactions table cannot afford.
// Every field of wire.Transaction travels in this encoding, so new fields
// flow through as they do over Kafka.
func AppendTransactionRecord(b []byte, t *wire.Transaction, storeBodies bool) []byte {
	if !storeBodies && (t.RequestBody != nil || t.ResponseBody != nil) {
		c := *t
		c.RequestBody, c.ResponseBody = nil, nil
		t = &c
	}
	return wire.AppendTransaction(b, t)
}

// DecodeTransactionRecord reads a record AppendTransactionRecord wrote.
func DecodeTransactionRecord(b []byte, t *wire.Transaction) error {
	if err := wire.DecodeTransaction(b, t); err != nil {
		return fmt.Errorf("transaction record: %w", err)
	}
	return nil
}

// TransactionDuration is request start to response end in microseconds,
// 0 without a response.
func TransactionDuration(t *wire.Transaction) uint64 {
	if t.ResponseEnd.IsZero() || t.ResponseEnd.Before(t.RequestStart) {
		return 0
	}
	return uint64(t.ResponseEnd.Sub(t.RequestStart) / time.Microsecond)
}
