package storagetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/wire"
)

// Store is what the suite needs of a store: the whole write and read API
// of package storage.
type Store interface {
	WriteTransactions(ctx context.Context, txs []*wire.Transaction) error
	WriteEndpoints(ctx context.Context, eps []inventory.Endpoint) error
	WriteServices(ctx context.Context, svcs []inventory.Service) error
	WriteAnomalies(ctx context.Context, as []anomaly.Anomaly) error
	WriteStats(ctx context.Context, stats []storage.EndpointMinute) error
	WriteHeartbeats(ctx context.Context, hbs []wire.Heartbeat) error
	SaveCheckpoint(ctx context.Context, key string, data []byte, offsets map[int]int64) error
	LoadCheckpoint(ctx context.Context, key string) (storage.Checkpoint, error)

	Endpoints(ctx context.Context, q storage.EndpointQuery) ([]inventory.Endpoint, int, error)
	Services(ctx context.Context) ([]storage.ServiceSummary, error)
	Anomalies(ctx context.Context, q storage.AnomalyQuery) ([]anomaly.Anomaly, int, error)
	EndpointStats(ctx context.Context, service, method, path string, from, to time.Time) ([]storage.EndpointMinute, error)
	Transactions(ctx context.Context, q storage.TransactionQuery) ([]wire.Transaction, error)
	Close() error
}

// WriteAll writes d the way an analyzer does over a run: older states
// first for some records and last for others (a replayed or late batch),
// so that "latest wins" is decided by version, not by insert order.
func WriteAll(ctx context.Context, s Store, d *Data) error {
	half := len(d.Endpoints) / 2
	steps := []func() error{
		func() error { return s.WriteEndpoints(ctx, d.Earlier[:half]) },
		func() error { return s.WriteTransactions(ctx, d.Transactions) },
		func() error { return s.WriteAnomalies(ctx, d.AnomalyOpen[:6]) },
		func() error { return s.WriteStats(ctx, d.Stats) },
		func() error { return s.WriteEndpoints(ctx, d.Endpoints) },
		func() error { return s.WriteEndpoints(ctx, d.Earlier[half:]) }, // late, older: must lose
		func() error { return s.WriteServices(ctx, d.Services) },
		func() error { return s.WriteAnomalies(ctx, d.Anomalies) },
		func() error { return s.WriteAnomalies(ctx, d.AnomalyOpen[6:]) }, // late, older: must lose
		func() error { return s.WriteHeartbeats(ctx, d.Heartbeats) },
	}
	for i, f := range steps {
		if err := f(); err != nil {
			return fmt.Errorf("write step %d: %w", i, err)
		}
	}
	return nil
}

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ExpectEndpoints applies q to d in Go, the reference for the stores'
// queries.
func ExpectEndpoints(d *Data, q storage.EndpointQuery) ([]inventory.Endpoint, int) {
	var out []inventory.Endpoint
	for _, e := range d.Endpoints {
		switch {
		case q.Service != "" && e.Service != q.Service,
			q.Classification != "" && e.Classification != q.Classification,
			q.Unauthenticated && !e.Unauthenticated,
			q.Sensitive == "any" && len(e.Sensitive) == 0,
			q.Sensitive != "" && q.Sensitive != "any" && !slices.Contains(e.Sensitive, q.Sensitive),
			q.Search != "" && !strings.Contains(asciiLower(e.Path), asciiLower(q.Search)) &&
				!strings.Contains(asciiLower(e.Service), asciiLower(q.Search)):
			continue
		}
		out = append(out, e)
	}
	col, desc, _ := storage.SortColumn(q.Sort)
	cmpKey := func(a, b *inventory.Endpoint) int {
		return strings.Compare(a.Service+"\x00"+a.Method+"\x00"+a.Path, b.Service+"\x00"+b.Method+"\x00"+b.Path)
	}
	slices.SortStableFunc(out, func(a, b inventory.Endpoint) int {
		c := 0
		switch col {
		case "calls":
			c = cmpOrdered(a.Calls, b.Calls)
		case "last_seen":
			c = a.LastSeen.Truncate(time.Second).Compare(b.LastSeen.Truncate(time.Second))
		case "first_seen":
			c = a.FirstSeen.Truncate(time.Second).Compare(b.FirstSeen.Truncate(time.Second))
		case "risk_score":
			c = cmpOrdered(a.RiskScore, b.RiskScore)
		case "path":
			c = strings.Compare(a.Path, b.Path)
		case "service":
			c = strings.Compare(a.Service, b.Service)
		case "method":
			c = strings.Compare(a.Method, b.Method)
		}
		if desc {
			c = -c
		}
		if c != 0 {
			return c
		}
		return cmpKey(&a, &b)
	})
	total := len(out)
	off := min(max(q.Offset, 0), len(out))
	out = out[off:]
	if l := storage.PageLimit(q.Limit); len(out) > l {
		out = out[:l]
	}
	return out, total
}

