package httpparse

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

func dataScript(opts Options, evs ...event) script { return script{opts: opts, events: evs} }

func cdata(s string) event { return event{kind: "data", dir: stream.ClientToServer, data: []byte(s)} }
func sdata(s string) event { return event{kind: "data", dir: stream.ServerToClient, data: []byte(s)} }

const okResp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

// TestLimits feeds hostile inputs and checks the record, the counter
// that names the reason, and that the next message is still found.
func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sc        script
		reason    string
		wantFirst wire.Flags
		wantNext  string // path of the message after the hostile one ("" if none)
	}{
		{
			name:      "1MB header line",
			sc:        dataScript(Options{}, cdata("GET /big HTTP/1.1\r\nX-Big: "+strings.Repeat("a", 1<<20)+"\r\n\r\nGET /next HTTP/1.1\r\n\r\n"), sdata(okResp+okResp)),
			reason:    ReasonHeaderTooLarge,
			wantFirst: wire.FlagUnparsable,
			wantNext:  "/next",
		},
		{
			name:      "1MB request line",
			sc:        dataScript(Options{}, cdata("GET /"+strings.Repeat("a", 1<<20)+" HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n"), sdata(okResp+okResp)),
			reason:    ReasonHeaderTooLarge,
			wantFirst: wire.FlagUnparsable,
			wantNext:  "/next",
		},
		{
			name:      "many headers",
			sc:        dataScript(Options{MaxHeaderBytes: 64 << 20}, cdata("GET /many HTTP/1.1\r\n"+strings.Repeat("X-A: b\r\n", 200000)+"\r\nGET /next HTTP/1.1\r\n\r\n"), sdata(okResp+okResp)),
			reason:    ReasonTooManyHeaders,
			wantFirst: wire.FlagUnparsable,
			wantNext:  "/next",
		},
		{
			name:      "huge chunk size",
			sc:        dataScript(Options{MaxChunkSize: 1 << 20}, cdata("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffff\r\nGET /next HTTP/1.1\r\n\r\n"), sdata(okResp+okResp)),
			reason:    ReasonChunkTooLarge,
			wantFirst: wire.FlagUnparsable,
			wantNext:  "/next",
		},
		{
			name:      "random bytes",
			sc:        dataScript(Options{}, cdata("\x00\x01\x02\xff\xfe binary \x00\r\n\x80\x81GET /next HTTP/1.1\r\n\r\nGET /next2 HTTP/1.1\r\n\r\n"), sdata(okResp+okResp)),
			reason:    ReasonBadStartLine,
			wantFirst: wire.FlagUnparsable,
			wantNext:  "/next2",
		},
		{
			name: "pipelining deeper than MaxPending",
			sc: dataScript(Options{MaxPending: 2}, cdata(strings.Repeat("GET /p HTTP/1.1\r\n\r\n", 3)),
				sdata(okResp+okResp)),
			reason:    ReasonPendingOverflow,
			wantFirst: wire.FlagNoResponse,
			wantNext:  "/p",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			res := runScript(tc.sc, whole, m)
			if got := counterValue(m.problems.WithLabelValues(tc.reason)); got < 1 {
				t.Errorf("problems_total{reason=%q} = %v, want at least 1", tc.reason, got)
			}
			if len(res.txs) == 0 {
				t.Fatal("no records")
			}
			if !res.txs[0].Flags.Has(tc.wantFirst) {
				t.Errorf("first record flags %v, want %v", res.txs[0].Flags, tc.wantFirst)
			}
			if tc.wantNext != "" {
				last := res.txs[len(res.txs)-1]
				if last.Path != tc.wantNext || last.Status != 200 || last.Flags.Has(wire.FlagUnparsable) {
					t.Errorf("last record %s %d %v, want %s 200 parsed", last.Path, last.Status, last.Flags, tc.wantNext)
				}
			}
			for _, tx := range res.txs {
				if len(tx.RequestHeaders) > DefaultMaxHeaders {
					t.Errorf("%d headers kept, cap %d", len(tx.RequestHeaders), DefaultMaxHeaders)
				}
			}
		})
	}
}

