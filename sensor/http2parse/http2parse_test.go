package http2parse

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/http2/hpack"

	"github.com/apiscout/apiscout/internal/connrec"
	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// serveH2C runs a real Go HTTP/2 server over cleartext (prior knowledge)
// on loopback and records the bytes of every connection it accepts.
func serveH2C(t *testing.T, h http.Handler) (addr string, rec *connrec.Recorder) {
	t.Helper()
	ln, err := connrec.Listen()
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, Protocols: new(http.Protocols)}
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), ln.Rec
}

func h2cClient() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr}
}

type chunk = connrec.Chunk

func parse(chunks []chunk, midstream bool) []*wire.Transaction {
	var out []*wire.Transaction
	info := stream.ConnInfo{ID: 1, Client: netip.MustParseAddrPort("10.0.0.1:5555"),
		Server: netip.MustParseAddrPort("10.0.0.2:80"), Midstream: midstream}
	p := New(info, DefaultOptions(), nil, func(tx *wire.Transaction) { out = append(out, tx) }, !midstream)
	connrec.Replay(p, chunks, time.Unix(1700000000, 0))
	return out
}

func parseAll(rec *connrec.Recorder) []*wire.Transaction {
	var out []*wire.Transaction
	for _, c := range rec.Conns() {
		out = append(out, parse(c, false)...)
	}
	return out
}

func TestRealH2CServer(t *testing.T) {
	addr, rec := serveH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/missing" {
			w.WriteHeader(404)
			return
		}
		fmt.Fprintf(w, `{"path":%q,"got":%d,"pad":%q}`, r.URL.Path, len(body), strings.Repeat("x", 40000))
	}))
	client := h2cClient()
	type call struct{ method, path, body string }
	calls := []call{{"GET", "/api/users/1?x=1", ""}, {"POST", "/api/orders", `{"sku":"AB-1234"}`}, {"GET", "/missing", ""}}
	for _, c := range calls {
		req, _ := http.NewRequest(c.method, "http://"+addr+c.path, strings.NewReader(c.body))
		if c.body == "" {
			req.Body = nil
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	txs := parseAll(rec)
	if len(txs) != len(calls) {
		t.Fatalf("%d transactions, want %d", len(txs), len(calls))
	}
	for i, c := range calls {
		tx := txs[i]
		path, query, _ := strings.Cut(c.path, "?")
		if tx.Method != c.method || tx.Path != path || tx.Query != query || tx.Host != addr {
			t.Errorf("call %d: got %s %s?%s host %s", i, tx.Method, tx.Path, tx.Query, tx.Host)
		}
		wantStatus := 200
		if c.path == "/missing" {
			wantStatus = 404
		}
		if tx.Status != wantStatus || tx.Protocol != "h2" || tx.Flags != 0 {
			t.Errorf("call %d: status %d protocol %s flags %v", i, tx.Status, tx.Protocol, tx.Flags)
		}
		if tx.RequestBodyLen != int64(len(c.body)) {
			t.Errorf("call %d: request body %d", i, tx.RequestBodyLen)
		}
		if wantStatus == 200 && tx.ResponseBodyLen < 40000 {
			t.Errorf("call %d: response body %d", i, tx.ResponseBodyLen)
		}
	}
}

// gRPC over HTTP/2: length-prefixed messages, grpc-status in trailers.
func TestGRPCShape(t *testing.T) {
	addr, rec := serveH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		body, _ := io.ReadAll(r.Body)
		for len(body) >= 5 {
			l := int(binary.BigEndian.Uint32(body[1:]))
			body = body[5+l:]
			n++
		}
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		for i := 0; i < n*2; i++ {
			w.Write(grpcFrame(bytes.Repeat([]byte{1}, 10+i)))
		}
		w.Header().Set("Grpc-Status", "5")
		w.Header().Set("Grpc-Message", "not found")
	}))
	body := append(grpcFrame([]byte("hello")), grpcFrame([]byte("world!"))...)
	req, _ := http.NewRequest("POST", "http://"+addr+"/shop.v1.Catalog/GetItem", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	txs := parseAll(rec)
	if len(txs) != 1 {
		t.Fatalf("%d transactions", len(txs))
	}
	tx := txs[0]
	extra := map[string]string{}
	for _, h := range tx.Extra {
		extra[h.Name] = h.Value
	}
	want := map[string]string{"grpc.service": "shop.v1.Catalog", "grpc.method": "GetItem", "grpc.status": "5",
		"grpc.message": "not found", "grpc.request_messages": "2", "grpc.response_messages": "4"}
	for k, v := range want {
		if extra[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, extra[k], v, extra)
		}
	}
	if tx.Protocol != "grpc" || tx.RequestBodyLen != int64(len(body)) {
		t.Errorf("protocol %s request body %d", tx.Protocol, tx.RequestBodyLen)
	}
}

