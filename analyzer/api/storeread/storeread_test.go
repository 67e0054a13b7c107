package storeread

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/api"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/storage/embedded"
	"github.com/apiscout/apiscout/wire"
)

var t0 = time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)

// data is one inventory written to both the embedded store and Memory.
func data() ([]inventory.Service, []inventory.Endpoint, []anomaly.Anomaly) {
	var svcs []inventory.Service
	var eps []inventory.Endpoint
	classes := []inventory.Classification{inventory.Documented, inventory.Shadow, inventory.Zombie, inventory.Orphan, inventory.Documented}
	sens := [][]string{nil, {"email"}, {"card"}, {"email", "secret"}, nil, {"phone"}}
	for s := range 3 {
		host := fmt.Sprintf("svc%d.example", s)
		svc := inventory.Service{Host: host, FirstSeen: t0.Add(-48 * time.Hour), LastSeen: t0, Calls: 1000}
		for i := range 40 {
			n := s*40 + i
			e := inventory.Endpoint{
				Service: host, Method: []string{"GET", "POST", "PUT", "DELETE"}[n%4], Path: fmt.Sprintf("/things%d/{id}", i),
				Classification: classes[n%5], Calls: int64(n*37%500 + 1), RiskScore: float64(n*17%100) / 100,
				FirstSeen: t0.Add(-time.Duration(n) * time.Hour), LastSeen: t0.Add(-time.Duration(n%7) * time.Minute),
				Auth: []string{"bearer"}, Sensitive: sens[n%6], Unauthenticated: n%3 == 0,
			}
			eps = append(eps, e)
			svc.Endpoints = append(svc.Endpoints, e)
		}
		svcs = append(svcs, svc)
	}
	var as []anomaly.Anomaly
	sevs := []anomaly.Severity{anomaly.Critical, anomaly.High, anomaly.Medium, anomaly.Low, anomaly.Info}
	for i := range 30 {
		e := eps[i*3]
		st := anomaly.Open
		if i%2 == 0 {
			st = anomaly.Closed
		}
		as = append(as, anomaly.Anomaly{
			ID: fmt.Sprintf("an-%02d", i), Type: []string{"rate_spike", "error_burst", "bola_enumeration"}[i%3], Severity: sevs[i%5],
			Host: e.Service, Method: e.Method, Path: e.Path, Start: t0.Add(-time.Duration(i) * time.Hour), End: t0.Add(-time.Duration(i)*time.Hour + time.Minute),
			Summary: "s", State: st, Count: int64(i + 1),
		})
	}
	return svcs, eps, as
}

