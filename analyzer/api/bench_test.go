package api

import (
	"net/http"
	"testing"
)

// The inventory page on 10,000 endpoints: filter, sort and page on the
// server, scrub and encode one page.
func BenchmarkInventoryPage(b *testing.B) {
	s, _ := newTestServer(b, testConfig(), bigMemory(10000))
	h := s.Handler()
	for _, c := range []struct{ name, target string }{
		{"all-by-risk", "/api/v1/endpoints?limit=50"},
		{"shadow-by-calls", "/api/v1/endpoints?class=shadow&sort=-calls&limit=50&offset=200"},
		{"search", "/api/v1/endpoints?q=r99&limit=50"},
		{"summary", "/api/v1/summary"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if w := do(h, req{method: "GET", target: c.target, token: readToken}); w.Code != http.StatusOK {
					b.Fatal(w.Code, w.Body.String())
				}
			}
		})
	}
}

func TestPagingCoversEveryEndpointOnce(t *testing.T) {
	s, _ := newTestServer(t, testConfig(), bigMemory(1234))
	seen := map[string]bool{}
	for off := 0; ; off += 100 {
		w := do(s.Handler(), req{method: "GET", target: "/api/v1/endpoints?sort=-calls&limit=100&offset=" + itoa(off), token: readToken})
		var page struct {
			Total int
			Items []struct{ ID string }
		}
		decode(t, w.Body.Bytes(), &page)
		if page.Total != 1234 {
			t.Fatalf("total %d", page.Total)
		}
		if len(page.Items) == 0 {
			break
		}
		for _, it := range page.Items {
			if seen[it.ID] {
				t.Fatalf("%s on two pages", it.ID)
			}
			seen[it.ID] = true
		}
	}
	if len(seen) != 1234 {
		t.Errorf("paged through %d endpoints, want 1234", len(seen))
	}
}
