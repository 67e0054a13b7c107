package protocols

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/connrec"
	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			c.Write(r.Context(), typ, b)
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(r.URL.Path, "/missing") {
			w.WriteHeader(404)
		}
		fmt.Fprintf(w, `{"path":%q,"proto":%q}`, r.URL.Path, r.Proto)
	})
	return mux
}

func cert(t *testing.T) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "secure.test"},
		DNSNames: []string{"secure.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Real Go clients and servers speak HTTP/1.1, prior-knowledge h2c,
// WebSocket, and HTTP/2 over TLS with a key log; the assembled parsers
// report every call.
func TestRealPeers(t *testing.T) {
	ln, err := connrec.Listen()
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler(), Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	defer srv.Close()

	tln, err := connrec.Listen()
	if err != nil {
		t.Fatal(err)
	}
	tsrv := &http.Server{Handler: handler(), TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert(t)}}}
	go tsrv.ServeTLS(tln, "", "")
	defer tsrv.Close()
	keylog := filepath.Join(t.TempDir(), "keys.log")
	kf, _ := os.Create(keylog)
	defer kf.Close()

	base := "http://" + ln.Addr().String()
	h1 := &http.Client{Transport: &http.Transport{}}
	h2c := &http.Client{Transport: &http.Transport{Protocols: new(http.Protocols)}}
	h2c.Transport.(*http.Transport).Protocols.SetUnencryptedHTTP2(true)
	tlsClient := &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, KeyLogWriter: kf, ServerName: "secure.test"}}}

	want := map[string]int{}
	do := func(c *http.Client, url, label string) {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		want[label]++
	}
	for i := 0; i < 3; i++ {
		do(h1, base+fmt.Sprintf("/h1/items/%d", i), "http/1.1 GET /h1/items")
		do(h2c, base+fmt.Sprintf("/h2/items/%d", i), "h2 GET /h2/items")
		do(tlsClient, "https://"+tln.Addr().String()+fmt.Sprintf("/tls/items/%d", i), "h2 GET /tls/items")
	}
	do(h1, base+"/missing/x", "http/1.1 GET /missing/x")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.Write(ctx, websocket.MessageText, []byte(`{"hello":1}`))
	ws.Read(ctx)
	ws.Close(websocket.StatusNormalClosure, "")
	h1.CloseIdleConnections()
	h2c.CloseIdleConnections()
	tlsClient.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)

	cfg := config.Default().Sensor
	cfg.TLSKeyLog = keylog
	f, err := NewFactory(cfg, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []*wire.Transaction
	conns := append(ln.Rec.Conns(), tln.Rec.Conns()...)
	for i, c := range conns {
		p := f(stream.ConnInfo{ID: uint64(i)}, func(tx *wire.Transaction) { got = append(got, tx) })
		connrec.Replay(p, c, time.Unix(1700000000, 0))
	}
	count := map[string]int{}
	var protos []string
	for _, tx := range got {
		path := tx.Path
		if i := strings.LastIndex(path, "/"); i > 0 && strings.Contains(path, "/items/") {
			path = path[:i]
		}
		count[tx.Protocol+" "+tx.Method+" "+path]++
		protos = append(protos, tx.Protocol)
		if tx.Protocol == "websocket" && (tx.Path != "/ws" || tx.Host != ln.Addr().String()) {
			t.Errorf("websocket record without its upgrade request: host %q path %q", tx.Host, tx.Path)
		}
		if strings.Contains(tx.Path, "/tls/") && !hasExtra(tx, "tls.decrypted") {
			t.Errorf("decrypted call without its TLS mark: %+v", tx.Extra)
		}
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%s: %d records, want %d (all: %v)", k, count[k], n, count)
		}
	}
	sort.Strings(protos)
	joined := strings.Join(protos, ",")
	for _, p := range []string{"websocket", "tls"} {
		if !strings.Contains(joined, p) {
			t.Errorf("no %s record in %v", p, count)
		}
	}
}

func hasExtra(tx *wire.Transaction, k string) bool {
	for _, h := range tx.Extra {
		if h.Name == k {
			return true
		}
	}
	return false
}
