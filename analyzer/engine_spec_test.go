package analyzer

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/wire"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type call struct {
	method, path, query string
	status              int
	ctype, body         string
	auth                bool
}

func (c call) tx(i int) *wire.Transaction {
	tx := &wire.Transaction{Protocol: "http/1.1", Host: "pets.example", Method: c.method, Path: c.path, Query: c.query,
		Status: c.status, ResponseContentType: c.ctype, ResponseBody: []byte(c.body),
		Client: netip.MustParseAddrPort(fmt.Sprintf("10.0.0.%d:40000", 1+i%5)), Server: netip.MustParseAddrPort("10.1.0.1:443"),
		RequestStart: t0.Add(time.Duration(i) * time.Second)}
	tx.RequestEnd, tx.ResponseStart = tx.RequestStart, tx.RequestStart.Add(3*time.Millisecond)
	if c.auth {
		tx.RequestHeaders = []wire.Header{{Name: "Authorization", Value: "Bearer fp:0123456789abcdef"}}
	}
	return tx
}

func petsEngine(t *testing.T) *Engine {
	t.Helper()
	e, err := New(Options{Config: config.Default().Analyzer})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("spec/testdata/petstore-v3.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.LoadSpec("pets.example", doc); err != nil {
		t.Fatal(err)
	}
	calls := []call{
		{"GET", "/api/v2/pets", "limit=5&debug=1", 200, "application/json", `[{"id":1,"name":"rex","secret_note":"x"}]`, true},
		{"GET", "/api/v2/pets/7", "", 500, "text/html", `oops`, true},
		{"GET", "/api/v2/pets/8", "", 200, "application/json", `{"id":8,"name":"tom","owner":{"email":"a@b.example"}}`, false},
		{"DELETE", "/api/v2/pets/7", "", 204, "", "", true},
		{"GET", "/api/v2/admin/dump", "", 200, "application/json", `{"users":[]}`, false},
		{"GET", "/api/v1/pets", "", 200, "application/json", `[]`, false},
	}
	for i, c := range calls {
		e.Process(c.tx(i))
	}
	return e
}

func TestClassificationAgainstSpec(t *testing.T) {
	e := petsEngine(t)
	got := map[string]string{}
	for _, s := range e.Services() {
		for _, ep := range s.Endpoints {
			got[ep.Method+" "+ep.Path] = string(ep.Classification)
		}
	}
	want := map[string]string{
		"GET /api/v2/pets": "documented", "GET /api/v2/pets/{petId}": "documented",
		"DELETE /api/v2/pets/{petId}": "zombie", // deprecated and still called
		"GET /api/v2/admin/dump":      "shadow",
		"GET /api/v1/pets":            "zombie", // an older version of a documented API
		"POST /api/v2/pets":           "orphan", "GET /api/v2/health": "orphan",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %q, want %q", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %v", got)
	}
}

func TestDrift(t *testing.T) {
	e := petsEngine(t)
	d, err := e.Diff("pets.example")
	if err != nil {
		t.Fatal(err)
	}
	drift := strings.Join(d.Drift, "\n")
	for _, w := range []string{
		`GET /api/v2/pets: undocumented query parameter "debug"`,
		`GET /api/v2/pets: undocumented response field /[]/secret_note (string)`,
		`GET /api/v2/pets/{petId}: undocumented status 500`,
		`GET /api/v2/pets/{petId}: undocumented response content type text/html`,
		`GET /api/v2/pets/{petId}: 1 successful calls without the credentials the spec requires`,
	} {
		if !strings.Contains(drift, w) {
			t.Errorf("drift lacks %q:\n%s", w, drift)
		}
	}
	for _, no := range []string{"/owner/email", `"limit"`, "/[]/name"} {
		if strings.Contains(drift, no) {
			t.Errorf("documented %s reported as drift:\n%s", no, drift)
		}
	}
	if strings.Join(d.Shadow, ",") != "GET /api/v2/admin/dump" || len(d.Orphan) != 2 || len(d.Zombie) != 2 {
		t.Errorf("diff %+v", d)
	}
	if _, err := e.Diff("nowhere.example"); err == nil {
		t.Errorf("unknown service without error")
	}
}

