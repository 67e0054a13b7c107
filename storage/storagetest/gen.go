// Package storagetest generates realistic analyzer output (services,
// endpoints, incidents, per-minute statistics, transactions, heartbeats)
// and holds the read/write suite every store must pass, so that the
// ClickHouse and embedded stores are held to the same contract. Data is
// derived from a seed: the expected answers of the suite are computed from
// the generated records, never written down by hand.
package storagetest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/wire"
)

// Data is one analyzer run's output.
type Data struct {
	Services     []inventory.Service
	Endpoints    []inventory.Endpoint // latest state of each
	Earlier      []inventory.Endpoint // an older state of each (fewer calls)
	Anomalies    []anomaly.Anomaly    // latest state of each incident
	AnomalyOpen  []anomaly.Anomaly    // earlier open updates of the same incidents
	Stats        []storage.EndpointMinute
	Transactions []*wire.Transaction
	Heartbeats   []wire.Heartbeat
	Start, End   time.Time
}

type endpointSpec struct {
	service, method, path string
	class                 inventory.Classification
	auth                  []string
	sensitive             []string
	weight                int
	errRate               float64
	latencyMs             float64
}

var serviceSpecs = []struct {
	host      string
	endpoints []endpointSpec
}{
	{"api.shop.example", []endpointSpec{
		{"", "GET", "/v1/products", inventory.Documented, []string{"none"}, nil, 30, 0.01, 12},
		{"", "GET", "/v1/products/{productId}", inventory.Documented, []string{"none"}, nil, 25, 0.03, 9},
		{"", "POST", "/v1/cart/{cartId}/items", inventory.Documented, []string{"jwt"}, nil, 8, 0.02, 25},
		{"", "GET", "/v1/users/{userId}", inventory.Documented, []string{"jwt"}, []string{"email", "phone"}, 10, 0.02, 18},
		{"", "GET", "/v1/internal/debug", inventory.Shadow, []string{"none"}, []string{"secret"}, 1, 0.0, 3},
		{"", "GET", "/v0/orders/{orderId}", inventory.Zombie, []string{"apikey"}, []string{"card"}, 2, 0.1, 40},
	}},
	{"auth.example", []endpointSpec{
		{"", "POST", "/oauth/token", inventory.Documented, []string{"basic"}, []string{"secret"}, 12, 0.08, 35},
		{"", "POST", "/login", inventory.Documented, []string{"none"}, []string{"email"}, 6, 0.15, 60},
		{"", "GET", "/.well-known/jwks.json", inventory.Shadow, []string{"none"}, nil, 3, 0, 2},
	}},
	{"payments.internal", []endpointSpec{
		{"", "POST", "/charges", inventory.Documented, []string{"bearer"}, []string{"card", "iban"}, 5, 0.05, 120},
		{"", "GET", "/charges/{chargeId}", inventory.Orphan, []string{"bearer"}, []string{"card"}, 4, 0.02, 30},
		{"", "DELETE", "/charges/{chargeId}", inventory.Shadow, []string{"none"}, nil, 1, 0.5, 15},
	}},
	{"legacy.example:8080", []endpointSpec{
		{"", "GET", "/cgi-bin/status", inventory.Zombie, []string{"none"}, nil, 2, 0.3, 80},
	}},
}

func fillPath(r *rand.Rand, tmpl string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(tmpl, '{')
		if i < 0 {
			b.WriteString(tmpl)
			return b.String()
		}
		j := strings.IndexByte(tmpl[i:], '}')
		b.WriteString(tmpl[:i])
		fmt.Fprintf(&b, "%d", 1000+r.IntN(9000))
		tmpl = tmpl[i+j+1:]
	}
}