func grpcFrame(p []byte) []byte {
	b := make([]byte, 5, 5+len(p))
	binary.BigEndian.PutUint32(b[1:], uint32(len(p)))
	return append(b, p...)
}

// A sensor that joins mid-connection decodes what it can and says why it
// could not decode the rest, instead of guessing.
func TestMidstreamHPACK(t *testing.T) {
	var frames []chunk
	enc := new(bytes.Buffer)
	he := hpack.NewEncoder(enc)
	block := func(fs ...hpack.HeaderField) []byte {
		enc.Reset()
		for _, f := range fs {
			he.WriteField(f)
		}
		return append([]byte(nil), enc.Bytes()...)
	}
	// Before the sensor joins: a request that indexes a custom header.
	_ = block(hpack.HeaderField{Name: ":method", Value: "GET"}, hpack.HeaderField{Name: "x-tenant", Value: "acme"})
	// After: one block referencing the old entry, one self-contained.
	old := block(hpack.HeaderField{Name: ":method", Value: "GET"}, hpack.HeaderField{Name: ":path", Value: "/a"},
		hpack.HeaderField{Name: "x-tenant", Value: "acme"})
	fresh := block(hpack.HeaderField{Name: ":method", Value: "GET"}, hpack.HeaderField{Name: ":path", Value: "/b"},
		hpack.HeaderField{Name: "x-new", Value: "1"})
	frames = append(frames, chunk{Dir: stream.ClientToServer, Data: frame(frameHeaders, flagEndHeaders|flagEndStream, 5, old)})
	frames = append(frames, chunk{Dir: stream.ClientToServer, Data: frame(frameHeaders, flagEndHeaders|flagEndStream, 7, fresh)})
	txs := parse(frames, true)
	if len(txs) != 2 {
		t.Fatalf("%d transactions", len(txs))
	}
	if !txs[0].Flags.Has(wire.FlagUnparsable) || extraOf(txs[0], "h2.error") != ReasonHPACKEarlier {
		t.Errorf("stream 5 should say why it is undecodable: %v %v", txs[0].Flags, txs[0].Extra)
	}
	if txs[1].Path != "/b" || txs[1].Method != "GET" || !txs[1].Flags.Has(wire.FlagMidstream) {
		t.Errorf("stream 7: %s %s %v", txs[1].Method, txs[1].Path, txs[1].Flags)
	}
}

func extraOf(tx *wire.Transaction, k string) string {
	for _, h := range tx.Extra {
		if h.Name == k {
			return h.Value
		}
	}
	return ""
}

func frame(typ, flags byte, sid uint32, p []byte) []byte {
	b := make([]byte, 9, 9+len(p))
	b[0], b[1], b[2] = byte(len(p)>>16), byte(len(p)>>8), byte(len(p))
	b[3], b[4] = typ, flags
	binary.BigEndian.PutUint32(b[5:], sid)
	return append(b, p...)
}

// Padding, CONTINUATION and RST_STREAM, and the same bytes cut at every
// position give the same records.
func TestFramingAndSegmentation(t *testing.T) {
	enc := new(bytes.Buffer)
	he := hpack.NewEncoder(enc)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":path", Value: "/upload"},
		{Name: ":authority", Value: "api.example"}, {Name: "content-type", Value: "text/plain"}} {
		he.WriteField(f)
	}
	hb := enc.Bytes()
	var client []byte
	client = append(client, Preface...)
	client = append(client, frame(frameSettings, 0, 0, nil)...)
	client = append(client, frame(frameHeaders, 0, 1, hb[:3])...)
	client = append(client, frame(frameContinuation, flagEndHeaders, 1, hb[3:])...)
	padded := append([]byte{4}, []byte("hello")...)
	padded = append(padded, 0, 0, 0, 0)
	client = append(client, frame(frameData, flagPadded|flagEndStream, 1, padded)...)
	client = append(client, frame(frameHeaders, flagEndHeaders|flagEndStream, 3, []byte{0x82, 0x84})...) // GET /
	enc.Reset()
	he2 := hpack.NewEncoder(enc)
	he2.WriteField(hpack.HeaderField{Name: ":status", Value: "201"})
	var server []byte
	server = append(server, frame(frameSettings, 0, 0, nil)...)
	server = append(server, frame(frameHeaders, flagEndHeaders|flagEndStream, 1, enc.Bytes())...)
	server = append(server, frame(frameRSTStream, 0, 3, []byte{0, 0, 0, 8})...)

	want := parse([]chunk{{Dir: stream.ClientToServer, Data: client}, {Dir: stream.ServerToClient, Data: server}}, false)
	if len(want) != 2 || want[0].Path != "/upload" || want[0].RequestBodyLen != 5 || want[0].Status != 201 ||
		want[0].Host != "api.example" || want[1].Path != "/" || extraOf(want[1], "h2.reset") != "true" {
		t.Fatalf("unexpected records: %+v", want)
	}
	for cut := 1; cut < len(client); cut++ {
		got := parse([]chunk{{Dir: stream.ClientToServer, Data: client[:cut]}, {Dir: stream.ClientToServer, Data: client[cut:]},
			{Dir: stream.ServerToClient, Data: server}}, false)
		if len(got) != 2 || got[0].Path != want[0].Path || got[0].RequestBodyLen != 5 || got[1].Path != "/" {
			t.Fatalf("cut at %d changes the records", cut)
		}
	}
}

