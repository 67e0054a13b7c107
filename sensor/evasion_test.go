package sensor

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/pcapgen"
	"github.com/apiscout/apiscout/sensor/output"
	"github.com/apiscout/apiscout/wire"
)

// evResult is what one evasion case produced.
type evResult struct {
	txs   []*wire.Transaction
	reg   *prometheus.Registry
	jsonl []byte
	alloc uint64 // bytes allocated while the pipeline ran
}

// metric sums the samples of name whose labels include the given pairs.
func (r *evResult) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
		}
	}
	return sum
}

// evRun writes pkts as a capture and runs the sensor over it with a
// registry and a JSONL copy of the output.
func evRun(t *testing.T, pkts []pcapgen.Packet) *evResult {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ev.pcap")
	if err := pcapgen.WriteFile(path, pkts); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().Sensor
	cfg.Pcap, cfg.Progress, cfg.ID = []string{path}, false, "evasion"
	res := &evResult{reg: prometheus.NewRegistry()}
	var buf bytes.Buffer
	sink := &evTee{j: output.NewJSONLWriter(&buf, nil), res: res}
	p, err := New(cfg, zap.NewNop(), res.reg, sink)
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	res.alloc = after.TotalAlloc - before.TotalAlloc
	res.jsonl = buf.Bytes()
	return res
}

// evTee keeps the records and writes them as JSONL.
type evTee struct {
	j   *output.JSONL
	res *evResult
}

func (s *evTee) Write(ctx context.Context, recs []*wire.Transaction) error {
	s.res.txs = append(s.res.txs, recs...)
	return s.j.Write(ctx, recs)
}
func (s *evTee) Close() error { return s.j.Close() }

var (
	evClient = netip.MustParseAddrPort("10.9.0.1:41000")
	evServer = netip.MustParseAddrPort("10.9.0.2:80")
)

func evConn() *pcapgen.Conn { return pcapgen.NewConn(evClient, evServer, t0).Handshake() }

func evGET(path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: shop.test\r\n\r\n")
}

var evOK = []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

// evFragmented replaces the first client data frame of c's packets with
// the fragments cut from it by cut.
func evFragmented(t *testing.T, pkts []pcapgen.Packet, cut func(pcapgen.Packet) ([]pcapgen.Packet, error)) []pcapgen.Packet {
	t.Helper()
	for i, p := range pkts {
		if len(p.Data) > 14+20+20 && i >= 3 { // after the handshake, the first frame with payload
			frags, err := cut(p)
			if err != nil {
				t.Fatal(err)
			}
			out := append(append(append([]pcapgen.Packet(nil), pkts[:i]...), frags...), pkts[i+1:]...)
			return out
		}
	}
	t.Fatal("no data frame")
	return nil
}

