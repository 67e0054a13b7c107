package sensor

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/grpcpeer"
	"github.com/apiscout/apiscout/internal/netns"
	"github.com/apiscout/apiscout/wire"
)

// liveGRPCServer answers every method: NotFound for .../Missing, else one
// reply per request message.
func liveGRPCServer() *grpc.Server { return grpcpeer.NewServer(nil) }

func selfSigned(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestLiveProtocols captures, on A's veth, real h2c (prior knowledge),
// gRPC, WebSocket and TLS 1.3 traffic between namespaces B and A. The
// TLS client writes a key log that the sensor reads: the decrypted HTTP
// calls are reported, and every TLS connection's SNI, version and JA4.
func TestLiveProtocols(t *testing.T) {
	pair := newPair(t, "as-live-2", 201, 2)
	a := pair.AddrA

	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
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
	mux.HandleFunc("/", liveHandler)
	h2srv := &http.Server{Handler: mux, Protocols: new(http.Protocols)}
	h2srv.Protocols.SetHTTP1(true)
	h2srv.Protocols.SetUnencryptedHTTP2(true)
	serveIn(t, pair.NSA, a+":8080", h2srv)

	gs := liveGRPCServer()
	gln, err := netns.Listen(pair.NSA, "tcp", a+":9090")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(gln)
	t.Cleanup(gs.Stop)

	tsrv := &http.Server{Handler: http.HandlerFunc(liveHandler),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{selfSigned(t, "secure.test")}}}
	tlsLn, err := netns.Listen(pair.NSA, "tcp", a+":8443")
	if err != nil {
		t.Fatal(err)
	}
	go tsrv.ServeTLS(tlsLn, "", "")
	t.Cleanup(func() { tsrv.Close() })

	keylog := filepath.Join(t.TempDir(), "sslkeys.log")
	kf, err := os.Create(keylog)
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()

	cfg := config.Default().Sensor
	cfg.Interface, cfg.RingSize, cfg.TLSKeyLog = pair.DevA, 8<<20, keylog
	s := startLive(t, pair.NSA, cfg)
	probe := nsClient(pair.NSB, false)
	s.ready(t, func(p string) error {
		resp, err := probe.Get("http://" + a + ":8080" + p)
		if err == nil {
			resp.Body.Close()
		}
		return err
	})

	// h2c with prior knowledge: one connection, several streams.
	h2tr := &http.Transport{DialContext: netns.DialContext(pair.NSB), Protocols: new(http.Protocols)}
	h2tr.Protocols.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Transport: h2tr, Timeout: 10 * time.Second}
	var h2calls []liveCall
	for i, c := range []struct {
		method       string
		status, size int
		reqLen       int
	}{{"GET", 200, 1200, 0}, {"POST", 201, 17, 3000}, {"GET", 404, 40000, 0}, {"PUT", 200, 0, 20000}, {"DELETE", 500, 5, 0}, {"GET", 200, 70000, 0}} {
		call := liveCall{method: c.method, path: fmt.Sprintf("/h2/items/%d", i), status: c.status, reqLen: c.reqLen,
			query: fmt.Sprintf("status=%d&size=%d&mode=plain", c.status, c.size), respLen: int64(c.size), respWire: int64(c.size)}
		if err := call.do(h2c, "http://"+a+":8080"); err != nil {
			t.Fatal(err)
		}
		h2calls = append(h2calls, call)
	}
	h2c.CloseIdleConnections()

	// gRPC: unary, an error status, and a bidirectional stream.
	gc, err := grpc.NewClient("passthrough:///"+a+":9090", append(grpcpeer.DialOptions(),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return netns.DialContext(pair.NSB)(ctx, "tcp", addr)
		}))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in, out := []byte("get AB-1234"), []byte(nil)
	if err := gc.Invoke(ctx, "/shop.v1.Catalog/GetItem", &in, &out); err != nil {
		t.Fatal(err)
	}
	if err := gc.Invoke(ctx, "/shop.v1.Catalog/Missing", &in, &out); status.Code(err) != codes.NotFound {
		t.Fatalf("want NotFound, got %v", err)
	}
	st, err := gc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/shop.v1.Catalog/Sync")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		m := []byte(fmt.Sprint("item ", i))
		if err := st.SendMsg(&m); err != nil {
			t.Fatal(err)
		}
	}
	st.CloseSend()
	replies := 0
	for {
		var m []byte
		if err := st.RecvMsg(&m); err != nil {
			break
		}
		replies++
	}
	if replies != 3 {
		t.Fatalf("stream: %d replies, want 3", replies)
	}
	gc.Close()

	// WebSocket: three text messages echoed, then a normal close.
	wsHTTP := &http.Client{Transport: &http.Transport{DialContext: netns.DialContext(pair.NSB)}}
	ws, _, err := websocket.Dial(ctx, "ws://"+a+":8080/ws?room=7", &websocket.DialOptions{HTTPClient: wsHTTP})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := ws.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ws.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ws.Close(websocket.StatusNormalClosure, "bye")

	// TLS 1.3 with a key log: HTTP/1.1 on one connection, HTTP/2 on another.
	tlsCalls := map[string][]liveCall{}
	for _, proto := range []string{"http/1.1", "h2"} {
		tr := &http.Transport{DialContext: netns.DialContext(pair.NSB), ForceAttemptHTTP2: proto == "h2",
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, KeyLogWriter: kf, ServerName: "secure.test", NextProtos: []string{proto}}}
		if proto == "http/1.1" {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // no h2
		}
		cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for i, size := range []int{10, 5000, 100000} {
			call := liveCall{method: "GET", path: fmt.Sprintf("/tls/%s/%d", strings.ReplaceAll(proto, "/", ""), i), status: 200,
				query: fmt.Sprintf("status=200&size=%d&mode=plain", size), respLen: int64(size), respWire: int64(size)}
			if err := call.do(cl, "https://"+a+":8443"); err != nil {
				t.Fatal(err)
			}
			tlsCalls[proto] = append(tlsCalls[proto], call)
		}
		cl.CloseIdleConnections()
	}

	// TLS connection records come when their connection ends; the
	// decrypted calls and the rest as soon as they complete.
	s.waitFor(func(txs []*wire.Transaction) bool {
		var h2, g, w, dec int
		for _, tx := range txs {
			switch {
			case tx.Protocol == "h2" && strings.HasPrefix(tx.Path, "/h2/"):
				h2++
			case tx.Protocol == "grpc":
				g++
			case tx.Protocol == "websocket":
				w++
			case strings.HasPrefix(tx.Path, "/tls/"):
				dec++
			}
		}
		return h2 >= 6 && g >= 3 && w >= 1 && dec >= 6
	})
	stats := s.stop(t)
	txs := s.sink.snapshot()
	if stats.KernelDrops != 0 || stats.Dropped != 0 {
		t.Errorf("kernel drops %d, records dropped %d; want 0", stats.KernelDrops, stats.Dropped)
	}

	t.Run("h2c", func(t *testing.T) {
		var h2 []*wire.Transaction
		for _, tx := range txs {
			if strings.HasPrefix(tx.Path, "/h2/") {
				if tx.Protocol != "h2" || tx.Version != "HTTP/2" {
					t.Errorf("%s: protocol %q version %q, want h2", tx.Path, tx.Protocol, tx.Version)
				}
				h2 = append(h2, tx)
			}
		}
		checkCalls(t, h2calls, h2)
	})
	t.Run("grpc", func(t *testing.T) {
		got := byPath(txs, "grpc")
		for _, w := range []struct{ path, method, status, reqMsgs, respMsgs string }{
			{"/shop.v1.Catalog/GetItem", "GetItem", "0", "1", "1"},
			{"/shop.v1.Catalog/Missing", "Missing", "5", "1", "0"},
			{"/shop.v1.Catalog/Sync", "Sync", "0", "3", "3"},
		} {
			tx := got[w.path]
			if tx == nil {
				t.Errorf("%s not reported (have %d gRPC records)", w.path, len(got))
				continue
			}
			e := extra(tx)
			if tx.Method != "POST" || tx.Status != 200 || e["grpc.service"] != "shop.v1.Catalog" || e["grpc.method"] != w.method ||
				e["grpc.status"] != w.status || e["grpc.request_messages"] != w.reqMsgs || e["grpc.response_messages"] != w.respMsgs {
				t.Errorf("%s: %s status %d extra %v; want grpc.status %s, %s/%s messages", w.path, tx.Method, tx.Status, e, w.status, w.reqMsgs, w.respMsgs)
			}
		}
	})
	t.Run("websocket", func(t *testing.T) {
		tx := byPath(txs, "websocket")["/ws"]
		if tx == nil {
			t.Fatal("WebSocket connection not reported")
		}
		e := extra(tx)
		if tx.Query != "room=7" || tx.Status != 101 || e["ws.client_messages"] != "3" || e["ws.server_messages"] != "3" || e["ws.close_code"] != "1000" {
			t.Errorf("websocket: query %q status %d extra %v; want 3 messages each way, close 1000", tx.Query, tx.Status, e)
		}
		if !bytes.Contains(tx.RequestBody, []byte(`{"n":2}`)) || !bytes.Contains(tx.ResponseBody, []byte(`{"N":2}`)) {
			t.Errorf("message samples: client %q server %q", tx.RequestBody, tx.ResponseBody)
		}
	})
	t.Run("tls", func(t *testing.T) {
		var meta []*wire.Transaction
		for _, tx := range txs {
			if tx.Protocol == "tls" {
				meta = append(meta, tx)
			}
		}
		if len(meta) != 2 {
			t.Errorf("%d TLS connection records, want 2", len(meta))
		}
		alpns := map[string]bool{}
		for _, tx := range meta {
			e := extra(tx)
			alpns[e["tls.alpn"]] = true
			if tx.Host != "secure.test" || e["tls.sni"] != "secure.test" || e["tls.version"] != "TLS 1.3" ||
				!strings.HasPrefix(e["tls.ja4"], "t13d") || e["tls.cert_sans"] != "secure.test" || e["tls.decryption"] != "ok" {
				t.Errorf("TLS record: host %q extra %v (sensor counters %v)", tx.Host, e, s.counters())
			}
		}
		if !alpns["h2"] || !alpns["http/1.1"] {
			t.Errorf("negotiated ALPN seen: %v, want h2 and http/1.1", alpns)
		}
		for proto, calls := range tlsCalls {
			var dec []*wire.Transaction
			for _, tx := range txs {
				if tx.Protocol != "tls" && strings.HasPrefix(tx.Path, "/tls/"+strings.ReplaceAll(proto, "/", "")+"/") {
					if e := extra(tx); e["tls.decrypted"] != "true" || e["tls.sni"] != "secure.test" {
						t.Errorf("%s: decrypted record without its TLS marks: %v", tx.Path, e)
					}
					dec = append(dec, tx)
				}
			}
			t.Run(proto, func(t *testing.T) { checkCalls(t, calls, dec) })
		}
	})
}
