package analyzer_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiscout/apiscout/analyzer"
	"github.com/apiscout/apiscout/analyzer/detect"
	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/wire"
)

// Memory under hostile traffic (issue #9): a scanner's storm of junk
// paths on one service, and a flood of distinct clients. The analyzer's
// memory must follow its caps (analyzer.max_endpoints_per_service,
// analyzer.max_clients, the template tree's MaxNodes of four nodes per
// allowed endpoint), not the traffic, and what the caps turn away must be
// counted. `go test` runs 200,000 transactions of each; APISCOUT_MEMORY=full
// runs 1,000,000 of each with the default caps and prints the figures.

// Costs the bound allows per unit of each cap: the measured cost (about
// 6 KiB per endpoint with its maps and sketches and a few clients, 0.4
// KiB per client in the baselines and the endpoints' client sets) with
// headroom, so that only memory that grows with the traffic instead of
// the caps fails the check. (Without the caps the junk storm of the
// scaled run holds 50,000 endpoints in 313 MiB and the client flood
// 200,000 clients in 93 MiB, both over the bound.)
const (
	budgetPerEndpoint = 8 << 10
	budgetPerClient   = 1 << 10
	budgetPerNode     = 1 << 10
	budgetBase        = 32 << 20 // the detectors' fixed state, the runtime, the test
)

type memoryCase struct {
	name string
	n    int
	cfg  config.Config
	tx   func(i int, r *rand.Rand, tx *wire.Transaction)
}

type memoryResult struct {
	base, peakLive, peakInuse uint64 // bytes
	endpoints                 int
	endpointsEvicted          float64
	clientsEvicted            float64
	clients                   float64
	rate                      float64 // transactions/s, with the sampling
}

// bound is what the caps allow: endpoints of every service the case uses
// (one here), baseline clients, tree nodes.
func bound(cfg config.Config) uint64 {
	eps := uint64(cfg.Analyzer.MaxEndpointsPerService)
	return budgetBase + eps*budgetPerEndpoint + uint64(cfg.Analyzer.MaxClients)*budgetPerClient + 4*eps*budgetPerNode
}

var (
	scanner = netip.MustParseAddr("198.51.100.7")
	server  = netip.MustParseAddrPort("10.0.0.1:443")
	memT0   = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
)

// junkPath is what a scanner sends: one to six segments of random
// letters, digits and file suffixes, almost never twice the same.
func junkPath(r *rand.Rand, b []byte) string {
	const alpha = "abcdefghijklmnopqrstuvwxyz0123456789_-"
	sufs := []string{"", "", ".php", ".bak", ".env", ".git", ".asp", ".json"}
	b = b[:0]
	for range 1 + r.IntN(6) {
		b = append(b, '/')
		for range 3 + r.IntN(8) {
			b = append(b, alpha[r.IntN(len(alpha))])
		}
	}
	return string(append(b, sufs[r.IntN(len(sufs))]...))
}

// junkStorm: random paths, and on one call in four a random verb (verb
// tampering), which the template tree cannot fold: method and template
// make an endpoint, so these reach the endpoint cap.
func junkStorm(n int, cfg config.Config) memoryCase {
	var buf [64]byte
	return memoryCase{name: "junk paths", n: n, cfg: cfg, tx: func(i int, r *rand.Rand, tx *wire.Transaction) {
		tx.Host, tx.Method, tx.Status = "shop.example", "GET", 404
		tx.Path = junkPath(r, buf[:])
		if i%4 == 3 {
			verb := make([]byte, 4+r.IntN(5))
			for j := range verb {
				verb[j] = byte('A' + r.IntN(26))
			}
			tx.Method, tx.Status = string(verb), 405
		}
		tx.Client = netip.AddrPortFrom(scanner, uint16(1024+i%60000))
	}}
}

var realPaths = []string{"/api/v1/products", "/api/v1/cart", "/api/v1/orders", "/api/v1/login", "/health", "/api/v1/search", "/api/v1/users/me", "/api/v1/reviews"}

func clientFlood(n int, cfg config.Config) memoryCase {
	return memoryCase{name: "distinct clients", n: n, cfg: cfg, tx: func(i int, r *rand.Rand, tx *wire.Transaction) {
		tx.Host, tx.Method, tx.Status = "shop.example", "GET", 200
		tx.Path = realPaths[r.IntN(len(realPaths))]
		// Every transaction from a client address of its own: 16.0.0.0
		// onward, i as the address.
		tx.Client = netip.AddrPortFrom(netip.AddrFrom4([4]byte{16 + byte(i>>24), byte(i >> 16), byte(i >> 8), byte(i)}), 40000)
	}}
}