// TestBoundedBuffers checks that what a connection holds stays within its
// caps however the hostile bytes arrive.
func TestBoundedBuffers(t *testing.T) {
	f := NewFactory(Options{}, nil, nil)
	p := f(stream.ConnInfo{ID: 1, Client: clientAddr, Server: serverAddr}, func(*wire.Transaction) {})
	c := p.(*conn)
	line := []byte(strings.Repeat("a", 1000))
	c.Data(stream.ClientToServer, []byte("GET / HTTP/1.1\r\nX: "), t0)
	for i := 0; i < 5000; i++ { // 5 MB without a line end
		c.Data(stream.ClientToServer, line, t0)
		if len(c.req.buf) > DefaultMaxHeaderBytes {
			t.Fatalf("head buffer %d bytes, cap %d", len(c.req.buf), DefaultMaxHeaderBytes)
		}
	}
	c.Data(stream.ClientToServer, []byte("GET /u HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"), t0)
	for i := 0; i < 500; i++ { // held bytes while the server says nothing
		c.Data(stream.ClientToServer, line, t0)
		if len(c.req.hold) > DefaultUpgradeHoldLimit {
			t.Fatalf("held %d bytes, cap %d", len(c.req.hold), DefaultUpgradeHoldLimit)
		}
	}
}

func TestMidstreamIgnored(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	f := NewFactory(Options{Midstream: false}, nil, m)
	var n int
	p := f(stream.ConnInfo{ID: 1, Midstream: true}, func(*wire.Transaction) { n++ })
	p.Data(stream.ClientToServer, []byte("GET / HTTP/1.1\r\n\r\n"), t0)
	p.Data(stream.ServerToClient, []byte(okResp), t0)
	p.Close("fin", t0)
	if n != 0 {
		t.Errorf("%d records from an ignored midstream connection", n)
	}
	if got := counterValue(m.problems.WithLabelValues(ReasonMidstreamIgnored)); got != 1 {
		t.Errorf("midstream_ignored = %v, want 1", got)
	}
}

// TestResponseTimeoutPacketTime: the timeout follows packet time given to
// Tick, not the wall clock.
func TestResponseTimeoutPacketTime(t *testing.T) {
	var got []*wire.Transaction
	f := NewFactory(Options{ResponseTimeout: 10 * time.Second}, nil, nil)
	p := f(stream.ConnInfo{ID: 1}, func(tx *wire.Transaction) { got = append(got, tx) })
	p.Data(stream.ClientToServer, []byte("GET / HTTP/1.1\r\n\r\n"), t0)
	p.Tick(t0.Add(9 * time.Second))
	if len(got) != 0 {
		t.Fatalf("emitted after 9s of packet time, timeout is 10s")
	}
	p.Tick(t0.Add(10 * time.Second))
	if len(got) != 1 || !got[0].Flags.Has(wire.FlagNoResponse) {
		t.Fatalf("want one no_response record after 10s, got %d", len(got))
	}
	// A late response has no request left to answer.
	p.Data(stream.ServerToClient, []byte(okResp), t0.Add(11*time.Second))
	if len(got) != 2 || !got[1].Flags.Has(wire.FlagNoRequest) {
		t.Fatalf("late response: want a no_request record, got %d records", len(got))
	}
}