func TestGapStopsDirection(t *testing.T) {
	info := stream.ConnInfo{ID: 1}
	var out []*wire.Transaction
	p := New(info, DefaultOptions(), nil, func(tx *wire.Transaction) { out = append(out, tx) }, true)
	ts := time.Unix(1, 0)
	p.Data(stream.ClientToServer, []byte(Preface), ts)
	p.Data(stream.ClientToServer, frame(frameHeaders, flagEndHeaders, 1, []byte{0x83, 0x84}), ts)
	p.Gap(stream.ClientToServer, 100, ts)
	p.Data(stream.ClientToServer, []byte("garbage after the gap"), ts)
	p.Close("fin", ts)
	if len(out) != 1 || !out[0].Flags.Has(wire.FlagGap) || !out[0].Flags.Has(wire.FlagNoResponse) {
		t.Fatalf("got %+v", out)
	}
}

func FuzzHTTP2(f *testing.F) {
	f.Add([]byte(Preface), []byte{})
	f.Add(frame(frameHeaders, flagEndHeaders|flagPadded, 1, []byte{200, 1}), frame(frameData, flagPadded, 1, []byte{3}))
	f.Add(frame(frameContinuation, 0, 1, []byte{0xff, 0xff}), frame(frameGoAway, 0, 0, []byte{0, 0, 0, 1, 0, 0, 0, 0}))
	f.Fuzz(func(t *testing.T, c, s []byte) {
		p := New(stream.ConnInfo{Midstream: true}, DefaultOptions(), nil, func(*wire.Transaction) {}, false)
		ts := time.Unix(1, 0)
		for i := 0; i < len(c) || i < len(s); i += 7 {
			if i < len(c) {
				p.Data(stream.ClientToServer, c[i:min(i+7, len(c))], ts)
			}
			if i < len(s) {
				p.Data(stream.ServerToClient, s[i:min(i+7, len(s))], ts)
			}
		}
		p.Close("fin", ts)
	})
}