// Generate builds minutes of traffic starting at start (truncated to the
// minute), about perMinute transactions a minute, from seed.
func Generate(seed uint64, start time.Time, minutes, perMinute int) *Data {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	start = start.UTC().Truncate(time.Minute)
	d := &Data{Start: start, End: start.Add(time.Duration(minutes) * time.Minute)}

	var specs []endpointSpec
	weights := 0
	for _, s := range serviceSpecs {
		for _, e := range s.endpoints {
			e.service = s.host
			specs = append(specs, e)
			weights += e.weight
		}
	}
	type agg struct {
		ep        inventory.Endpoint
		latencies map[int64][]float64
		minutes   map[int64]*storage.EndpointMinute
	}
	aggs := make([]*agg, len(specs))
	for i, sp := range specs {
		aggs[i] = &agg{
			ep: inventory.Endpoint{
				Service: sp.service, Method: sp.method, Path: sp.path, Protocol: "http/1.1",
				Classification: sp.class, Auth: sp.auth, Sensitive: sp.sensitive,
				Unauthenticated: slices.Contains(sp.auth, "none") && len(sp.sensitive) > 0,
				Findings:        nil,
				Detail:          map[string]any{"params": strings.Count(sp.path, "{"), "spec_operation": sp.method + " " + sp.path},
			},
			latencies: map[int64][]float64{},
			minutes:   map[int64]*storage.EndpointMinute{},
		}
		if sp.class != inventory.Documented {
			aggs[i].ep.Findings = []string{string(sp.class) + "_endpoint"}
		}
	}
	var connID uint64
	for m := 0; m < minutes; m++ {
		minute := start.Add(time.Duration(m) * time.Minute)
		// A burst in the middle third, so spikes have something to show.
		n := perMinute
		if m > minutes/3 && m < minutes/3+3 {
			n *= 3
		}
		for k := 0; k < n; k++ {
			pick := r.IntN(weights)
			idx := 0
			for ; idx < len(specs); idx++ {
				pick -= specs[idx].weight
				if pick < 0 {
					break
				}
			}
			sp, a := specs[idx], aggs[idx]
			connID++
			ts := minute.Add(time.Duration(r.Int64N(int64(time.Minute))))
			lat := sp.latencyMs * (0.5 + r.ExpFloat64())
			status := 200
			if sp.method == "POST" {
				status = 201
			}
			switch x := r.Float64(); {
			case x < sp.errRate/2:
				status = 500 + r.IntN(4)
			case x < sp.errRate:
				status = []int{400, 401, 403, 404, 429}[r.IntN(5)]
			}
			noResp := r.IntN(500) == 0
			t := &wire.Transaction{
				SensorID: "sensor-" + string(rune('a'+int(connID%2))), Seq: connID, ConnID: connID, Index: uint32(r.IntN(3)),
				Client:       netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(r.IntN(4)), byte(1 + r.IntN(200))}), uint16(30000+r.IntN(30000))),
				Server:       netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, 0, byte(1 + idx)}), 443),
				Protocol:     "http/1.1",
				RequestStart: ts, RequestEnd: ts.Add(200 * time.Microsecond),
				Method: sp.method, Host: sp.service, Path: fillPath(r, sp.path), Version: "HTTP/1.1",
				RequestHeaders:     []wire.Header{{Name: "Host", Value: sp.service}, {Name: "User-Agent", Value: "gen/1"}},
				RequestBodyWireLen: int64(r.IntN(400)), RequestBodyLen: 0,
				RequestContentType: "application/json",
				RequestBody:        []byte(`{"q":1}`),
			}
			if r.IntN(4) == 0 {
				t.Query = "page=" + fmt.Sprint(r.IntN(10))
			}
			if noResp {
				t.Flags |= wire.FlagNoResponse
				status = 0
			} else {
				t.Status = status
				t.Reason = "OK"
				t.ResponseStart = ts.Add(time.Duration(lat*0.8*1e6) * time.Nanosecond)
				t.ResponseEnd = ts.Add(time.Duration(lat*1e6) * time.Nanosecond)
				t.ResponseHeaders = []wire.Header{{Name: "Content-Type", Value: "application/json"}}
				t.ResponseBodyWireLen = int64(100 + r.IntN(4000))
				t.ResponseBodyLen = t.ResponseBodyWireLen
				t.ResponseContentType = "application/json"
				t.ResponseBody = []byte(`{"ok":true}`)
			}
			d.Transactions = append(d.Transactions, t)

			e := &a.ep
			e.Calls++
			if e.FirstSeen.IsZero() || ts.Before(e.FirstSeen) {
				e.FirstSeen = ts
			}
			if ts.After(e.LastSeen) {
				e.LastSeen = ts
			}
			key := minute.Unix()
			st := a.minutes[key]
			if st == nil {
				st = &storage.EndpointMinute{Service: sp.service, Method: sp.method, Path: sp.path, Minute: minute, StatusCodes: map[uint16]uint64{}}
				a.minutes[key] = st
			}
			st.Calls++
			st.RequestBytes += uint64(t.RequestBodyWireLen)
			st.ResponseBytes += uint64(t.ResponseBodyWireLen)
			if slices.Contains(sp.auth, "none") {
				st.Unauthenticated++
			}
			switch {
			case noResp:
				st.NoResponse++
			case status >= 500:
				st.Errors5xx++
			case status >= 400:
				st.Errors4xx++
			}
			if !noResp {
				st.StatusCodes[uint16(status)]++
				a.latencies[key] = append(a.latencies[key], float64(TransactionMicros(t))/1000)
			}
		}
	}
	svcIdx := map[string]int{}
	for _, a := range aggs {
		if a.ep.Calls == 0 {
			continue
		}
		e := a.ep
		e.RiskScore = float64(len(e.Sensitive))*2 + map[inventory.Classification]float64{inventory.Shadow: 3, inventory.Zombie: 4}[e.Classification]
		if e.Unauthenticated {
			e.RiskScore += 3
		}
		d.Endpoints = append(d.Endpoints, e)
		old := e
		old.Calls = e.Calls / 2
		old.LastSeen = e.FirstSeen.Add(e.LastSeen.Sub(e.FirstSeen) / 2)
		old.Classification = inventory.Documented // reclassified later
		old.RiskScore = 0
		d.Earlier = append(d.Earlier, old)
		i, ok := svcIdx[e.Service]
		if !ok {
			i = len(d.Services)
			svcIdx[e.Service] = i
			d.Services = append(d.Services, inventory.Service{
				Host: e.Service, FirstSeen: e.FirstSeen, LastSeen: e.LastSeen,
				Addresses: []string{"10.2.0." + fmt.Sprint(1+len(d.Services)) + ":443"},
			})
		}
		s := &d.Services[i]
		s.Calls += e.Calls
		s.RiskScore = max(s.RiskScore, e.RiskScore)
		if e.FirstSeen.Before(s.FirstSeen) {
			s.FirstSeen = e.FirstSeen
		}
		if e.LastSeen.After(s.LastSeen) {
			s.LastSeen = e.LastSeen
		}
		if s.Host == "api.shop.example" {
			s.Spec = "shop-openapi.yaml"
		}
		keys := make([]int64, 0, len(a.minutes))
		for k := range a.minutes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			st := a.minutes[k]
			lat := a.latencies[k]
			sort.Float64s(lat)
			st.LatencyP50, st.LatencyP90, st.LatencyP95, st.LatencyP99 = quantile(lat, .5), quantile(lat, .9), quantile(lat, .95), quantile(lat, .99)
			if len(lat) > 0 {
				st.LatencyMax = lat[len(lat)-1]
			}
			if len(st.StatusCodes) == 0 {
				st.StatusCodes = nil
			}
			d.Stats = append(d.Stats, *st)
		}
	}
	d.Anomalies, d.AnomalyOpen = anomalies(r, d)
	for s := 0; s < 2; s++ {
		id := "sensor-" + string(rune('a'+s))
		var h wire.Heartbeat
		for m := 0; m < minutes*6; m++ {
			h = wire.Heartbeat{
				SensorID: id, Seq: uint64(m + 1), Time: start.Add(time.Duration(m) * 10 * time.Second),
				Packets: h.Packets + uint64(5000+r.IntN(1000)), Bytes: h.Bytes + uint64(4e6+r.IntN(1e6)),
				KernelDrops: h.KernelDrops + uint64(r.IntN(3)), AckedBytes: h.AckedBytes + 4e6,
				CaptureLossBytes: h.CaptureLossBytes + uint64(r.IntN(2000)), Transactions: h.Transactions + uint64(perMinute/12),
				Dropped: map[string]uint64{"queue_full": uint64(r.IntN(2))},
			}
			d.Heartbeats = append(d.Heartbeats, h)
		}
	}
	return d
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}