func evGzip(t *testing.T, data []byte, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	for i := 0; i < n; i++ {
		if _, err := zw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func evHas(tx *wire.Transaction, f wire.Flags) bool { return tx.Flags.Has(f) }

// TestEvasion runs one capture per hostile input through the whole sensor
// and checks the stated policy (README "Hostile input") and that a metric
// or flag records it. Every case also checks that the JSONL output is
// valid and that the run allocated within its bound (no unbounded work).
func TestEvasion(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name     string
		build    func(t *testing.T) []pcapgen.Packet
		maxAlloc uint64
		check    func(t *testing.T, r *evResult)
	}{{
		name: "overlapping TCP segments with conflicting data: first copy wins, flagged",
		build: func(t *testing.T) []pcapgen.Packet {
			req := evGET("/account/1")
			evil := evGET("/account/2")
			c := evConn().Client(req).Segment(true, -len(req), evil).Server(evOK)
			return c.Close().Packets()
		},
		check: func(t *testing.T, r *evResult) {
			if len(r.txs) != 1 || r.txs[0].Path != "/account/1" || !evHas(r.txs[0], wire.FlagRetransmitMismatch) {
				t.Fatalf("records %s", evDump(r.txs))
			}
			if r.metric(t, "apiscout_tcp_retransmit_mismatch_total") != 1 ||
				r.metric(t, "apiscout_tcp_overlap_bytes_total", "result", "differ") != 1 {
				t.Fatal("mismatch not counted")
			}
		},
	}, {
		name: "conflicting out-of-order copies: first copy wins where gopacket keeps the last",
		build: func(t *testing.T) []pcapgen.Packet {
			req := evGET("/orders/1")
			evil := evGET("/orders/9")
			c := evConn().Segment(true, 4, req[4:]).Segment(true, 4, evil[4:]).Segment(true, 0, req[:4]).
				Skip(true, len(req)).Server(evOK)
			return c.Close().Packets()
		},
		check: func(t *testing.T, r *evResult) {
			if len(r.txs) != 1 || r.txs[0].Path != "/orders/1" || !evHas(r.txs[0], wire.FlagRetransmitMismatch) {
				t.Fatalf("records %s", evDump(r.txs))
			}
			if r.metric(t, "apiscout_tcp_retransmit_mismatch_total") != 1 {
				t.Fatal("mismatch not counted")
			}
		},
	}, {
		name: "duplicate segments: delivered once, counted as same",
		build: func(t *testing.T) []pcapgen.Packet {
			req := evGET("/dup")
			c := evConn().Client(req).Segment(true, -len(req), req).Segment(true, -len(req), req).Server(evOK)
			return c.Close().Packets()
		},
		check: func(t *testing.T, r *evResult) {
			if len(r.txs) != 1 || r.txs[0].Path != "/dup" || r.txs[0].Flags != 0 {
				t.Fatalf("records %s", evDump(r.txs))
			}
			if r.metric(t, "apiscout_tcp_overlap_bytes_total", "result", "same") != float64(2*len(evGET("/dup"))) {
				t.Fatal("duplicates not counted")
			}
		},
	}, {
		name: "out-of-window segments: old ones trimmed (unverified), far-ahead ones never parsed before the hole",
		build: func(t *testing.T) []pcapgen.Packet {
			c := evConn().Client(evGET("/real")).
				Segment(true, -1<<20, evGET("/old")).  // a megabyte behind: outside the window
				Segment(true, 1<<30, evGET("/ahead")). // a gigabyte ahead: beyond any window
				Server(evOK)
			return c.Close().Packets()
		},
		check: func(t *testing.T, r *evResult) {
			if len(r.txs) != 1 || r.txs[0].Path != "/real" {
				t.Fatalf("records %s", evDump(r.txs))
			}
			if r.metric(t, "apiscout_tcp_overlap_bytes_total", "result", "unverified") != float64(len(evGET("/old"))) {
				t.Fatal("old segment not counted as unverified")
			}
		},
	}, {
		name: "overlapping IPv4 fragments: datagram dropped as a receiver does, counted; the retransmission is parsed",
		build: func(t *testing.T) []pcapgen.Packet {
			req := evGET("/frag")
			c := evConn().Client(req)
			n := len(c.Packets())
			pkts := evFragmented(t, c.Packets(), func(p pcapgen.Packet) ([]pcapgen.Packet, error) {
				return pcapgen.Fragment(p, []pcapgen.FragmentSpec{
					{Offset: 0, Len: 24, More: true}, {Offset: 16, Len: 24, More: true}, // [16,24) overlaps
					{Offset: 40, Len: 20 + len(req) - 40}})
			})
			c.Segment(true, -len(req), req).Server(evOK).Close() // the client retransmits
			return append(pkts, c.Packets()[n:]...)
		},
		check: func(t *testing.T, r *evResult) {
			if len(r.txs) != 1 || r.txs[0].Path != "/frag" {
				t.Fatalf("records %s", evDump(r.txs))
			}
			if r.metric(t, "apiscout_sensor_frames_skipped_total", "reason", "fragment_invalid") < 1 {
				t.Fatal("overlapping fragment not counted")
			}
		},
	}, {
		name: "repeated IPv4 fragment with other bytes: first copy wins",
		build: func(t *testing.T) []pcapgen.Packet {
			req := evGET("/frag/aaaaaaaa")
			c := evConn().Client(req)
			n := len(c.Packets())
			pkts := evFragmented(t, c.Packets(), func(p pcapgen.Packet) ([]pcapgen.Packet, error) {
				evil := bytes.Replace(append([]byte(nil), req...), []byte("aaaaaaaa"), []byte("bbbbbbbb"), 1)
				return pcapgen.Fragment(p, []pcapgen.FragmentSpec{
					{Offset: 0, Len: 24, More: true}, {Offset: 24, Len: 16, More: true},
					{Offset: 24, Data: evil[4:20], More: true}, // TCP header is 20 bytes: offset 24 is req[4:20]
					{Offset: 40, Len: 20 + len(req) - 40}})
			})
			c.Server(evOK).Close()
			return append(pkts, c.Packets()[n:]...)
		},
		check: func(t *testing.T, r *evResult) {
			if len(r.txs) != 1 || r.txs[0].Path != "/frag/aaaaaaaa" {
				t.Fatalf("records %s", evDump(r.txs))
			}
			if r.metric(t, "apiscout_sensor_frames_skipped_total", "reason", "fragment_pending") < 3 {
				t.Fatal("fragments not counted")
			}
		},
	}, {
		name: "tiny fragments: 8-byte fragments reassembled; a non-final one under 8 bytes dropped and counted",
		build: func(t *testing.T) []pcapgen.Packet {
			c := evConn().Client(evGET("/tiny"))
			n := len(c.Packets())
			pkts := evFragmented(t, c.Packets(), func(p pcapgen.Packet) ([]pcapgen.Packet, error) {
				return pcapgen.FragmentEvenly(p, 8) // the TCP header alone spans three fragments
			})
			c2 := pcapgen.NewConn(netip.MustParseAddrPort("10.9.0.3:41001"), evServer, t0.Add(1e6)).Handshake().Client(evGET("/tinier"))
			pkts2 := evFragmented(t, c2.Packets(), func(p pcapgen.Packet) ([]pcapgen.Packet, error) {
				return pcapgen.Fragment(p, []pcapgen.FragmentSpec{{Offset: 0, Len: 4, More: true}})
			})
			c.Server(evOK).Close()
			return pcapgen.Merge(append(pkts, c.Packets()[n:]...), pkts2)
		},
		check: func(t *testing.T, r *evResult) {
			paths := evPaths(r.txs)
			if paths != "/tiny" {
				t.Fatalf("records %s", evDump(r.txs))
			}
			if r.metric(t, "apiscout_sensor_frames_skipped_total", "reason", "fragment_invalid") != 1 ||
				r.metric(t, "apiscout_sensor_frames_skipped_total", "reason", "fragment_pending") < 5 {
				t.Fatal("tiny fragments not counted")
			}
		},
	}, {
		name: "TTL-limited insert seen first: first copy wins (the sensor cannot know the TTL distance), flagged",
		build: func(t *testing.T) []pcapgen.Packet {
			real, insert := evGET("/transfer?to=alice"), evGET("/transfer?to=mallo")
			c := evConn().TTL(1).Segment(true, 0, insert).TTL(0).Client(real).Server(evOK)
			return c.Close().Packets()
		},
		check: func(t *testing.T, r *evResult) {
			if len(r.txs) != 1 || r.txs[0].Query != "to=mallo" || !evHas(r.txs[0], wire.FlagRetransmitMismatch) {
				t.Fatalf("records %s", evDump(r.txs))
			}
			if r.metric(t, "apiscout_tcp_retransmit_mismatch_total") != 1 {
				t.Fatal("mismatch not counted")
			}
		},
	}, {
		name: "TTL-limited insert after the real segment: first copy wins, flagged",
		build: func(t *testing.T) []pcapgen.Packet {
			real, insert := evGET("/transfer?to=alice"), evGET("/transfer?to=mallo")
			c := evConn().Client(real).TTL(1).Segment(true, -len(real), insert).TTL(0).Server(evOK)
			return c.Close().Packets()
		},
		check: func(t *testing.T, r *evResult) {
			if len(r.txs) != 1 || r.txs[0].Query != "to=alice" || !evHas(r.txs[0], wire.FlagRetransmitMismatch) {
				t.Fatalf("records %s", evDump(r.txs))
			}
		},
	}, {
		name: "stream that starts with a response: kept as a response without request, counted",
		build: func(t *testing.T) []pcapgen.Packet {
			return evConn().Server(evOK).Client(evGET("/after")).Server(evOK).Close().Packets()
		},
		check: func(t *testing.T, r *evResult) {
			if len(r.txs) != 2 || !evHas(r.txs[0], wire.FlagNoRequest) || r.txs[0].Method != "" ||
				r.txs[1].Path != "/after" || r.txs[1].Status != 200 {
				t.Fatalf("records %s", evDump(r.txs))
			}
			if r.metric(t, "apiscout_httpparse_problems_total", "reason", "no_request") != 1 {
				t.Fatal("not counted")
			}
		},
	}, {
		name: "conflicting framing: CL+TE, two Content-Lengths, obs-fold flagged ambiguous_framing",
		build: func(t *testing.T) []pcapgen.Packet {
			c := evConn().
				Client([]byte("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")).Server(evOK).
				Client([]byte("POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabc")).Server(evOK).
				Client([]byte("GET /c HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n")).Server(evOK)
			return c.Close().Packets()
		},
		check: func(t *testing.T, r *evResult) {
			if evPaths(r.txs) != "/a /b /c" {
				t.Fatalf("records %s", evDump(r.txs))
			}
			for _, tx := range r.txs {
				if !evHas(tx, wire.FlagAmbiguousFraming) || tx.Status != 200 {
					t.Fatalf("not flagged: %s", evDump([]*wire.Transaction{tx}))
				}
			}
			if r.txs[0].RequestBodyLen != 0 || r.txs[1].RequestBodyLen != 3 {
				t.Fatalf("framing: chunked wins over CL, the first CL frames: %d %d", r.txs[0].RequestBodyLen, r.txs[1].RequestBodyLen)
			}
			if r.metric(t, "apiscout_httpparse_problems_total", "reason", "ambiguous_framing") != 3 {
				t.Fatal("not counted")
			}
		},
	}, {
		name:     "1 MB header line: message unparsable at MaxHeaderBytes, later messages parsed",
		maxAlloc: 64 * mib,
		build: func(t *testing.T) []pcapgen.Packet {
			big := []byte("GET /big HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 1<<20) + "\r\n\r\n")
			return evConn().Client(big).Server(evOK).Client(evGET("/next")).Server(evOK).Close().Packets()
		},
		check: func(t *testing.T, r *evResult) {
			if len(r.txs) < 2 || !evHas(r.txs[0], wire.FlagUnparsable) || r.txs[len(r.txs)-1].Path != "/next" {
				t.Fatalf("records %s", evDump(r.txs))
			}
			if r.metric(t, "apiscout_httpparse_problems_total", "reason", "header_too_large") != 1 {
				t.Fatal("not counted")
			}
		},
	}, {
		name:     "a million headers: unparsable at MaxHeaders, bounded work",
		maxAlloc: 96 * mib,
		build: func(t *testing.T) []pcapgen.Packet {
			var b bytes.Buffer
			b.WriteString("GET /many HTTP/1.1\r\nHost: x\r\n")
			for i := 0; i < 1_000_000; i++ {
				b.WriteString("X:1\r\n")
			}
			b.WriteString("\r\n")
			return evConn().Client(b.Bytes()).Server(evOK).Client(evGET("/next")).Server(evOK).Close().Packets()
		},
		check: func(t *testing.T, r *evResult) {
			if len(r.txs) < 2 || !evHas(r.txs[0], wire.FlagUnparsable) || r.txs[len(r.txs)-1].Path != "/next" {
				t.Fatalf("records %s", evDump(r.txs))
			}
			if r.metric(t, "apiscout_httpparse_problems_total", "reason", "too_many_headers") < 1 {
				t.Fatal("not counted")
			}
		},
	}, {
		name:     "100,000 one-byte chunks with extensions: decoded in full, bounded work",
		maxAlloc: 64 * mib,
		build: func(t *testing.T) []pcapgen.Packet {
			var b bytes.Buffer
			b.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			for i := 0; i < 100_000; i++ {
				b.WriteString("1;ext=x\r\nz\r\n")
			}
			b.WriteString("0\r\nX-Trailer: t\r\n\r\n")
			return evConn().Client(evGET("/chunks")).Server(b.Bytes()).Close().Packets()
		},
		check: func(t *testing.T, r *evResult) {
			if len(r.txs) != 1 || r.txs[0].ResponseBodyLen != 100_000 || r.txs[0].Flags.Has(wire.FlagUnparsable) {
				t.Fatalf("records %s", evDump(r.txs))
			}
			if r.metric(t, "apiscout_httpparse_transactions_total") != 1 {
				t.Fatal("not counted")
			}
		},
	}, {
		name: "nested codings: chunked applied twice flagged ambiguous; ten stacked gzips decode_error",
		build: func(t *testing.T) []pcapgen.Packet {
			body := []byte(`{"a":1}`)
			for i := 0; i < 10; i++ {
				body = evGzip(t, body, 1)
			}
			resp := []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s",
				strings.TrimSuffix(strings.Repeat("gzip, ", 10), ", "), len(body), body))
			c := evConn().
				Client([]byte("POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")).Server(evOK).
				Client(evGET("/ce")).Server(resp)
			return c.Close().Packets()
		},
		check: func(t *testing.T, r *evResult) {
			if evPaths(r.txs) != "/te /ce" || !evHas(r.txs[0], wire.FlagAmbiguousFraming) || !evHas(r.txs[1], wire.FlagDecodeError) {
				t.Fatalf("records %s", evDump(r.txs))
			}
			if r.metric(t, "apiscout_httpparse_problems_total", "reason", "decode_error") < 1 {
				t.Fatal("not counted")
			}
		},
	}, {
		name:     "gzip bomb (64 MiB of zeros in 64 KiB): decoding stops at DecompressLimit, decode_error",
		maxAlloc: 96 * mib,
		build: func(t *testing.T) []pcapgen.Packet {
			bomb := evGzip(t, make([]byte, 1<<20), 64)
			resp := []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n", len(bomb)))
			return evConn().Client(evGET("/bomb")).Server(append(resp, bomb...)).Close().Packets()
		},
		check: func(t *testing.T, r *evResult) {
			if len(r.txs) != 1 || !evHas(r.txs[0], wire.FlagDecodeError) || r.txs[0].ResponseBodyLen > 16<<20 {
				t.Fatalf("records %s", evDump(r.txs))
			}
			if r.metric(t, "apiscout_httpparse_problems_total", "reason", "decompress_limit") != 1 {
				t.Fatal("not counted")
			}
		},
	}, {
		name: "invalid UTF-8 in path and headers: kept byte-exact in the record, JSONL still valid",
		build: func(t *testing.T) []pcapgen.Packet {
			req := []byte("GET /caf\xe9/\xff\xfe?q=\xc3\x28 HTTP/1.1\r\nHost: x\r\nX-Bin: \xc3\x28\x80\r\n\r\n")
			return evConn().Client(req).Server(evOK).Close().Packets()
		},
		check: func(t *testing.T, r *evResult) {
			if len(r.txs) != 1 || r.txs[0].Path != "/caf\xe9/\xff\xfe" || r.txs[0].Query != "q=\xc3\x28" {
				t.Fatalf("records %s", evDump(r.txs))
			}
			var hv string
			for _, h := range r.txs[0].RequestHeaders {
				if h.Name == "X-Bin" {
					hv = h.Value
				}
			}
			if hv != "\xc3\x28\x80" {
				t.Fatalf("header %q", hv)
			}
			// The protobuf record keeps the bytes; JSON replaces them with U+FFFD.
			var back wire.Transaction
			if err := wire.DecodeTransaction(wire.AppendTransaction(nil, r.txs[0]), &back); err != nil || back.Path != r.txs[0].Path {
				t.Fatalf("wire round trip: %v %q", err, back.Path)
			}
			if r.metric(t, "apiscout_httpparse_transactions_total") != 1 {
				t.Fatal("not counted")
			}
		},
	}, {
		name: "binary junk on port 80: no transaction invented, counted",
		build: func(t *testing.T) []pcapgen.Packet {
			rng := rand.New(rand.NewSource(9))
			junk := make([]byte, 256<<10)
			rng.Read(junk)
			c := evConn().Client(junk[:128<<10]).Server(junk[128<<10:])
			return c.Close().Packets()
		},
		check: func(t *testing.T, r *evResult) {
			for _, tx := range r.txs {
				if tx.Method != "" && !evHas(tx, wire.FlagUnparsable) {
					t.Fatalf("invented %s", evDump(r.txs))
				}
			}
			// Nearly all of the junk is skipped, and counted as such.
			if r.metric(t, "apiscout_httpparse_skipped_bytes_total") < 200<<10 {
				t.Fatal("junk not counted")
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := evRun(t, tc.build(t))
			tc.check(t, r)
			for i, line := range bytes.Split(bytes.TrimSpace(r.jsonl), []byte("\n")) {
				if len(line) > 0 && !json.Valid(line) {
					t.Fatalf("jsonl line %d is not valid JSON", i)
				}
			}
			limit := tc.maxAlloc
			if limit == 0 {
				limit = 32 * mib
			}
			if r.alloc > limit {
				t.Fatalf("allocated %d MiB, bound %d MiB", r.alloc>>20, limit>>20)
			}
		})
	}
}

func evPaths(txs []*wire.Transaction) string {
	var p []string
	for _, tx := range txs {
		p = append(p, tx.Path)
	}
	return strings.Join(p, " ")
}

func evDump(txs []*wire.Transaction) string {
	var b strings.Builder
	for _, tx := range txs {
		fmt.Fprintf(&b, "\n  %s %q?%q status=%d req=%d resp=%d flags=%v", tx.Method, tx.Path, tx.Query, tx.Status,
			tx.RequestBodyLen, tx.ResponseBodyLen, tx.Flags)
	}
	return b.String()
}
