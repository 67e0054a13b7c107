package simulate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func capture(t *testing.T, o Options) ([]byte, []*Exchange, *Result) {
	t.Helper()
	var buf bytes.Buffer
	pw, err := NewPcapWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var exs []*Exchange
	res, err := Run(o, func(ex *Exchange) error {
		exs = append(exs, ex)
		return pw.Add(ex)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), exs, res
}

func TestDeterministic(t *testing.T) {
	o := Options{Scenario: "demo", Seed: 3, Duration: 5 * time.Minute}
	a, _, _ := capture(t, o)
	b, _, _ := capture(t, o)
	if sha256.Sum256(a) != sha256.Sum256(b) {
		t.Fatal("the same seed gave different captures")
	}
	o.Seed = 4
	c, _, _ := capture(t, o)
	if bytes.Equal(a, c) {
		t.Fatal("another seed gave the same capture")
	}
}

// The capture holds exactly the generated messages, in time order.
func TestCaptureCarriesTheExchanges(t *testing.T) {
	data, exs, _ := capture(t, Options{Scenario: "demo", Seed: 1, Duration: 3 * time.Minute})
	r, err := pcapgo.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var last time.Time
	var payload int
	for {
		d, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		if ci.Timestamp.Before(last) {
			t.Fatalf("packet at %v after one at %v", ci.Timestamp, last)
		}
		last = ci.Timestamp
		p := gopacket.NewPacket(d, layers.LayerTypeEthernet, gopacket.NoCopy)
		if tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
			payload += len(tcp.Payload)
		}
	}
	want := 0
	for _, ex := range exs {
		want += len(RequestBytes(ex)) + len(ResponseBytes(ex))
	}
	if payload != want || want == 0 {
		t.Fatalf("capture carries %d payload bytes, exchanges %d", payload, want)
	}
}

func TestTruthAndSpecsAgree(t *testing.T) {
	_, exs, res := capture(t, Options{Scenario: "demo", Seed: 1, Duration: 20 * time.Minute})
	called := map[string]bool{}
	for _, ex := range exs {
		called[ex.Service+" "+ex.Method+" "+ex.Template] = true
	}
	truth := MakeTruth(Options{Scenario: "demo"}, res, called)
	for i, s := range truth.Services {
		spec, err := Spec(res.Services[i])
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range s.Endpoints {
			inSpec := strings.Contains(string(spec), "\n    "+e.Path+":\n") || strings.Contains(string(spec), "  "+e.Path+":\n")
			switch e.Classification {
			case "shadow":
				if inSpec {
					t.Errorf("shadow %s %s is in the spec", e.Method, e.Path)
				}
				if !e.Called {
					t.Errorf("shadow %s %s never called", e.Method, e.Path)
				}
			case "orphan":
				if e.Called {
					t.Errorf("orphan %s %s was called", e.Method, e.Path)
				}
			case "zombie":
				if !e.Called || !strings.Contains(string(spec), "deprecated: true") {
					t.Errorf("zombie %s %s: called %v", e.Method, e.Path, e.Called)
				}
			}
		}
	}
}

func TestLabelsInsideTheRun(t *testing.T) {
	o := Options{Scenario: "demo", Seed: 2}
	res, err := Run(o, func(*Exchange) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	if len(res.Labels) < 4 {
		t.Fatalf("%d labels", len(res.Labels))
	}
	for _, l := range res.Labels {
		if l.Start.Before(start) || l.End.After(res.End.Add(time.Minute)) || !l.End.After(l.Start) {
			t.Errorf("label %+v outside the run [%v, %v]", l, start, res.End)
		}
	}
	if _, err := Run(Options{Scenario: "nope"}, nil); err == nil {
		t.Fatal("unknown scenario accepted")
	}
	_ = context.Background()
}

func BenchmarkBenchScenario(b *testing.B) {
	for i := 0; i < b.N; i++ {
		var n int64
		pw, _ := NewPcapWriter(discard{&n})
		Run(Options{Scenario: "bench", Seed: 1, SizeMB: 20}, pw.Add)
		pw.Close()
		b.SetBytes(n)
	}
}

type discard struct{ n *int64 }

func (d discard) Write(p []byte) (int, error) { *d.n += int64(len(p)); return len(p), nil }