func BenchmarkParseStreams(b *testing.B) {
	enc := new(bytes.Buffer)
	he := hpack.NewEncoder(enc)
	var client, server []byte
	client = append(client, Preface...)
	for i := 0; i < 100; i++ {
		sid := uint32(2*i + 1)
		enc.Reset()
		for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":path", Value: "/api/items/" + strconv.Itoa(i)},
			{Name: ":authority", Value: "shop.example"}, {Name: "authorization", Value: "Bearer fp:0123456789abcdef"}} {
			he.WriteField(f)
		}
		client = append(client, frame(frameHeaders, flagEndHeaders|flagEndStream, sid, enc.Bytes())...)
	}
	re := new(bytes.Buffer)
	rhe := hpack.NewEncoder(re)
	body := bytes.Repeat([]byte("{\"k\":1}"), 100)
	for i := 0; i < 100; i++ {
		re.Reset()
		rhe.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		rhe.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/json"})
		server = append(server, frame(frameHeaders, flagEndHeaders, uint32(2*i+1), re.Bytes())...)
		server = append(server, frame(frameData, flagEndStream, uint32(2*i+1), body)...)
	}
	b.SetBytes(int64(len(client) + len(server)))
	b.ReportAllocs()
	m := NewMetrics(nil)
	for i := 0; i < b.N; i++ {
		n := 0
		p := New(stream.ConnInfo{}, DefaultOptions(), m, func(*wire.Transaction) { n++ }, true)
		p.Data(stream.ClientToServer, client, time.Unix(1, 0))
		p.Data(stream.ServerToClient, server, time.Unix(1, 0))
		p.Close("fin", time.Unix(2, 0))
		if n != 100 {
			b.Fatal(n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/stream")
}

func TestH2CUpgradeStreamOne(t *testing.T) {
	var out []*wire.Transaction
	req := []wire.Header{{Name: ":method", Value: "GET"}, {Name: ":path", Value: "/v1/status"}, {Name: ":authority", Value: "svc.test"}}
	p := NewUpgraded(stream.ConnInfo{ID: 2}, DefaultOptions(), nil, func(tx *wire.Transaction) { out = append(out, tx) }, 1, req, time.Unix(1, 0))
	enc := new(bytes.Buffer)
	hpack.NewEncoder(enc).WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	p.Data(stream.ClientToServer, []byte(Preface), time.Unix(1, 0))
	p.Data(stream.ServerToClient, frame(frameHeaders, flagEndHeaders, 1, enc.Bytes()), time.Unix(2, 0))
	p.Data(stream.ServerToClient, frame(frameData, flagEndStream, 1, []byte("ok")), time.Unix(2, 0))
	if len(out) != 1 || out[0].Path != "/v1/status" || out[0].Status != 200 || out[0].ResponseBodyLen != 2 || out[0].Index != 1 || out[0].Flags != 0 {
		t.Fatalf("got %+v", out)
	}
}

// TestStreamingReport: a stream whose response is still open
// StreamReportAfter after it started is reported then, once, with the
// body so far; its end adds no second record.
func TestStreamingReport(t *testing.T) {
	enc := new(bytes.Buffer)
	he := hpack.NewEncoder(enc)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":path", Value: "/events"}, {Name: ":authority", Value: "feed.example"}} {
		he.WriteField(f)
	}
	req := frame(frameHeaders, flagEndHeaders|flagEndStream, 1, enc.Bytes())
	enc.Reset()
	he.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	he.WriteField(hpack.HeaderField{Name: "content-type", Value: "text/event-stream"})
	resp := frame(frameHeaders, flagEndHeaders, 1, enc.Bytes())

	m := NewMetrics(nil)
	opts := DefaultOptions()
	opts.StreamReportAfter = 10 * time.Second
	var out []*wire.Transaction
	p := New(stream.ConnInfo{ID: 1}, opts, m, func(tx *wire.Transaction) { out = append(out, tx) }, true)
	t0 := time.Unix(100, 0)
	p.Data(stream.ClientToServer, append([]byte(Preface), req...), t0)
	p.Data(stream.ServerToClient, append(resp, frame(frameData, 0, 1, []byte("data: 1\n\n"))...), t0.Add(time.Second))
	p.Tick(t0.Add(10 * time.Second))
	if len(out) != 0 {
		t.Fatalf("reported after 9s of streaming, the limit is 10s")
	}
	p.Tick(t0.Add(11 * time.Second))
	if len(out) != 1 {
		t.Fatalf("%d records after 10s of streaming, want 1", len(out))
	}
	tx := out[0]
	if tx.Path != "/events" || tx.Status != 200 || !tx.Flags.Has(wire.FlagStreaming|wire.FlagResponseTruncated) ||
		string(tx.ResponseBody) != "data: 1\n\n" || !tx.ResponseEnd.Equal(t0.Add(11*time.Second)) {
		t.Fatalf("streaming record: path %s status %d flags %v body %q end %v", tx.Path, tx.Status, tx.Flags.Names(), tx.ResponseBody, tx.ResponseEnd)
	}
	p.Data(stream.ServerToClient, frame(frameData, 0, 1, []byte("data: 2\n\n")), t0.Add(20*time.Second))
	if string(tx.ResponseBody) != "data: 1\n\n" {
		t.Errorf("the reported record changed afterwards: body %q", tx.ResponseBody)
	}
	p.Tick(t0.Add(30 * time.Second))
	p.Data(stream.ServerToClient, frame(frameData, flagEndStream, 1, nil), t0.Add(31*time.Second))
	p.Close("fin", t0.Add(32*time.Second))
	if len(out) != 1 {
		t.Fatalf("the streamed response was reported %d times", len(out))
	}
	var mv dto.Metric
	if err := m.Streaming.Write(&mv); err != nil {
		t.Fatal(err)
	}
	if v := mv.GetCounter().GetValue(); v != 1 {
		t.Errorf("apiscout_http2_streaming_reported_total %v, want 1", v)
	}
}
