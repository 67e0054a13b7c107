package detect

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/wire"
)

// benchTraffic returns a Set warmed with a day of normal traffic (the
// learning period, so every detector is armed) and the next three hours
// of traffic to replay in the timed loop.
func benchTraffic(b *testing.B, payload bool) (*Set, []*inventory.Observation) {
	b.Helper()
	dc, ac := testConfig()
	if !payload {
		dc.PayloadEngine = "off"
	}
	s, err := New(dc, ac, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	g := newGen(7, nil)
	m := simStart
	for ; m.Before(simStart.Add(25 * time.Hour)); m = m.Add(time.Minute) {
		evs := g.minute(m)
		for i := range evs {
			s.Observe(g.observe(&evs[i]))
		}
	}
	var obs []*inventory.Observation
	for end := m.Add(3 * time.Hour); m.Before(end); m = m.Add(time.Minute) {
		evs := g.minute(m)
		for i := range evs {
			obs = append(obs, g.observe(&evs[i]))
		}
	}
	return s, obs
}

func shift(obs []*inventory.Observation, d time.Duration) {
	for _, o := range obs {
		o.Time = o.Time.Add(d)
		tx := o.Tx
		tx.RequestStart = tx.RequestStart.Add(d)
		tx.RequestEnd = tx.RequestEnd.Add(d)
		tx.ResponseStart = tx.ResponseStart.Add(d)
		tx.ResponseEnd = tx.ResponseEnd.Add(d)
	}
}

func runBench(b *testing.B, payload bool) {
	s, obs := benchTraffic(b, payload)
	span := obs[len(obs)-1].Time.Sub(obs[0].Time).Truncate(time.Minute) + time.Minute
	b.ReportAllocs()
	b.ResetTimer()
	for i, j := 0, 0; i < b.N; i++ {
		if j == len(obs) {
			b.StopTimer()
			shift(obs, span)
			j = 0
			b.StartTimer()
		}
		s.Observe(obs[j])
		j++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
}

// BenchmarkObserve: transactions through baselines and every detector
// except the attack-payload engine, on one core.
func BenchmarkObserve(b *testing.B) { runBench(b, false) }

// BenchmarkObserveWithPayloadEngine: the same with Coraza + CRS on (the
// simulated traffic sends about 1.6% of requests through its prefilter).
func BenchmarkObserveWithPayloadEngine(b *testing.B) { runBench(b, true) }

// BenchmarkPayloadInspect: the cost of one Coraza + CRS inspection of a
// request that passed the prefilter, clean or attack.
func BenchmarkPayloadInspect(b *testing.B) {
	pe, err := newPayloadEngine(0, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, query string }{
		{"clean", "q=red+shoes+or+boots"},
		{"sqli", "q=1%27%20OR%20%271%27=%271"},
	} {
		tx := &wire.Transaction{Method: "GET", Host: "shop.example", Path: "/search", Query: c.query,
			Version: "HTTP/1.1", RequestHeaders: []wire.Header{{Name: "Host", Value: "shop.example"}}}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				pe.inspect(tx)
			}
		})
	}
}

// BenchmarkPrefilter: the cost every request with a query pays before
// the engine.
func BenchmarkPrefilter(b *testing.B) {
	tx := &wire.Transaction{Path: "/products", Query: "page=3&sort=price&category=garden%20chairs"}
	var buf []byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		suspicious(tx, &buf)
	}
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkMemoryPerEndpoint reports the heap held per learned endpoint
// (a day of traffic each: rhythm, latency sketch, sizes, fields, kinds).
func BenchmarkMemoryPerEndpoint(b *testing.B) {
	const n = 2000
	for i := 0; i < b.N; i++ {
		dc, ac := testConfig()
		dc.PayloadEngine = "off"
		before := heap()
		s, _ := New(dc, ac, nil, nil)
		t := simStart
		for k := 0; k < 24*60; k++ { // one call per endpoint and minute, for a day
			for e := 0; e < n; e++ {
				obs := benchObs(t.Add(time.Duration(e)*time.Millisecond), "/ep"+fmt.Sprint(e), "c1", "")
				s.Observe(obs)
			}
			t = t.Add(time.Minute)
		}
		after := heap()
		b.ReportMetric(float64(after-before)/n, "B/endpoint")
		runtime.KeepAlive(s)
	}
}

// BenchmarkMemoryPerClient reports the heap held per tracked client that
// touched ten objects on one endpoint.
func BenchmarkMemoryPerClient(b *testing.B) {
	const n = 20000
	for i := 0; i < b.N; i++ {
		dc, ac := testConfig()
		dc.PayloadEngine = "off"
		s, _ := New(dc, ac, nil, nil)
		t := simStart
		s.Observe(benchObs(t, "/orders/{orderId}", "warm", "1"))
		before := heap()
		for c := 0; c < n; c++ {
			for k := 0; k < 10; k++ {
				s.Observe(benchObs(t, "/orders/{orderId}", "jwt:user-"+fmt.Sprint(c), fmt.Sprint(c*10+k)))
			}
		}
		after := heap()
		b.ReportMetric(float64(after-before)/n, "B/client")
		runtime.KeepAlive(s)
	}
}

func benchObs(t time.Time, path, identity, id string) *inventory.Observation {
	tx := &wire.Transaction{RequestStart: t, RequestEnd: t, ResponseStart: t.Add(20 * time.Millisecond),
		Method: "GET", Host: "h", Path: path, Status: 200, ResponseBodyLen: 900}
	o := &inventory.Observation{Tx: tx, Time: t, Service: "h", Method: "GET", Path: path,
		Classification: inventory.Documented, Identity: identity, Auth: "jwt", Roles: []string{"user"}}
	if id != "" {
		o.PathParams = map[string]string{"orderId": id}
	}
	return o
}