// TestRecordFields checks the fields the jsonl output promises by name.
func TestRecordFields(t *testing.T) {
	res := runScript(loadCase(t, "testdata/keepalive.case"), whole, nil)
	if len(res.txs) != 2 {
		t.Fatalf("%d records, want 2", len(res.txs))
	}
	tx := res.txs[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"conn_id", tx.ConnID, uint64(7)},
		{"index", res.txs[1].Index, uint32(1)},
		{"client", tx.Client, clientAddr},
		{"server", tx.Server, serverAddr},
		{"method", tx.Method, "GET"},
		{"host", tx.Host, "api.example.com"},
		{"path", tx.Path, "/api/users"},
		{"query", tx.Query, "limit=10&page=2"},
		{"version", tx.Version, "HTTP/1.1"},
		{"protocol", tx.Protocol, "http/1.1"},
		{"status", tx.Status, 200},
		{"reason", tx.Reason, "OK"},
		{"response_content_type", tx.ResponseContentType, "application/json"},
		{"response_body_len", tx.ResponseBodyLen, int64(13)},
		{"request_body_len", res.txs[1].RequestBodyLen, int64(16)},
		{"header case", tx.RequestHeaders[1].Name, "User-Agent"},
		{"ts", tx.RequestStart, t0.Add(time.Millisecond)},
		{"response_start", tx.ResponseStart, t0.Add(2 * time.Millisecond)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// TestIdleConnectionHoldsNoBuffers: between messages a connection keeps
// no head or body buffer (they go back to the factory's pools), which is
// what lets a sensor track many idle keep-alive connections.
func TestIdleConnectionHoldsNoBuffers(t *testing.T) {
	f := NewFactory(Options{}, nil, nil)
	p := f(stream.ConnInfo{ID: 1}, func(*wire.Transaction) {})
	c := p.(*conn)
	req := "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: 1\r\n\r\n"
	resp := "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " + itoa(len(gz(jsonBody))) + "\r\n\r\n" + string(gz(jsonBody))
	for _, split := range []splitter{whole, bytewise} {
		for _, seg := range split([]byte(req)) {
			p.Data(stream.ClientToServer, seg, t0)
		}
		for _, seg := range split([]byte(resp)) {
			p.Data(stream.ServerToClient, seg, t0)
		}
		for _, h := range []*half{&c.req, &c.resp} {
			if h.bufp != nil || h.zbufp != nil || cap(h.buf) != 0 || len(c.queue) != 0 {
				t.Fatalf("%s holds buffers between messages: head %d, compressed %v, queue %d", h.dir, cap(h.buf), h.zbufp != nil, len(c.queue))
			}
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestStreamingReport: a response still arriving StreamReportAfter after
// it started is reported then, once; a compressed one without its body
// (its decoder cannot stop halfway), and one that ends in time as usual.
func TestStreamingReport(t *testing.T) {
	m := NewMetrics(nil)
	var got []*wire.Transaction
	f := NewFactory(Options{StreamReportAfter: 10 * time.Second}, nil, m)
	p := f(stream.ConnInfo{ID: 1}, func(tx *wire.Transaction) { got = append(got, tx) })
	p.Data(stream.ClientToServer, []byte("GET /quick HTTP/1.1\r\n\r\nGET /feed HTTP/1.1\r\n\r\n"), t0)
	p.Data(stream.ServerToClient, []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n"), t0.Add(time.Second))
	p.Tick(t0.Add(9 * time.Second))
	p.Data(stream.ServerToClient, []byte("0\r\n\r\n"), t0.Add(9*time.Second))
	if len(got) != 1 || got[0].Flags.Has(wire.FlagStreaming) {
		t.Fatalf("a response that ended in time: %d records, flags %v", len(got), got[0].Flags.Names())
	}
	p.Data(stream.ServerToClient, []byte("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n\x1f\x8b\x08\x00\r\n"),
		t0.Add(10*time.Second))
	p.Tick(t0.Add(19 * time.Second))
	if len(got) != 1 {
		t.Fatalf("reported after 9s of streaming, the limit is 10s")
	}
	p.Tick(t0.Add(20 * time.Second))
	if len(got) != 2 {
		t.Fatalf("%d records after 10s of streaming, want 2", len(got))
	}
	tx := got[1]
	if tx.Path != "/feed" || !tx.Flags.Has(wire.FlagStreaming|wire.FlagResponseTruncated) || tx.ResponseBody != nil ||
		tx.ResponseBodyWireLen != 4 || !tx.ResponseEnd.Equal(t0.Add(20*time.Second)) {
		t.Fatalf("streaming record: path %s flags %v body %q wire %d end %v", tx.Path, tx.Flags.Names(), tx.ResponseBody,
			tx.ResponseBodyWireLen, tx.ResponseEnd.Sub(t0))
	}
	p.Tick(t0.Add(40 * time.Second))
	p.Close("fin", t0.Add(41*time.Second))
	if len(got) != 2 {
		t.Fatalf("the streamed response was reported %d times", len(got)-1)
	}
	if n := counterValue(m.streaming); n != 1 {
		t.Errorf("streaming_reported_total %v, want 1", n)
	}
	if n := counterValue(m.transactions); n != 2 {
		t.Errorf("transactions_total %v, want 2", n)
	}
}
