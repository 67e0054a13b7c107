package sensor

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"

	"github.com/apiscout/apiscout/internal/connrec"
	"github.com/apiscout/apiscout/internal/grpcpeer"
	"github.com/apiscout/apiscout/internal/pcapgen"
	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

var updateProtocols = flag.Bool("update", false, "record testdata/protocols.pcap.gz again from real peers")

const protocolsCapture = "testdata/protocols.pcap.gz"

// TestProtocolCapture checks that the committed capture of real peers
// holds every protocol the segmentation tests need: HTTP/1.1 keep-alive
// with chunked, gzip, interim and pipelined messages, h2c, gRPC and
// WebSocket. With -update it records the capture again first (go test
// ./sensor -run TestProtocolCapture -update).
func TestProtocolCapture(t *testing.T) {
	if *updateProtocols {
		recordProtocols(t, protocolsCapture)
	}
	txs := run(t, invarianceConfig(), protocolsCapture)
	seen := map[string]int{}
	perConn := map[uint64]int{}
	for _, tx := range txs {
		seen[tx.Protocol]++
		perConn[tx.ConnID]++
		if len(tx.ResponseTrailers) > 0 {
			seen["trailers"]++
		}
		if tx.Flags.Has(wire.FlagUpgrade) {
			seen["upgrade"]++
		}
		if v, _ := tx.ResponseHeader("Content-Encoding"); v == "gzip" {
			seen["gzip"]++
		}
		for _, e := range tx.Extra {
			if e.Name == "interim" {
				seen["interim"]++
			}
		}
		// Bodies past the body limit are truncated and the bearer token
		// is sent in clear; anything else flagged means the recording
		// went wrong.
		const bad = wire.FlagGap | wire.FlagUnparsable | wire.FlagAmbiguousFraming | wire.FlagNoResponse |
			wire.FlagMidstream | wire.FlagRetransmitMismatch | wire.FlagDecodeError | wire.FlagNoRequest | wire.FlagOneSided
		if tx.Flags&bad != 0 {
			t.Errorf("%s %s: flags %v", tx.Method, tx.Path, tx.Flags)
		}
	}
	for _, p := range []string{"http/1.1", "h2", "grpc", "websocket", "trailers", "upgrade", "gzip", "interim"} {
		if seen[p] == 0 {
			t.Errorf("no %s record in %s (%v)", p, protocolsCapture, seen)
		}
	}
	t.Logf("%d records: %v", len(txs), seen)
}

// recordProtocols runs real servers and clients on loopback, records the
// bytes of every connection (internal/connrec) and writes them as TCP
// conversations: each recorded read or write a message 1 ms after the
// last, cut at the MSS and acknowledged.
func recordProtocols(t *testing.T, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var convs [][]pcapgen.Packet
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	add := func(server string, rec *connrec.Recorder) {
		for _, chunks := range rec.Conns() {
			n := len(convs)
			c := pcapgen.NewConn(netip.MustParseAddrPort(fmt.Sprintf("10.77.0.%d:%d", 1+n%200, 41000+n)),
				netip.MustParseAddrPort(server), start.Add(time.Duration(n)*time.Second)).Handshake()
			for _, ch := range chunks {
				c.Wait(time.Millisecond)
				if ch.Dir == stream.ClientToServer {
					c.Client(ch.Data)
				} else {
					c.Server(ch.Data)
				}
			}
			convs = append(convs, c.Wait(time.Millisecond).Close().Packets())
		}
	}
	mux := protocolsMux()

	// HTTP/1.1 keep-alive from Go's client, then pipelined requests.
	h1 := recordingServer(t, mux, false)
	cl := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, DisableCompression: true, ExpectContinueTimeout: time.Second}}
	for _, rq := range protocolRequests(h1.addr) {
		call(t, cl, rq)
	}
	cl.CloseIdleConnections()
	pipeline(t, h1.addr)
	h1.stop(t)
	add("10.77.1.1:80", h1.rec)

	// h2c with prior knowledge: the same calls, some of them at once.
	h2 := recordingServer(t, mux, true)
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	cl = &http.Client{Transport: tr}
	for _, rq := range protocolRequests(h2.addr) {
		call(t, cl, rq)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rq, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/items/%d?page=%d", h2.addr, 10+i, i), nil)
			call(t, cl, rq)
		}()
	}
	wg.Wait()
	cl.CloseIdleConnections()
	h2.stop(t)
	add("10.77.1.2:8080", h2.rec)

	// gRPC: unary, a large message, an error and a streaming call.
	ln, err := connrec.Listen()
	if err != nil {
		t.Fatal(err)
	}
	gs := grpcpeer.NewServer(nil)
	go gs.Serve(ln)
	gc, err := grpc.NewClient(ln.Addr().String(), grpcpeer.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		method string
		body   []byte
	}{
		{"/shop.v1.Catalog/GetItem", []byte("get AB-1234")},
		{"/shop.v1.Catalog/PutItem", bytes.Repeat([]byte("item data "), 9000)},
		{"/shop.v1.Catalog/Missing", []byte("x")},
	} {
		var out []byte
		gc.Invoke(ctx, m.method, &m.body, &out)
	}
	st, err := gc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/shop.v1.Catalog/Sync")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		m := []byte(fmt.Sprint("item ", i))
		st.SendMsg(&m)
	}
	st.CloseSend()
	for {
		var m []byte
		if st.RecvMsg(&m) != nil {
			break
		}
	}
	gc.Close()
	time.Sleep(100 * time.Millisecond)
	gs.Stop()
	add("10.77.1.3:50051", ln.Rec)

	// WebSocket, plain and with permessage-deflate.
	ws := recordingServer(t, mux, false)
	for _, mode := range []websocket.CompressionMode{websocket.CompressionDisabled, websocket.CompressionContextTakeover} {
		c, _, err := websocket.Dial(ctx, "ws://"+ws.addr+"/ws/feed?room=1", &websocket.DialOptions{CompressionMode: mode})
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadLimit(1 << 20)
		for _, m := range []string{"hello", strings.Repeat("ticker ", 40), strings.Repeat("snapshot ", 8000)} {
			if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.Read(ctx); err != nil {
				t.Fatal(err)
			}
		}
		c.Write(ctx, websocket.MessageBinary, []byte{0, 1, 2, 3})
		c.Read(ctx)
		c.Close(websocket.StatusNormalClosure, "bye")
	}
	time.Sleep(100 * time.Millisecond)
	ws.stop(t)
	add("10.77.1.4:80", ws.rec)

	if err := pcapgen.WriteFile(path, pcapgen.Merge(convs...)); err != nil {
		t.Fatal(err)
	}
}

func protocolsMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws/", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionContextTakeover})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, bytes.ToUpper(msg)); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("Content-Type", "application/x-ndjson")
		for i := 0; i < 5; i++ {
			fmt.Fprintf(w, "{\"event\":%d,\"data\":%q}\n", i, strings.Repeat("e", 100*i))
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Checksum", "abc123")
	})
	mux.HandleFunc("/gzip", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		for i := 0; i < 400; i++ {
			fmt.Fprintf(zw, `{"id":%d,"name":"item %d","price":%d.99}`+"\n", i, i, i%50)
		}
		zw.Close()
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(bytes.Repeat([]byte("0123456789abcdef"), 12000))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "DELETE":
			w.WriteHeader(http.StatusNoContent)
			return
		case strings.HasPrefix(r.URL.Path, "/missing"):
			w.WriteHeader(http.StatusNotFound)
		case r.Method == "POST":
			w.WriteHeader(http.StatusCreated)
		}
		fmt.Fprintf(w, `{"path":%q,"proto":%q,"received":%d}`, r.URL.Path, r.Proto, len(body))
	})
	return mux
}

// protocolRequests are the calls made on HTTP/1.1 and h2c alike.
func protocolRequests(addr string) []*http.Request {
	base := "http://" + addr
	mk := func(method, path string, body []byte, hdr ...string) *http.Request {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		rq, _ := http.NewRequest(method, base+path, rd)
		for i := 0; i+1 < len(hdr); i += 2 {
			rq.Header.Set(hdr[i], hdr[i+1])
		}
		return rq
	}
	return []*http.Request{
		mk("GET", "/items/1?expand=price", nil, "Authorization", "Bearer abc.def.ghi"),
		mk("POST", "/items", []byte(`{"name":"lamp","price":12.5}`), "Content-Type", "application/json"),
		mk("GET", "/stream", nil),
		mk("GET", "/gzip", nil, "Accept-Encoding", "gzip"),
		mk("HEAD", "/items/2", nil),
		mk("DELETE", "/items/3", nil),
		mk("GET", "/missing/4", nil),
		mk("PUT", "/upload/5", bytes.Repeat([]byte(`{"row":"data"}`), 5000), "Expect", "100-continue", "Content-Type", "application/json"),
		mk("GET", "/big", nil),
	}
}

func call(t *testing.T, cl *http.Client, rq *http.Request) {
	resp, err := cl.Do(rq)
	if err != nil {
		t.Error(err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// pipeline sends three requests in one write and reads the answers.
func pipeline(t *testing.T, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET /items/7 HTTP/1.1\r\nHost: shop.test\r\n\r\n" +
		"POST /items/8 HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"qty\":42}\n" +
		"GET /stream HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

type recServer struct {
	addr string
	rec  *connrec.Recorder
	srv  *http.Server
}

func recordingServer(t *testing.T, h http.Handler, h2c bool) *recServer {
	ln, err := connrec.Listen()
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	if h2c {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	go srv.Serve(ln)
	return &recServer{addr: ln.Addr().String(), rec: ln.Rec, srv: srv}
}

func (s *recServer) stop(t *testing.T) {
	time.Sleep(50 * time.Millisecond) // let the last writes land
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		t.Log(err)
	}
}
