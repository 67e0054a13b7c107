package tlsmeta

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/apiscout/apiscout/internal/connrec"
	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "api.shop.test", Organization: []string{"Shop"}},
		DNSNames: []string{"api.shop.test", "shop.test"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// handshake runs a real crypto/tls server and client on loopback and
// returns the bytes the server saw.
func handshake(t *testing.T, maxVersion uint16) []connrec.Chunk {
	t.Helper()
	ln, err := connrec.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cert := selfSigned(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: maxVersion,
			NextProtos: []string{"h2", "http/1.1"}})
		buf := make([]byte, 64)
		n, _ := s.Read(buf)
		s.Write(buf[:n])
		s.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "api.shop.test", InsecureSkipVerify: true,
		NextProtos: []string{"h2", "http/1.1"}, MaxVersion: maxVersion})
	if _, err := tc.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	io.ReadAll(tc)
	tc.Close()
	<-done
	return ln.Rec.Conns()[0]
}

func parse(chunks []connrec.Chunk) []*wire.Transaction {
	var out []*wire.Transaction
	p := New(stream.ConnInfo{ID: 9}, Options{}, nil, func(tx *wire.Transaction) { out = append(out, tx) })
	connrec.Replay(p, chunks, time.Now())
	return out
}

func extra(tx *wire.Transaction) map[string]string {
	m := map[string]string{}
	for _, h := range tx.Extra {
		m[h.Name] = h.Value
	}
	return m
}

func TestRealHandshakes(t *testing.T) {
	for _, tc := range []struct {
		max      uint16
		version  string
		wantCert bool
		alpn     string // the server's choice is encrypted in TLS 1.3
	}{{tls.VersionTLS12, "TLS 1.2", true, "h2"}, {tls.VersionTLS13, "TLS 1.3", false, ""}} {
		t.Run(tc.version, func(t *testing.T) {
			txs := parse(handshake(t, tc.max))
			if len(txs) != 1 {
				t.Fatalf("%d records", len(txs))
			}
			tx := txs[0]
			e := extra(tx)
			if tx.Protocol != "tls" || tx.Host != "api.shop.test" || e["tls.sni"] != "api.shop.test" {
				t.Errorf("protocol %s host %s", tx.Protocol, tx.Host)
			}
			if e["tls.version"] != tc.version || e["tls.alpn"] != tc.alpn || e["tls.client_alpn"] != "h2,http/1.1" || !strings.HasPrefix(e["tls.cipher"], "TLS_") {
				t.Errorf("metadata %v", e)
			}
			if got := e["tls.cert_subject"] != ""; got != tc.wantCert {
				t.Errorf("certificate visible = %v, want %v (TLS 1.3 encrypts it)", got, tc.wantCert)
			}
			if tc.wantCert && (e["tls.cert_sans"] != "api.shop.test,shop.test" || !strings.Contains(e["tls.cert_subject"], "CN=api.shop.test")) {
				t.Errorf("certificate %v", e)
			}
			ja4 := e["tls.ja4"]
			if len(ja4) != 36 || ja4[0] != 't' || ja4[3] != 'd' || ja4[8:10] != "h2" {
				t.Errorf("ja4 %q", ja4)
			}
			if len(e["tls.ja3"]) != 32 || strings.Count(e["tls.ja3_string"], ",") != 4 {
				t.Errorf("ja3 %q %q", e["tls.ja3"], e["tls.ja3_string"])
			}
			if tx.RequestBodyWireLen == 0 || tx.ResponseBodyWireLen == 0 {
				t.Errorf("application bytes %d/%d", tx.RequestBodyWireLen, tx.ResponseBodyWireLen)
			}
		})
	}
}

func TestSegmentationInvariance(t *testing.T) {
	chunks := handshake(t, tls.VersionTLS12)
	want := extra(parse(chunks)[0])
	var bytewise []connrec.Chunk
	for _, c := range chunks {
		for i := range c.Data {
			bytewise = append(bytewise, connrec.Chunk{Dir: c.Dir, Data: c.Data[i : i+1]})
		}
	}
	got := extra(parse(bytewise)[0])
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q one byte at a time, %q whole", k, got[k], v)
		}
	}
}

func TestGREASEAndJA4Vector(t *testing.T) {
	ch := &ClientHello{
		LegacyVersion:     0x0303,
		Ciphers:           []uint16{0x0a0a, 0x1301, 0x1302, 0xc02b},
		Extensions:        []uint16{0x1a1a, 0, 16, 43, 13, 10},
		SNI:               "x.test",
		ALPN:              []string{"h2"},
		SupportedVersions: []uint16{0x2a2a, 0x0304, 0x0303},
		Groups:            []uint16{0x3a3a, 29, 23},
		PointFormats:      []uint8{0},
		SignatureAlgs:     []uint16{0x0403, 0x0804},
	}
	s, _ := ch.JA3()
	if s != "771,4865-4866-49195,0-16-43-13-10,29-23,0" {
		t.Errorf("ja3 string %q", s)
	}
	got := ch.JA4()
	// t, 13, d, 3 ciphers, 5 extensions, h2; hashes of the sorted lists.
	want := "t13d0305h2_" + hash12("1301,1302,c02b") + "_" + hash12("000a,000d,002b_0403,0804")
	if got != want {
		t.Errorf("ja4 %q, want %q", got, want)
	}
}

func TestNotTLS(t *testing.T) {
	var out []*wire.Transaction
	p := New(stream.ConnInfo{}, Options{}, nil, func(tx *wire.Transaction) { out = append(out, tx) })
	p.Data(stream.ClientToServer, []byte("GET / HTTP/1.1\r\n\r\n"), time.Unix(1, 0))
	p.Close("fin", time.Unix(2, 0))
	if len(out) != 0 {
		t.Fatalf("plain text reported as TLS: %+v", out)
	}
}

func FuzzClientHello(f *testing.F) {
	f.Add([]byte{3, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		if ch, err := ParseClientHello(b); err == nil {
			ch.JA3()
			ch.JA4()
		}
		ParseServerHello(b)
		parseCertificate(b, false)
	})
}

func FuzzConn(f *testing.F) {
	f.Add([]byte{22, 3, 1, 0, 5, 1, 0, 0, 1, 0}, []byte{22, 3, 3, 0, 4, 2, 0, 0, 0})
	f.Fuzz(func(t *testing.T, c, s []byte) {
		p := New(stream.ConnInfo{}, Options{}, nil, func(*wire.Transaction) {})
		p.Data(stream.ClientToServer, c, time.Unix(1, 0))
		p.Data(stream.ServerToClient, s, time.Unix(1, 0))
		p.Close("fin", time.Unix(1, 0))
	})
}

func BenchmarkHandshake(b *testing.B) {
	t := &testing.T{}
	chunks := handshake(t, tls.VersionTLS12)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p := New(stream.ConnInfo{}, Options{}, nil, func(*wire.Transaction) {})
		connrec.Replay(p, chunks, time.Unix(1, 0))
	}
}
