package minutes

import (
	"math"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/storage/storagetest"
	"github.com/apiscout/apiscout/wire"
)

var start = time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)

// router maps a transaction to its endpoint the way the analyzer's
// templates would, from the generated endpoints.
func router(eps []inventory.Endpoint) func(*wire.Transaction) *inventory.Endpoint {
	type route struct {
		re *regexp.Regexp
		e  *inventory.Endpoint
	}
	var routes []route
	for i := range eps {
		e := &eps[i]
		re := regexp.MustCompile(`^` + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(e.Path), `[^/]+`) + `$`)
		routes = append(routes, route{re, e})
	}
	return func(t *wire.Transaction) *inventory.Endpoint {
		for _, r := range routes {
			if r.e.Service == t.Host && r.e.Method == t.Method && r.re.MatchString(t.Path) {
				return r.e
			}
		}
		return nil
	}
}

func TestMinutesMatchTheGenerator(t *testing.T) {
	d := storagetest.Generate(11, start, 15, 120)
	route := router(d.Endpoints)
	a := New(30 * time.Second)
	var got []storage.EndpointMinute
	latencies := map[string][]float64{}
	for i, tx := range d.Transactions {
		e := route(tx)
		if e == nil {
			t.Fatalf("transaction %s %s %s matches no endpoint", tx.Host, tx.Method, tx.Path)
		}
		if !a.Add(e.Service, e.Method, e.Path, tx, slices.Contains(e.Auth, "none")) {
			t.Fatalf("transaction %d counted late", i)
		}
		if us := storage.TransactionDuration(tx); us > 0 {
			k := e.Key() + tx.RequestStart.Truncate(time.Minute).String()
			latencies[k] = append(latencies[k], float64(us)/1000)
		}
		if i%500 == 0 {
			got = append(got, a.Complete(tx.RequestStart)...)
		}
	}
	got = append(got, a.Drain()...)
	want := slices.Clone(d.Stats)
	sortMinutes(want)
	sortMinutes(got)
	if len(got) != len(want) {
		t.Fatalf("%d minutes, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		k := w.Service + " " + w.Method + " " + w.Path + w.Minute.String()
		lat := latencies[k]
		sort.Float64s(lat)
		// Exact counts; latencies within the sketch's accuracy of the
		// value at the quantile's rank (either neighbour).
		gq, wq := g, w
		gq.LatencyP50, gq.LatencyP90, gq.LatencyP95, gq.LatencyP99 = 0, 0, 0, 0
		wq.LatencyP50, wq.LatencyP90, wq.LatencyP95, wq.LatencyP99 = 0, 0, 0, 0
		if gq.LatencyMax != wq.LatencyMax && math.Abs(gq.LatencyMax-wq.LatencyMax) > 1e-9 {
			t.Errorf("%s: max %v, want %v", k, gq.LatencyMax, wq.LatencyMax)
		}
		gq.LatencyMax, wq.LatencyMax = 0, 0
		if !equalMinute(gq, wq) {
			t.Errorf("%s:\n got %+v\nwant %+v", k, gq, wq)
		}
		for _, c := range []struct {
			q   float64
			got float64
		}{{.5, g.LatencyP50}, {.9, g.LatencyP90}, {.95, g.LatencyP95}, {.99, g.LatencyP99}} {
			if len(lat) == 0 {
				if c.got != 0 {
					t.Errorf("%s: p%v %v without latencies", k, c.q*100, c.got)
				}
				continue
			}
			r := c.q * float64(len(lat)-1)
			lo, hi := lat[int(math.Floor(r))], lat[int(math.Ceil(r))]
			if c.got < lo*(1-RelativeAccuracy)-1e-9 || c.got > hi*(1+RelativeAccuracy)+1e-9 {
				t.Errorf("%s: p%v = %v, want within 1%% of [%v, %v]", k, c.q*100, c.got, lo, hi)
			}
		}
	}
}

func equalMinute(a, b storage.EndpointMinute) bool {
	if len(a.StatusCodes) == 0 && len(b.StatusCodes) == 0 {
		a.StatusCodes, b.StatusCodes = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

func TestLateTransactionsAreCountedNotAdded(t *testing.T) {
	a := New(10 * time.Second)
	tx := func(at time.Time, status int) *wire.Transaction {
		return &wire.Transaction{RequestStart: at, ResponseEnd: at.Add(5 * time.Millisecond), Status: status}
	}
	for _, tc := range []struct {
		at     time.Time
		status int
		ok     bool
	}{
		{start.Add(10 * time.Second), 200, true},
		{start.Add(70 * time.Second), 404, true},
		{start.Add(5 * time.Second), 500, true}, // out of order, within lateness
	} {
		if got := a.Add("s", "GET", "/x", tx(tc.at, tc.status), false); got != tc.ok {
			t.Fatalf("Add at %v: %v", tc.at, got)
		}
	}
	// Packet time 1m10s: minute 0 ended 10s ago, minute 1 is open.
	out := a.Complete(start.Add(70 * time.Second))
	if len(out) != 1 || out[0].Calls != 2 || out[0].Errors5xx != 1 || !out[0].Minute.Equal(start) {
		t.Fatalf("complete minutes: %+v", out)
	}
	if a.Add("s", "GET", "/x", tx(start.Add(59*time.Second), 200), false) || a.Late() != 1 {
		t.Fatalf("a transaction of a handed-out minute was added (late %d)", a.Late())
	}
	rest := a.Drain()
	if len(rest) != 1 || rest[0].Calls != 1 || rest[0].Errors4xx != 1 {
		t.Fatalf("drained: %+v", rest)
	}
}

func BenchmarkAdd(b *testing.B) {
	d := storagetest.Generate(12, start, 5, 200)
	route := router(d.Endpoints)
	eps := make([]*inventory.Endpoint, len(d.Transactions))
	for i, tx := range d.Transactions {
		eps[i] = route(tx)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a := New(time.Minute)
		for j, tx := range d.Transactions {
			a.Add(eps[j].Service, eps[j].Method, eps[j].Path, tx, false)
		}
		a.Drain()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(d.Transactions)), "ns/tx")
}