func TestSnapshotRestore(t *testing.T) {
	e := petsEngine(t)
	b, err := e.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	e2, _ := New(Options{Config: config.Default().Analyzer})
	if err := e2.Restore(b); err != nil {
		t.Fatal(err)
	}
	if err := e2.Restore([]byte("{not json")); err == nil {
		t.Errorf("a bad checkpoint restored")
	}
	byKey := func(e *Engine) map[string]inventory.Endpoint {
		m := map[string]inventory.Endpoint{}
		for _, s := range e.Services() {
			for _, ep := range s.Endpoints {
				if ep.Classification != inventory.Orphan {
					m[ep.Key()] = ep
				}
			}
		}
		return m
	}
	a, r := byKey(e), byKey(e2)
	if len(a) != len(r) {
		t.Fatalf("%d endpoints restored of %d", len(r), len(a))
	}
	for k, ep := range a {
		got := r[k]
		if got.Calls != ep.Calls || !got.LastSeen.Equal(ep.LastSeen) || strings.Join(got.Auth, ",") != strings.Join(ep.Auth, ",") ||
			strings.Join(got.Sensitive, ",") != strings.Join(ep.Sensitive, ",") || got.Unauthenticated != ep.Unauthenticated {
			t.Errorf("%s restored as %+v, was %+v", k, got, ep)
		}
	}
	// A restored inventory keeps its templates: new calls land on them.
	e2.Process(call{"GET", "/api/v2/admin/dump", "", 200, "application/json", `{}`, false}.tx(99))
	if n := byKey(e2)["pets.example GET /api/v2/admin/dump"].Calls; n != 2 {
		t.Errorf("restored endpoint has %d calls after one more, want 2", n)
	}
}

// A scanner's storm of distinct junk paths stays within the configured
// bound per service, and the refusals are counted.
func TestJunkPathsBounded(t *testing.T) {
	cfg := config.Default().Analyzer
	cfg.MaxEndpointsPerService = 500
	e, _ := New(Options{Config: cfg})
	for i := 0; i < 200000; i++ {
		e.Process(call{"GET", fmt.Sprintf("/%s/%s.php", junkWord(i), junkWord(i*7+3)), "", 404, "text/html", "", false}.tx(i))
	}
	s := e.services["pets.example"]
	if len(s.endpoints) > 500 {
		t.Fatalf("%d endpoints for a bound of 500", len(s.endpoints))
	}
	if s.tree.Nodes() > 4*500+64 {
		t.Fatalf("template tree of %d nodes for a bound of %d", s.tree.Nodes(), 4*500)
	}
}

func junkWord(i int) string {
	const a = "bcdfghjklmnpqrstvwxz"
	var b [7]byte
	for j := range b {
		b[j] = a[i%len(a)]
		i = i/len(a) + j*31
	}
	return string(b[:])
}

// BenchmarkJunkPaths sends 1M distinct junk paths (b.N of them) to one
// service and reports the heap the inventory holds after them.
func BenchmarkJunkPaths(b *testing.B) {
	cfg := config.Default().Analyzer
	e, _ := New(Options{Config: cfg})
	txs := make([]*wire.Transaction, 1024)
	for i := range txs {
		txs[i] = call{"GET", "", "", 404, "text/html", "", false}.tx(i)
	}
	paths := make([]string, 1<<16)
	for i := range paths {
		paths[i] = fmt.Sprintf("/%s/%s/%d.bak", junkWord(i), junkWord(i*13+5), i)
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tx := txs[i&1023]
		tx.Path = paths[i&(1<<16-1)]
		e.Process(tx)
	}
	b.StopTimer()
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "heap-MiB")
	b.ReportMetric(float64(len(e.services["pets.example"].endpoints)), "endpoints")
}

// BenchmarkMemoryPerEndpoint reports the heap per endpoint of a service
// with many endpoints that each saw a few JSON calls.
func BenchmarkMemoryPerEndpoint(b *testing.B) {
	for i := 0; i < b.N; i++ {
		cfg := config.Default().Analyzer
		cfg.Templates = nil
		e, _ := New(Options{Config: cfg})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		const n = 2000
		for j := 0; j < n*3; j++ {
			c := call{"GET", fmt.Sprintf("/r%d/items", j%n), "page=1", 200, "application/json",
				`{"id":"550e8400-e29b-41d4-a716-446655440000","name":"x","email":"a@b.example","n":3,"tags":["a"]}`, true}
			e.Process(c.tx(j))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/endpoint")
		runtime.KeepAlive(e)
	}
}
