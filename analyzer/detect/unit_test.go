package detect

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/baseline"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/wire"
)

func TestNewRejectsUnknownNames(t *testing.T) {
	dc, ac := testConfig()
	dc.PayloadEngine = "off"
	ac.DisabledDetectors = []string{"rate_spikes"}
	if _, err := New(dc, ac, nil, nil); err == nil || !strings.Contains(err.Error(), "analyzer.disabled_detectors") {
		t.Fatalf("unknown disabled detector: %v", err)
	}
	ac.DisabledDetectors = nil
	dc.Severity = map[string]string{"nope": "high"}
	if _, err := New(dc, ac, nil, nil); err == nil || !strings.Contains(err.Error(), "detect.severity") {
		t.Fatalf("unknown severity override: %v", err)
	}
	dc.Severity = nil
	dc.RateDropFactor = 2
	if _, err := New(dc, ac, nil, nil); err == nil || !strings.Contains(err.Error(), "detect.rate_drop_factor") {
		t.Fatalf("bad factor: %v", err)
	}
}

// steady feeds perMin calls a minute to GET /x from twenty clients.
func steady(s *Set, from time.Time, d time.Duration, perMin int, out *[]anomaly.Anomaly) {
	for m := from; m.Before(from.Add(d)); m = m.Add(time.Minute) {
		for i := 0; i < perMin; i++ {
			t := m.Add(time.Duration(i) * time.Minute / time.Duration(perMin))
			tx := &wire.Transaction{RequestStart: t, RequestEnd: t, ResponseStart: t.Add(20 * time.Millisecond),
				Method: "GET", Host: "h", Path: "/x", Status: 200, ResponseBodyLen: 500}
			o := &inventory.Observation{Tx: tx, Time: t, Service: "h", Method: "GET", Path: "/x",
				Classification: inventory.Documented, Identity: "ip:10.0.0." + string(rune('a'+i%20)), Auth: "none"}
			*out = append(*out, s.Observe(o)...)
		}
	}
}