// runMemory builds the engine as the analyzer command does (detectors
// included), feeds the case and samples the live heap (after a GC) every
// n/20 transactions.
func runMemory(t *testing.T, c memoryCase) memoryResult {
	t.Helper()
	reg := prometheus.NewRegistry()
	det, err := detect.New(c.cfg.Detect, c.cfg.Analyzer, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := analyzer.New(analyzer.Options{Config: c.cfg.Analyzer, Reg: reg, Detectors: det})
	if err != nil {
		t.Fatal(err)
	}
	var res memoryResult
	sample := func() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		res.peakLive = max(res.peakLive, ms.HeapAlloc)
		res.peakInuse = max(res.peakInuse, ms.HeapInuse)
	}
	sample()
	res.base = res.peakLive
	r := rand.New(rand.NewPCG(9, uint64(c.n)))
	every := max(c.n/20, 1)
	start := time.Now()
	for i := range c.n {
		tx := &wire.Transaction{Server: server, Protocol: "http/1.1", ResponseContentType: "text/html"}
		tx.RequestStart = memT0.Add(time.Duration(i) * time.Millisecond)
		tx.RequestEnd = tx.RequestStart
		tx.ResponseStart = tx.RequestStart.Add(2 * time.Millisecond)
		c.tx(i, r, tx)
		e.Process(tx)
		if (i+1)%every == 0 {
			sample()
		}
	}
	res.rate = float64(c.n) / time.Since(start).Seconds()
	for _, s := range e.Services() {
		res.endpoints += len(s.Endpoints)
	}
	res.endpointsEvicted = metric(t, reg, "apiscout_analyzer_evicted_total", "endpoint")
	res.clientsEvicted = metric(t, reg, "apiscout_baseline_clients_evicted_total", "")
	res.clients = metric(t, reg, "apiscout_baseline_clients", "")
	runtime.KeepAlive(e)
	return res
}

// metric reads a counter or gauge (with the kind label when given).
func metric(t *testing.T, reg *prometheus.Registry, name, kind string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labelled := kind == ""
			for _, l := range m.GetLabel() {
				labelled = labelled || (l.GetName() == "kind" && l.GetValue() == kind)
			}
			if !labelled {
				continue
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func TestMemoryBoundedByCaps(t *testing.T) {
	if testing.Short() {
		t.Skip("200,000 transactions per case")
	}
	n, cfg := 200_000, config.Default()
	cfg.Analyzer.MaxEndpointsPerService, cfg.Analyzer.MaxClients = 1000, 20_000
	full := os.Getenv("APISCOUT_MEMORY") == "full"
	if full {
		n, cfg = 1_000_000, config.Default()
	}
	for _, c := range []memoryCase{junkStorm(n, cfg), clientFlood(n, cfg)} {
		t.Run(c.name, func(t *testing.T) {
			res := runMemory(t, c)
			limit := bound(c.cfg)
			a := c.cfg.Analyzer
			line := fmt.Sprintf("%s: %d transactions: peak live heap %.1f MiB (%.1f MiB before traffic; heap in use %.1f MiB; bound %.1f MiB), endpoints kept %d of %d, endpoint calls refused %.0f, baseline clients %.0f of %d, evicted %.0f, %.0f transactions/s",
				c.name, c.n, mib(res.peakLive), mib(res.base), mib(res.peakInuse), mib(limit), res.endpoints, a.MaxEndpointsPerService, res.endpointsEvicted, res.clients, a.MaxClients, res.clientsEvicted, res.rate)
			if full {
				fmt.Println(line)
			}
			t.Log(line)
			if res.peakLive > limit {
				t.Errorf("peak live heap %.1f MiB over the bound of %.1f MiB the caps allow", mib(res.peakLive), mib(limit))
			}
			if res.endpoints > a.MaxEndpointsPerService {
				t.Errorf("%d endpoints kept, cap %d", res.endpoints, a.MaxEndpointsPerService)
			}
			if res.clients > float64(a.MaxClients) {
				t.Errorf("%.0f baseline clients, cap %d", res.clients, a.MaxClients)
			}
			switch c.name {
			case "distinct clients":
				// Every client is new: past the cap each one evicts the
				// least recently seen.
				if want := float64(c.n - a.MaxClients); res.clientsEvicted != want {
					t.Errorf("%.0f clients evicted, want %.0f", res.clientsEvicted, want)
				}
			case "junk paths":
				if res.endpointsEvicted == 0 && res.endpoints >= a.MaxEndpointsPerService {
					t.Errorf("endpoint cap reached and nothing counted as refused")
				}
			}
		})
	}
}
