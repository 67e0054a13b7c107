package ingest

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/api"
	"github.com/apiscout/apiscout/analyzer/api/storeread"
	"github.com/apiscout/apiscout/analyzer/consume"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/storage/embedded"
	"github.com/apiscout/apiscout/wire"
)

// countingEngine is the smallest engine: one endpoint per method and
// path, an anomaly on every 5th call. It exercises the glue, not the
// analysis.
type countingEngine struct {
	eps   map[string]*inventory.Endpoint
	order []string
}

func (e *countingEngine) Process(tx *wire.Transaction) []anomaly.Anomaly {
	k := tx.Method + " " + tx.Path
	ep, ok := e.eps[k]
	if !ok {
		ep = &inventory.Endpoint{Service: tx.Host, Method: tx.Method, Path: tx.Path, Classification: inventory.Shadow, FirstSeen: tx.RequestStart}
		e.eps[k] = ep
		e.order = append(e.order, k)
	}
	ep.Calls++
	ep.LastSeen = tx.RequestStart
	if ep.Calls%5 == 0 {
		return []anomaly.Anomaly{{ID: k, Type: "rate_spike", Severity: anomaly.High, Host: tx.Host, Method: tx.Method, Path: tx.Path,
			Start: tx.RequestStart, End: tx.RequestStart, State: anomaly.Open, Count: ep.Calls, Summary: "x"}}
	}
	return nil
}

func (e *countingEngine) Services() []inventory.Service {
	s := inventory.Service{Host: "h.example"}
	for _, k := range e.order {
		s.Endpoints = append(s.Endpoints, *e.eps[k])
		s.Calls += e.eps[k].Calls
		s.LastSeen = e.eps[k].LastSeen
	}
	return []inventory.Service{s}
}

// countingWriter records how many endpoints each flush wrote.
type countingWriter struct {
	*embedded.Store
	endpointWrites []int
}

func (w *countingWriter) WriteEndpoints(ctx context.Context, eps []inventory.Endpoint) error {
	w.endpointWrites = append(w.endpointWrites, len(eps))
	return w.Store.WriteEndpoints(ctx, eps)
}

func TestStoresWhatChanged(t *testing.T) {
	ctx := context.Background()
	st, err := embedded.Open(ctx, embedded.Options{Path: filepath.Join(t.TempDir(), "a.db")}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := &countingWriter{Store: st}
	an := New(&countingEngine{eps: map[string]*inventory.Endpoint{}}, w, zap.NewNop())
	t0 := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	batch := func(paths ...string) []consume.Record {
		var out []consume.Record
		for i, p := range paths {
			t0 = t0.Add(time.Second)
			out = append(out, consume.Record{Tx: &wire.Transaction{SensorID: "s", ConnID: uint64(i), RequestStart: t0, Host: "h.example", Method: "GET", Path: p,
				Status: 200, Client: netip.MustParseAddrPort("10.0.0.1:1000"), Server: netip.MustParseAddrPort("10.0.0.2:80")}})
		}
		return out
	}
	for _, b := range [][]consume.Record{batch("/a", "/b", "/a"), batch("/b"), batch("/a", "/a", "/a")} {
		if err := an.Handle(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// Both endpoints, then only /b, then only /a.
	if want := []int{2, 1, 1}; len(w.endpointWrites) != 3 || w.endpointWrites[0] != 2 || w.endpointWrites[1] != 1 || w.endpointWrites[2] != 1 {
		t.Errorf("endpoint writes %v, want %v", w.endpointWrites, want)
	}
	r := storeread.New(st, storeread.Specs{})
	a, err := r.Endpoint(ctx, "h.example", "GET", "/a")
	if err != nil || a.Calls != 5 {
		t.Errorf("stored /a: %+v %v", a, err)
	}
	page, err := r.Anomalies(ctx, api.AnomalyQuery{Limit: 10})
	if err != nil || page.Total != 1 {
		t.Errorf("anomalies: %+v %v", page, err)
	}
}