func setup(t *testing.T) (*Reader, *api.Memory, *embedded.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := embedded.Open(ctx, embedded.Options{Path: filepath.Join(t.TempDir(), "apiscout.db")}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svcs, eps, as := data()
	if err := st.WriteEndpoints(ctx, eps); err != nil {
		t.Fatal(err)
	}
	if err := st.WriteServices(ctx, svcs); err != nil {
		t.Fatal(err)
	}
	if err := st.WriteAnomalies(ctx, as); err != nil {
		t.Fatal(err)
	}
	m := api.NewMemory()
	m.SetServices(svcs)
	m.SetAnomalies(as)
	return New(st, Specs{}), m, st
}

func keys(eps []inventory.Endpoint) []string {
	var out []string
	for _, e := range eps {
		out = append(out, e.Key())
	}
	return out
}

// TestAgreesWithMemory: every query answers the same over the embedded
// store (directly or through the in-memory fallback) as over Memory.
func TestAgreesWithMemory(t *testing.T) {
	r, m, _ := setup(t)
	ctx := context.Background()
	for _, q := range []api.EndpointQuery{
		{Limit: 50},
		{Limit: 0},
		{Sort: "-calls", Limit: 10, Offset: 5},
		{Sort: "path", Limit: 20},
		{Class: []inventory.Classification{inventory.Shadow}, Limit: 100},
		{Class: []inventory.Classification{inventory.Shadow, inventory.Zombie}, Sort: "-risk", Limit: 7, Offset: 3},
		{Unauthenticated: true, Sensitive: []string{"email"}, Limit: 100},
		{Sensitive: []string{"card", "secret"}, Limit: 100},
		{Service: "svc1.example", Search: "things1", Sort: "-calls", Limit: 100},
		{Search: "DELETE", Limit: 100},
		{FirstSeenAfter: t0.Add(-24 * time.Hour), Sort: "-first_seen", Limit: 10},
		{Sort: "classification", Limit: 15},
	} {
		want, err := m.Endpoints(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.Endpoints(ctx, q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		if got.Total != want.Total {
			t.Errorf("%+v: total %d, want %d", q, got.Total, want.Total)
		}
		// Order among equal sort values may differ between stores: when a
		// page holds every match, the same endpoints must be on it.
		if q.Limit >= want.Total {
			g, w := keys(got.Items), keys(want.Items)
			slices.Sort(g)
			slices.Sort(w)
			if !slices.Equal(g, w) {
				t.Errorf("%+v: items %v, want %v", q, g, w)
			}
		}
		if len(got.Items) != len(want.Items) {
			t.Errorf("%+v: %d items, want %d", q, len(got.Items), len(want.Items))
		}
	}
	for _, q := range []api.AnomalyQuery{
		{Limit: 50},
		{Limit: 0},
		{Severity: []anomaly.Severity{anomaly.High}, Limit: 50},
		{Severity: []anomaly.Severity{anomaly.High, anomaly.Critical}, Limit: 50},
		{State: anomaly.Open, Limit: 50},
		{Service: "svc0.example", Type: "rate_spike", Limit: 50},
		{ID: "an-07", Limit: 1},
		{ID: "nope", Limit: 1},
		{From: t0.Add(-10 * time.Hour), To: t0.Add(-2 * time.Hour), Limit: 50},
	} {
		want, _ := m.Anomalies(ctx, q)
		got, err := r.Anomalies(ctx, q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		if got.Total != want.Total || len(got.Items) != len(want.Items) {
			t.Errorf("%+v: %d/%d, want %d/%d", q, got.Total, len(got.Items), want.Total, len(want.Items))
		}
	}
	e, err := r.Endpoint(ctx, "svc2.example", "GET", "/things4/{id}")
	if err != nil || e.Path != "/things4/{id}" {
		t.Errorf("Endpoint: %+v %v", e, err)
	}
	if _, err := r.Endpoint(ctx, "svc2.example", "GET", "/things4"); err != api.ErrNotFound {
		t.Errorf("missing endpoint: %v", err)
	}
	svcs, err := r.Services(ctx)
	if err != nil || len(svcs) != 3 {
		t.Errorf("Services: %d %v", len(svcs), err)
	}
}

func TestBuckets(t *testing.T) {
	var mins []storage.EndpointMinute
	for i := range 600 {
		mins = append(mins, storage.EndpointMinute{Minute: t0.Add(time.Duration(i) * time.Minute), Calls: 2, Errors5xx: 1, LatencyP50: 5, LatencyP95: float64(i % 50), LatencyP99: float64(i % 70)})
	}
	pts := Buckets(mins, 240)
	if len(pts) > 240 || len(pts) < 100 {
		t.Fatalf("%d points", len(pts))
	}
	var calls, errs int64
	for _, p := range pts {
		calls += p.Calls
		errs += p.Errors
	}
	if calls != 1200 || errs != 600 {
		t.Errorf("sums %d %d, want 1200 600", calls, errs)
	}
	if got := Buckets(mins[:10], 240); len(got) != 10 {
		t.Errorf("short series merged: %d", len(got))
	}
}

func TestSampleKeepsNoSecrets(t *testing.T) {
	tx := &wire.Transaction{
		SensorID: "s", ConnID: 1, Client: netip.MustParseAddrPort("10.0.0.1:5000"), Server: netip.MustParseAddrPort("10.0.0.2:80"),
		RequestStart: t0, ResponseEnd: t0.Add(12500 * time.Microsecond), Method: "GET", Host: "h", Path: "/a", Query: "token=abc",
		Status: 200, RequestHeaders: []wire.Header{{Name: "Authorization", Value: "Bearer fp:1234"}}, RequestBody: []byte("secret"),
	}
	s := Sample(tx)
	if s.Auth != "bearer" || s.LatencyMS != 12.5 || s.Path != "/a" || s.ID != tx.ID() {
		t.Errorf("%+v", s)
	}
}