// asciiLower folds ASCII letters only, as both stores' case-insensitive
// search does (SQLite lower, ClickHouse positionCaseInsensitive).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func cmpOrdered[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ExpectAnomalies applies q to d in Go.
func ExpectAnomalies(d *Data, q storage.AnomalyQuery) ([]anomaly.Anomaly, int) {
	var out []anomaly.Anomaly
	for _, a := range d.Anomalies {
		switch {
		case q.Host != "" && a.Host != q.Host, q.Method != "" && a.Method != q.Method, q.Path != "" && a.Path != q.Path,
			q.Type != "" && a.Type != q.Type, q.Severity != "" && string(a.Severity) != q.Severity,
			q.State != "" && string(a.State) != q.State,
			!q.From.IsZero() && a.Start.Truncate(time.Second).Before(q.From.Truncate(time.Second)),
			!q.To.IsZero() && !a.Start.Truncate(time.Second).Before(q.To.Truncate(time.Second)):
			continue
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b anomaly.Anomaly) int {
		if c := b.Start.Truncate(time.Second).Compare(a.Start.Truncate(time.Second)); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	total := len(out)
	off := min(max(q.Offset, 0), len(out))
	out = out[off:]
	if l := storage.PageLimit(q.Limit); len(out) > l {
		out = out[:l]
	}
	return out, total
}

// ExpectServices summarizes d's endpoints per service.
func ExpectServices(d *Data) []storage.ServiceSummary {
	by := map[string]*storage.ServiceSummary{}
	var order []string
	for _, s := range d.Services {
		s.Endpoints = nil
		by[s.Host] = &storage.ServiceSummary{Service: s}
		order = append(order, s.Host)
	}
	for _, e := range d.Endpoints {
		s := by[e.Service]
		s.EndpointCount++
		if e.Classification == inventory.Shadow {
			s.Shadow++
		}
		if e.Classification == inventory.Zombie {
			s.Zombie++
		}
		if e.Unauthenticated {
			s.Unauthenticated++
		}
		if len(e.Sensitive) > 0 {
			s.Sensitive++
		}
	}
	return storage.SortServices(by, order)
}

// EndpointQueries are the filters the suite checks, built from d so that
// each selects something.
func EndpointQueries(d *Data) []storage.EndpointQuery {
	return []storage.EndpointQuery{
		{Limit: storage.MaxLimit},
		{Service: d.Endpoints[0].Service},
		{Classification: inventory.Shadow},
		{Classification: inventory.Zombie, Sort: "path"},
		{Unauthenticated: true, Sort: "-risk"},
		{Sensitive: "card"},
		{Sensitive: "any", Sort: "service"},
		{Search: "CHARGES"},
		{Search: "example", Sort: "-last_seen", Limit: 3, Offset: 2},
		{Sort: "calls", Limit: 4},
		{Sort: "first_seen"},
		{Service: "api.shop.example", Sensitive: "email", Unauthenticated: false, Sort: "method"},
		{Service: "no.such.service"},
	}
}

// CheckReadBack reads everything back and fails the test where a store's
// answer differs from what d says it must be.
func CheckReadBack(t *testing.T, ctx context.Context, s Store, d *Data) {
	t.Helper()
	for _, q := range EndpointQueries(d) {
		got, total, err := s.Endpoints(ctx, q)
		if err != nil {
			t.Fatalf("Endpoints(%+v): %v", q, err)
		}
		want, wantTotal := ExpectEndpoints(d, q)
		if total != wantTotal {
			t.Errorf("Endpoints(%+v): total %d, want %d", q, total, wantTotal)
		}
		if g, w := jsonOf(t, got), jsonOf(t, want); g != w && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("Endpoints(%+v):\n got %s\nwant %s", q, g, w)
		}
	}
	if _, _, err := s.Endpoints(ctx, storage.EndpointQuery{Sort: "calls; DROP TABLE endpoints"}); err == nil {
		t.Error("Endpoints with a sort key outside the allow-list: no error")
	}

	svcs, err := s.Services(ctx)
	if err != nil {
		t.Fatalf("Services: %v", err)
	}
	if g, w := jsonOf(t, svcs), jsonOf(t, ExpectServices(d)); g != w {
		t.Errorf("Services:\n got %s\nwant %s", g, w)
	}

	mid := d.Start.Add(d.End.Sub(d.Start) / 3)
	for _, q := range []storage.AnomalyQuery{
		{Limit: storage.MaxLimit},
		{State: "open"},
		{State: "closed", Severity: "high"},
		{Type: "bola_enumeration"},
		{Host: d.Anomalies[0].Host, Method: d.Anomalies[0].Method, Path: d.Anomalies[0].Path},
		{From: mid, Limit: 2, Offset: 1},
		{To: mid},
	} {
		got, total, err := s.Anomalies(ctx, q)
		if err != nil {
			t.Fatalf("Anomalies(%+v): %v", q, err)
		}
		want, wantTotal := ExpectAnomalies(d, q)
		if total != wantTotal {
			t.Errorf("Anomalies(%+v): total %d, want %d", q, total, wantTotal)
		}
		if g, w := jsonOf(t, got), jsonOf(t, want); g != w && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("Anomalies(%+v):\n got %s\nwant %s", q, g, w)
		}
	}

	// Statistics of every endpoint, whole range and a window.
	byEndpoint := map[string][]storage.EndpointMinute{}
	for _, m := range d.Stats {
		k := m.Service + " " + m.Method + " " + m.Path
		byEndpoint[k] = append(byEndpoint[k], m)
	}
	for _, e := range d.Endpoints {
		want := byEndpoint[e.Key()]
		got, err := s.EndpointStats(ctx, e.Service, e.Method, e.Path, time.Time{}, time.Time{})
		if err != nil {
			t.Fatalf("EndpointStats(%s): %v", e.Key(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("EndpointStats(%s):\n got %s\nwant %s", e.Key(), jsonOf(t, got), jsonOf(t, want))
		}
		from, to := d.Start.Add(2*time.Minute), d.Start.Add(5*time.Minute)
		var window []storage.EndpointMinute
		for _, m := range want {
			if !m.Minute.Before(from) && m.Minute.Before(to) {
				window = append(window, m)
			}
		}
		got, err = s.EndpointStats(ctx, e.Service, e.Method, e.Path, from, to)
		if err != nil {
			t.Fatalf("EndpointStats(%s) window: %v", e.Key(), err)
		}
		if !reflect.DeepEqual(got, window) {
			t.Errorf("EndpointStats(%s) window: got %d minutes, want %d", e.Key(), len(got), len(window))
		}
	}

	// Transactions by id come back whole, bodies left out.
	pick := []*wire.Transaction{d.Transactions[0], d.Transactions[len(d.Transactions)/2], d.Transactions[len(d.Transactions)-1]}
	var ids []string
	want := map[string]string{}
	for _, tx := range pick {
		ids = append(ids, tx.ID())
		c := *tx
		c.RequestBody, c.ResponseBody = nil, nil
		want[tx.ID()] = jsonOf(t, &c)
	}
	got, err := s.Transactions(ctx, storage.TransactionQuery{IDs: ids})
	if err != nil {
		t.Fatalf("Transactions: %v", err)
	}
	if len(got) != len(ids) {
		t.Errorf("Transactions by %d ids: %d back", len(ids), len(got))
	}
	for i := range got {
		if g, w := jsonOf(t, &got[i]), want[got[i].ID()]; g != w {
			t.Errorf("Transaction %s:\n got %s\nwant %s", got[i].ID(), g, w)
		}
	}
	svc := d.Transactions[0].Host
	n := 0
	for _, tx := range d.Transactions {
		if tx.Host == svc {
			n++
		}
	}
	got, err = s.Transactions(ctx, storage.TransactionQuery{Service: svc, Limit: storage.MaxLimit})
	if err != nil {
		t.Fatalf("Transactions(service): %v", err)
	}
	if len(got) != min(n, storage.MaxLimit) {
		t.Errorf("Transactions(service %s): %d, want %d", svc, len(got), min(n, storage.MaxLimit))
	}
	for i := 1; i < len(got); i++ {
		if got[i].RequestStart.Truncate(time.Second).After(got[i-1].RequestStart.Truncate(time.Second)) {
			t.Fatalf("Transactions(service): not newest first at %d", i)
		}
	}
}

// CheckCheckpoints saves, overwrites and loads checkpoints.
func CheckCheckpoints(t *testing.T, ctx context.Context, s Store) {
	t.Helper()
	if _, err := s.LoadCheckpoint(ctx, "svc/none"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("LoadCheckpoint of a missing key: %v, want ErrNotFound", err)
	}
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7) // binary, with zero bytes
	}
	if err := s.SaveCheckpoint(ctx, "svc/a", []byte("first"), map[int]int64{0: 10}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCheckpoint(ctx, "svc/b", []byte("other"), map[int]int64{1: 5}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCheckpoint(ctx, "svc/a", big, map[int]int64{0: 99, 3: 7}); err != nil {
		t.Fatal(err)
	}
	cp, err := s.LoadCheckpoint(ctx, "svc/a")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cp.Data, big) || !reflect.DeepEqual(cp.Offsets, map[int]int64{0: 99, 3: 7}) {
		t.Errorf("LoadCheckpoint(svc/a): %d bytes, offsets %v; want the second save", len(cp.Data), cp.Offsets)
	}
	cp, err = s.LoadCheckpoint(ctx, "svc/b")
	if err != nil || string(cp.Data) != "other" || cp.Offsets[1] != 5 {
		t.Errorf("LoadCheckpoint(svc/b): %q %v %v", cp.Data, cp.Offsets, err)
	}
}
