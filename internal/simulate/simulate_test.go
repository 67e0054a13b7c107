package simulate

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"gopkg.in/yaml.v3"

	"github.com/apiscout/apiscout/wire"
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

// readDir returns every file under dir by its relative name.
func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestDeterministic(t *testing.T) {
	for _, o := range []Options{
		{Scenario: "demo", Seed: 3, Duration: 5 * time.Minute},
		{Scenario: "bench", Seed: 3, SizeMB: 2},
	} {
		t.Run(o.Scenario, func(t *testing.T) {
			run := func(o Options) ([]byte, map[string][]byte) {
				data, _, res := capture(t, o)
				dir := t.TempDir()
				if err := WriteFiles(dir, o, res, res.Called); err != nil {
					t.Fatal(err)
				}
				return data, readDir(t, dir)
			}
			a, fa := run(o)
			b, fb := run(o)
			if !bytes.Equal(a, b) {
				t.Fatal("the same seed gave different captures")
			}
			if len(fa) < 3 {
				t.Fatalf("wrote only %v", fa)
			}
			for name, data := range fa {
				if !bytes.Equal(data, fb[name]) {
					t.Errorf("the same seed gave different %s", name)
				}
			}
			o.Seed++
			if c, _ := run(o); bytes.Equal(a, c) {
				t.Fatal("another seed gave the same capture")
			}
		})
	}
	// The anomalies scenario, at the exchange level (a day of it).
	digest := func() []byte {
		var h bytes.Buffer
		res, err := Run(Options{Scenario: "anomalies", Seed: 5, Days: 1}, func(ex *Exchange) error {
			h.WriteString(ex.Start.String() + ex.Client.String() + ex.Path + ex.Query)
			h.Write(ex.RespBody)
			if h.Len() > 1<<20 {
				h.Truncate(0) // keep memory flat: equality of the tail and counts suffices with the labels below
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range res.Labels {
			h.WriteString(l.Type + l.Start.String())
		}
		return h.Bytes()
	}
	if !bytes.Equal(digest(), digest()) {
		t.Fatal("anomalies: the same seed gave different traffic")
	}
}

// flow is one direction of one TCP connection as read back.
type flow struct {
	segs     map[uint32][]byte
	isn      uint32
	syn, fin bool
	lastAck  uint32 // highest ACK the other side sent
}

type flowKey struct{ src, dst string }

// reassemble reads a pcap and returns each direction's bytes in sequence
// order, with the holes the capture left (bytes acknowledged, never seen).
func reassemble(t *testing.T, data []byte) (map[flowKey]*flow, int) {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	flows := map[flowKey]*flow{}
	get := func(k flowKey) *flow {
		f := flows[k]
		if f == nil {
			f = &flow{segs: map[uint32][]byte{}}
			flows[k] = f
		}
		return f
	}
	var last time.Time
	frames := 0
	for {
		d, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		frames++
		if ci.Timestamp.Before(last) {
			t.Fatalf("packet at %v after one at %v", ci.Timestamp, last)
		}
		last = ci.Timestamp
		if len(d) > 1514 {
			t.Fatalf("frame of %d bytes: over the Ethernet MTU", len(d))
		}
		p := gopacket.NewPacket(d, layers.LayerTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("undecodable frame: %v", el.Error())
		}
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		src := ip.SrcIP.String() + ":" + strconv.Itoa(int(tcp.SrcPort))
		dst := ip.DstIP.String() + ":" + strconv.Itoa(int(tcp.DstPort))
		k := flowKey{src, dst}
		f := get(k)
		if tcp.SYN {
			if f.syn {
				t.Fatalf("%s -> %s: second SYN (port reused)", src, dst)
			}
			f.syn, f.isn = true, tcp.Seq+1
		}
		if tcp.FIN {
			f.fin = true
		}
		if len(tcp.Payload) > 0 {
			f.segs[tcp.Seq] = append([]byte(nil), tcp.Payload...)
		}
		if tcp.ACK {
			back := get(flowKey{dst, src})
			if tcp.Ack-back.isn > back.lastAck-back.isn || back.lastAck == 0 {
				back.lastAck = tcp.Ack
			}
		}
	}
	return flows, frames
}

// bytesOf joins a flow's segments from its ISN; a hole is skipped and
// its size counted.
func (f *flow) bytesOf() ([]byte, int) {
	seqs := make([]uint32, 0, len(f.segs))
	for s := range f.segs {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i]-f.isn < seqs[j]-f.isn })
	var out []byte
	next, holes := f.isn, 0
	for _, s := range seqs {
		holes += int(s - next)
		out = append(out, f.segs[s]...)
		next = s + uint32(len(f.segs[s]))
	}
	if f.fin && f.lastAck != next+1 {
		holes += int(f.lastAck - next - 1)
	}
	return out, holes
}

// The capture read back with gopacket holds, on every connection, exactly
// the HTTP messages generated for it, in order, with handshake and FIN.
func TestCaptureReassemblesToTheExchanges(t *testing.T) {
	for _, o := range []Options{
		{Scenario: "demo", Seed: 1, Duration: 3 * time.Minute},
		{Scenario: "bench", Seed: 1, SizeMB: 3},
	} {
		t.Run(o.Scenario, func(t *testing.T) {
			data, exs, _ := capture(t, o)
			flows, frames := reassemble(t, data)
			want := map[flowKey][]byte{}
			var gzip, chunked, full int
			for _, ex := range exs {
				up := flowKey{ex.Client.String(), ex.Server.String()}
				down := flowKey{ex.Server.String(), ex.Client.String()}
				want[up] = append(want[up], RequestBytes(ex)...)
				resp := ResponseBytes(ex)
				want[down] = append(want[down], resp...)
				if ex.Gzip {
					gzip++
				}
				if ex.Chunked {
					chunked++
				}
				if len(resp) > 1448 {
					full++
				}
			}
			if len(flows) != len(want) {
				t.Fatalf("%d flows in the capture, %d generated", len(flows), len(want))
			}
			for k, w := range want {
				f := flows[k]
				if f == nil || !f.syn || !f.fin {
					t.Fatalf("%s -> %s: missing, or without SYN or FIN", k.src, k.dst)
				}
				got, holes := f.bytesOf()
				if holes != 0 || !bytes.Equal(got, w) {
					t.Fatalf("%s -> %s: %d bytes read back (%d missing), %d generated", k.src, k.dst, len(got), holes, len(w))
				}
			}
			if o.Scenario == "bench" && (gzip == 0 || chunked == 0 || full == 0) {
				t.Errorf("bench: %d gzip, %d chunked, %d multi-segment responses", gzip, chunked, full)
			}
			t.Logf("%d exchanges, %d connections, %d frames, %d bytes", len(exs), len(want)/2, frames, len(data))
		})
	}
}

// An exchange with capture loss leaves a hole of exactly the bytes
// ToTransaction reports, acknowledged by the client.
func TestCaptureLossLeavesAHole(t *testing.T) {
	exs, _, err := Generate(Options{Scenario: "demo", Seed: 9, Duration: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	pw, _ := NewPcapWriter(&buf)
	lost := map[flowKey]int{}
	for i, ex := range exs {
		if i%3 == 0 && len(ex.RespBody) > 100 {
			ex.Loss = len(ex.RespBody) / 2
		}
		if err := pw.Add(ex); err != nil {
			t.Fatal(err)
		}
		tx := ToTransaction(ex)
		if (ex.Loss > 0) != tx.Flags.Has(wire.FlagGap) {
			t.Fatalf("loss %d, flags %v", ex.Loss, tx.Flags)
		}
		lost[flowKey{ex.Server.String(), ex.Client.String()}] += int(tx.CaptureLoss)
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	flows, _ := reassemble(t, buf.Bytes())
	total := 0
	for k, n := range lost {
		_, holes := flows[k].bytesOf()
		if holes != n {
			t.Errorf("%s -> %s: %d bytes missing from the capture, transactions say %d", k.src, k.dst, holes, n)
		}
		total += n
	}
	if total == 0 {
		t.Fatal("no loss generated")
	}
}

// openAPI is the part of a published spec the truth is checked against.
type openAPI struct {
	Paths map[string]map[string]struct {
		Deprecated bool `yaml:"deprecated"`
	} `yaml:"paths"`
}

// The truth agrees with the published specs: shadow endpoints are absent
// from them, zombies deprecated and called, orphans documented and never
// called, documented endpoints present and called.
func TestTruthAndSpecsAgree(t *testing.T) {
	for _, o := range []Options{
		{Scenario: "demo", Seed: 1},
		{Scenario: "inventory", Seed: 2, Duration: 30 * time.Minute},
		{Scenario: "anomalies", Seed: 1, Days: 1},
	} {
		t.Run(o.Scenario, func(t *testing.T) {
			res, err := Run(o, nil)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := WriteFiles(dir, o, res, res.Called); err != nil {
				t.Fatal(err)
			}
			var truth Truth
			b, _ := os.ReadFile(filepath.Join(dir, "truth.json"))
			if err := json.Unmarshal(b, &truth); err != nil {
				t.Fatal(err)
			}
			classes := map[string]int{}
			for _, s := range truth.Services {
				b, err := os.ReadFile(filepath.Join(dir, "specs", s.Host+".yaml"))
				if err != nil {
					t.Fatal(err)
				}
				var spec openAPI
				if err := yaml.Unmarshal(b, &spec); err != nil {
					t.Fatal(err)
				}
				for _, e := range s.Endpoints {
					classes[e.Classification]++
					op, inSpec := spec.Paths[e.Path][strings.ToLower(e.Method)]
					name := s.Host + " " + e.Method + " " + e.Path
					switch e.Classification {
					case "shadow":
						if inSpec || !e.Called {
							t.Errorf("shadow %s: in spec %v, called %v", name, inSpec, e.Called)
						}
					case "zombie":
						if !inSpec || !op.Deprecated || !e.Called {
							t.Errorf("zombie %s: in spec %v, deprecated %v, called %v", name, inSpec, op.Deprecated, e.Called)
						}
					case "orphan":
						if !inSpec || e.Called {
							t.Errorf("orphan %s: in spec %v, called %v", name, inSpec, e.Called)
						}
					case "documented":
						if !inSpec || op.Deprecated || !e.Called {
							t.Errorf("documented %s: in spec %v, deprecated %v, called %v", name, inSpec, op.Deprecated, e.Called)
						}
					default:
						t.Errorf("%s: class %q", name, e.Classification)
					}
				}
			}
			for _, c := range []string{"documented", "shadow", "zombie", "orphan"} {
				if classes[c] == 0 {
					t.Errorf("no %s endpoint", c)
				}
			}
		})
	}
}

// The anomaly types of the detectors (issue 5), every one of which the
// anomalies scenario injects.
var anomalyTypes = []string{"shadow_endpoint", "zombie_call", "rate_spike", "rate_drop", "error_surge",
	"latency_regression", "credential_stuffing", "bola_enumeration", "bfla", "scraping", "data_exfiltration",
	"sensitive_data_exposure", "unauthenticated_access", "injection_attempt", "schema_drift", "jwt_weakness", "sensor_blind"}

// Labels fall inside the generated traffic, after the baseline, and the
// traffic really changes inside each window.
func TestLabelsMatchTheTraffic(t *testing.T) {
	o := Options{Scenario: "anomalies", Seed: 2, Days: 1}
	type window struct {
		calls, errors, lossy, episode int
		latency                       time.Duration
	}
	// The labels are planned before the traffic: a run of one second
	// gives them, a full one counts each label's window on its endpoint
	// and the same window a day earlier.
	short := o
	short.Duration = time.Second
	res, err := Run(short, nil)
	if err != nil {
		t.Fatal(err)
	}
	labels := res.Labels
	inWin, dayBefore := map[int]*window{}, map[int]*window{}
	for i := range labels {
		inWin[i], dayBefore[i] = &window{}, &window{}
	}
	if res, err = Run(o, func(ex *Exchange) error {
		tx := ToTransaction(ex)
		for i, l := range labels {
			match := l.Host == "" || l.Host == ex.Service && (l.Method == "" || l.Method == ex.Method && l.Path == ex.Template)
			if !match {
				continue
			}
			var w *window
			switch {
			case !ex.Start.Before(l.Start) && ex.Start.Before(l.End):
				w = inWin[i]
			case !ex.Start.Before(l.Start.Add(-24*time.Hour)) && ex.Start.Before(l.End.Add(-24*time.Hour)):
				w = dayBefore[i]
			default:
				continue
			}
			w.calls++
			if tx.Status >= 500 {
				w.errors++
			}
			if tx.Flags.Has(wire.FlagGap) {
				w.lossy++
			}
			if ex.Episode == l.Type {
				w.episode++
			}
			w.latency += ex.Latency
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	baselineEnd := o.Start
	if baselineEnd.IsZero() {
		baselineEnd = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	}
	baselineEnd = baselineEnd.Add(24 * time.Hour)
	seen := map[string]bool{}
	for i, l := range labels {
		seen[l.Type] = true
		in, before := inWin[i], dayBefore[i]
		if l.Start.Before(baselineEnd) || l.End.After(res.End) || !l.End.After(l.Start) {
			t.Errorf("%s: [%v, %v] outside the episode day (baseline ends %v, traffic %v)", l.Type, l.Start, l.End, baselineEnd, res.End)
		}
		mean := func(w *window) time.Duration {
			if w.calls == 0 {
				return 0
			}
			return w.latency / time.Duration(w.calls)
		}
		ok := true
		switch l.Type {
		case "rate_drop":
			ok = in.calls == 0 && before.calls >= 100
		case "rate_spike":
			ok = in.calls > 4*before.calls && before.calls >= 100
		case "error_surge":
			ok = in.errors*3 > in.calls && before.errors*20 < before.calls
		case "latency_regression":
			ok = mean(in) > 5*mean(before) && before.calls >= 50
		case "sensor_blind":
			ok = in.lossy*3 > in.calls && before.lossy == 0
		default:
			ok = in.episode >= 20
		}
		if !ok {
			t.Errorf("%s on %s %s %s: window %+v (mean latency %v), a day before %+v (%v)", l.Type, l.Host, l.Method, l.Path,
				*in, mean(in), *before, mean(before))
		}
	}
	for _, typ := range anomalyTypes {
		if !seen[typ] {
			t.Errorf("no %s episode", typ)
		}
	}
}

// ToTransaction carries what the sensor emits: credentials only as
// fingerprints (JWT claims kept), framing headers, true lengths.
func TestToTransactionRedactsLikeTheSensor(t *testing.T) {
	exs, _, err := Generate(Options{Scenario: "bench", Seed: 4, SizeMB: 1})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, ex := range exs {
		tx := ToTransaction(ex)
		for _, h := range ex.ReqHeaders {
			secret := ""
			switch h.Name {
			case "Authorization":
				secret = strings.TrimPrefix(h.Value, "Bearer ")
			case "X-API-Key":
				secret = h.Value
			case "Cookie":
				_, secret, _ = strings.Cut(h.Value, "=")
			default:
				continue
			}
			got, _ := tx.RequestHeader(h.Name)
			if strings.Contains(got, secret) || !strings.Contains(got, fingerprint(secret)) {
				t.Fatalf("%s %q sent as %q", h.Name, got, h.Value)
			}
			kinds[h.Name]++
			if h.Name == "Authorization" {
				parts := strings.Split(secret, ".")
				if want := "Bearer " + fingerprint(secret) + " jwt:" + parts[0] + "." + parts[1]; got != want {
					t.Fatalf("Authorization %q, want %q", got, want)
				}
				claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
				if !strings.Contains(string(claims), `"sub":"user-`) || !tx.Flags.Has(wire.FlagCleartextCredentials) {
					t.Fatalf("claims %s, flags %v", claims, tx.Flags)
				}
			}
		}
		if tx.ResponseBodyLen != int64(len(ex.RespBody)) || !bytes.Equal(tx.ResponseBody, ex.RespBody) {
			t.Fatal("response body or length differs")
		}
		te, _ := tx.ResponseHeader("Transfer-Encoding")
		ce, _ := tx.ResponseHeader("Content-Encoding")
		cl, hasCL := tx.ResponseHeader("Content-Length")
		switch {
		case ex.Chunked != (te == "chunked") || ex.Chunked == hasCL:
			t.Fatalf("chunked %v: Transfer-Encoding %q, Content-Length %q", ex.Chunked, te, cl)
		case ex.Gzip != (ce == "gzip"):
			t.Fatalf("gzip %v: Content-Encoding %q", ex.Gzip, ce)
		case ex.Gzip && tx.ResponseBodyWireLen >= tx.ResponseBodyLen && len(ex.RespBody) > 200:
			t.Fatalf("gzip body of %d bytes is %d on the wire", tx.ResponseBodyLen, tx.ResponseBodyWireLen)
		}
		if !tx.RequestEnd.Before(tx.ResponseStart) || tx.ResponseEnd.Before(tx.ResponseStart) || tx.Client != ex.Client {
			t.Fatalf("times %v %v %v %v", tx.RequestStart, tx.RequestEnd, tx.ResponseStart, tx.ResponseEnd)
		}
	}
	if kinds["Authorization"] == 0 || kinds["X-API-Key"] == 0 || kinds["Cookie"] == 0 {
		t.Fatalf("credentials seen: %v", kinds)
	}
}

func TestUnknownScenario(t *testing.T) {
	if _, err := Run(Options{Scenario: "nope"}, nil); err == nil || !strings.Contains(err.Error(), "anomalies") {
		t.Fatalf("unknown scenario: %v", err)
	}
	if _, err := Run(Options{Scenario: "demo", Days: -1}, nil); err == nil {
		t.Fatal("negative days accepted")
	}
}

// BenchmarkBenchScenario measures the capture writer on the bench
// scenario: bytes of pcap per second on one core.
func BenchmarkBenchScenario(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var n int64
		pw, _ := NewPcapWriter(countWriter{&n})
		if _, err := Run(Options{Scenario: "bench", Seed: 1, SizeMB: 20}, pw.Add); err != nil {
			b.Fatal(err)
		}
		pw.Close()
		b.SetBytes(n)
	}
}

type countWriter struct{ n *int64 }

func (d countWriter) Write(p []byte) (int, error) { *d.n += int64(len(p)); return len(p), nil }