// A three-hour spike is one incident, kept open while it lasts, and the
// baseline does not learn it: afterwards the expected rate is still the
// old one.
func TestLongAttackIsOneIncidentAndNotLearned(t *testing.T) {
	dc, ac := testConfig()
	dc.PayloadEngine = "off"
	s, err := New(dc, ac, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []anomaly.Anomaly
	steady(s, simStart, 26*time.Hour, 20, &out)
	steady(s, simStart.Add(26*time.Hour), 3*time.Hour, 200, &out)
	steady(s, simStart.Add(29*time.Hour), 2*time.Hour, 20, &out)
	out = append(out, s.Close(simStart.Add(31*time.Hour))...)
	var opened, closed int
	for _, a := range out {
		if a.Type != anomaly.TypeRateSpike {
			t.Errorf("unexpected %s %s at %s", a.Event, a.Type, a.Updated)
			continue
		}
		switch a.Event {
		case anomaly.EventOpened:
			opened++
		case anomaly.EventClosed:
			closed++
			if a.End.Sub(a.Start) < 179*time.Minute || a.Count < 180 {
				t.Errorf("incident spans %s with %d events, want the whole 3 hours", a.End.Sub(a.Start), a.Count)
			}
		}
	}
	if opened != 1 || closed != 1 {
		t.Fatalf("%d opened, %d closed; want one incident", opened, closed)
	}
	ep := s.Baselines().Endpoint(baseline.EndpointKey{Service: "h", Method: "GET", Path: "/x"})
	if e := ep.Rate.Expected(simStart.Add(27 * time.Hour)); e > 25 {
		t.Fatalf("expected rate %.1f after the attack: the attack was learned", e)
	}
}

func TestDisabledDetectorAndSeverityOverride(t *testing.T) {
	dc, ac := testConfig()
	dc.PayloadEngine = "off"
	dc.Severity = map[string]string{"rate_spike": "critical"}
	run := func(disabled []string) []anomaly.Anomaly {
		ac.DisabledDetectors = disabled
		s, err := New(dc, ac, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out []anomaly.Anomaly
		steady(s, simStart, 26*time.Hour, 20, &out)
		steady(s, simStart.Add(26*time.Hour), 10*time.Minute, 200, &out)
		return append(out, s.Close(simStart.Add(27*time.Hour))...)
	}
	on := run(nil)
	if len(on) == 0 || on[0].Severity != anomaly.Critical || on[0].OWASP != "API4:2023" {
		t.Fatalf("spike with override: %+v", on)
	}
	if off := run([]string{"rate_spike"}); len(off) != 0 {
		t.Fatalf("disabled detector still fired: %+v", off)
	}
}

func TestParseJWT(t *testing.T) {
	exp := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	alg, e := parseJWT(jwtFor("u", "none", exp))
	if alg != "none" || !e.Equal(exp) {
		t.Fatalf("alg %q exp %s", alg, e)
	}
	// The sensor's redacted form keeps header and claims only.
	raw := strings.TrimPrefix(jwtFor("u", "none", exp), "Bearer ")
	redacted := "Bearer fp:0123456789abcdef jwt:" + raw[:strings.LastIndexByte(raw, '.')]
	if alg, e := parseJWT(redacted); alg != "none" || !e.Equal(exp) {
		t.Fatalf("redacted form: alg %q exp %s", alg, e)
	}
	for _, bad := range []string{"", "Basic dTpw", "Bearer a.b", "Bearer fp:0123456789abcdef", "Bearer !!!.???.x", "Bearer " + base64.RawURLEncoding.EncodeToString([]byte("{")) + ".e30.x"} {
		if alg, e := parseJWT(bad); alg != "" || !e.IsZero() {
			t.Errorf("%q: alg %q exp %s", bad, alg, e)
		}
	}
}

func FuzzParseJWT(f *testing.F) {
	f.Add(jwtFor("u", "HS256", farFuture))
	f.Add("Bearer e30.e30.")
	f.Add("bearer x.y.z")
	f.Fuzz(func(t *testing.T, s string) {
		alg, exp := parseJWT(s)
		_ = alg
		_ = exp
	})
}

func TestPrefilter(t *testing.T) {
	var buf []byte
	for q, want := range map[string]bool{
		"page=2&sort=price":             false,
		"q=red+shoes":                   false,
		"q=1%27+OR+1=1":                 true,
		"q=%3Cscript%3E":                true,
		"f=..%2F..%2Fetc%2Fpasswd":      true,
		"h=x%3Bid":                      true,
		"url=http%3A%2F%2F169.254.1.1/": true,
		"q=cats+or+dogs":                true, // a word the engine must judge
	} {
		tx := &wire.Transaction{Path: "/s", Query: q}
		if got := suspicious(tx, &buf); got != want {
			t.Errorf("%q: %v, want %v", q, got, want)
		}
	}
	json := &wire.Transaction{Path: "/o", RequestContentType: "application/json", RequestBody: []byte(`{"a":"b","n":1}`)}
	if suspicious(json, &buf) {
		t.Error("plain JSON body is not suspicious")
	}
	json.RequestBody = []byte(`{"a":"x' or '1'='1"}`)
	if !suspicious(json, &buf) {
		t.Error("quote in a JSON value is suspicious")
	}
}

func FuzzPrefilter(f *testing.F) {
	f.Add("/a", "q=%2", []byte("x=%zz"))
	f.Add("/..", "", []byte(`{"a":1}`))
	f.Fuzz(func(t *testing.T, path, query string, body []byte) {
		var buf []byte
		suspicious(&wire.Transaction{Path: path, Query: query, RequestBody: body}, &buf)
	})
}

func TestPayloadEngineCategories(t *testing.T) {
	pe, err := newPayloadEngine(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]string{
		"q=1%27%20OR%20%271%27=%271":                 "sqli",
		"q=%3Cscript%3Ealert(1)%3C/script%3E":        "xss",
		"q=../../../../etc/passwd":                   "path_traversal",
		"q=x;cat%20/etc/passwd":                      "command_injection",
		"q=http://169.254.169.254/latest/meta-data/": "ssrf",
		"q=red+shoes+or+boots":                       "",
	} {
		tx := &wire.Transaction{Method: "GET", Host: "h", Path: "/search", Query: q, Version: "HTTP/1.1",
			RequestHeaders: []wire.Header{{Name: "Host", Value: "h"}, {Name: "Accept", Value: "*/*"}, {Name: "User-Agent", Value: "t"}}}
		cats, _, inspected := pe.inspect(tx)
		if !inspected {
			t.Errorf("%q not inspected", q)
			continue
		}
		got := strings.Join(cats, ",")
		if (want == "" && got != "") || !strings.Contains(got, want) {
			t.Errorf("%q: categories %q, want %q", q, got, want)
		}
	}
}

// Kernel drops reported by heartbeats make the sensor blind: learning
// stops and an incident says so.
func TestHeartbeatKernelDrops(t *testing.T) {
	dc, ac := testConfig()
	dc.PayloadEngine = "off"
	s, err := New(dc, ac, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []anomaly.Anomaly
	hb := wire.Heartbeat{SensorID: "s1"}
	at := simStart
	beat := func(packets, drops uint64) {
		hb.Packets += packets
		hb.KernelDrops += drops
		hb.Time = at
		out = append(out, s.Heartbeat(&hb)...)
	}
	for i := 0; i < 30; i++ { // 30 minutes, healthy
		steady(s, at, time.Minute, 20, &out)
		at = at.Add(time.Minute)
		beat(5000, 0)
	}
	if len(out) != 0 {
		t.Fatalf("healthy sensor raised %+v", out)
	}
	for i := 0; i < 3; i++ { // 20% of packets dropped
		steady(s, at, time.Minute, 20, &out)
		at = at.Add(time.Minute)
		beat(4000, 1000)
	}
	steady(s, at, time.Minute, 20, &out)
	var found bool
	for _, a := range out {
		if a.Type == anomaly.TypeSensorBlind && a.Event == anomaly.EventOpened && a.Details["reason"] == "kernel_drops" {
			found = true
		}
	}
	if !found || !s.Baselines().Blind {
		t.Fatalf("kernel drops not reported (blind=%v): %+v", s.Baselines().Blind, out)
	}
}

// Several Sets (one per partition) share one registry.
func TestSetsShareRegistry(t *testing.T) {
	dc, ac := testConfig()
	reg := prometheus.NewRegistry()
	for i := 0; i < 2; i++ {
		if _, err := New(dc, ac, nil, reg); err != nil {
			t.Fatal(err)
		}
	}
}