// TransactionMicros is request start to response end.
func TransactionMicros(t *wire.Transaction) int64 {
	if t.ResponseEnd.IsZero() {
		return 0
	}
	return int64(t.ResponseEnd.Sub(t.RequestStart) / time.Microsecond)
}

func anomalies(r *rand.Rand, d *Data) (final, open []anomaly.Anomaly) {
	types := []struct {
		typ, owasp string
		sev        anomaly.Severity
	}{
		{"rate_spike", "API4:2023", anomaly.Medium},
		{"error_burst", "", anomaly.High},
		{"bola_enumeration", "API1:2023", anomaly.Critical},
		{"sensitive_data_exposure", "API3:2023", anomaly.High},
		{"unauthenticated_access", "API2:2023", anomaly.Low},
	}
	span := d.End.Sub(d.Start)
	for i := 0; i < 12; i++ {
		ty := types[i%len(types)]
		e := d.Endpoints[r.IntN(len(d.Endpoints))]
		start := d.Start.Add(time.Duration(r.Int64N(int64(span * 3 / 4)))).Truncate(time.Millisecond)
		a := anomaly.Anomaly{
			ID: fmt.Sprintf("inc-%03d-%s", i, ty.typ), Type: ty.typ, Severity: ty.sev, OWASP: ty.owasp,
			Host: e.Service, Method: e.Method, Path: e.Path, Client: "10.1.0." + fmt.Sprint(1+r.IntN(200)),
			Start: start, End: start.Add(time.Minute), Observed: float64(50 + r.IntN(500)), Expected: 20,
			Summary: ty.typ + " on " + e.Method + " " + e.Path, Evidence: []string{"ev-" + fmt.Sprint(i)},
			State: anomaly.Open, Count: 3,
		}
		open = append(open, a)
		if i%3 != 0 { // two in three are over
			a.End = start.Add(time.Duration(2+r.IntN(5)) * time.Minute)
			a.State = anomaly.Closed
		} else {
			a.End = start.Add(3 * time.Minute)
		}
		a.Count += int64(r.IntN(40))
		final = append(final, a)
	}
	return final, open
}
