package tlsmeta

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apiscout/apiscout/internal/connrec"
	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// plain collects the decrypted bytes of each direction.
type plain struct{ got *[2][]byte }

func (p plain) Data(d stream.Dir, b []byte, _ time.Time) { p.got[d] = append(p.got[d], b...) }
func (p plain) Gap(stream.Dir, int, time.Time)           {}
func (p plain) Tick(time.Time)                           {}
func (p plain) Close(string, time.Time)                  {}

// session runs a real TLS exchange whose client writes a key log, and
// returns the recorded bytes and the key-log path.
func session(t *testing.T, version uint16, suites []uint16, request, response []byte) ([]connrec.Chunk, string) {
	t.Helper()
	ln, err := connrec.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cert := selfSigned(t)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: version, CipherSuites: suites})
		buf := make([]byte, len(request))
		io.ReadFull(s, buf)
		s.Write(response)
		s.Close()
	}()
	keylog := filepath.Join(t.TempDir(), "keys.log")
	kf, err := os.Create(keylog)
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "api.shop.test", InsecureSkipVerify: true, KeyLogWriter: kf,
		MaxVersion: version, CipherSuites: suites})
	if _, err := tc.Write(request); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(tc)
	if !bytes.Equal(got, response) {
		t.Fatalf("exchange failed: %q", got)
	}
	tc.Close()
	time.Sleep(20 * time.Millisecond)
	return ln.Rec.Conns()[0], keylog
}

func TestDecryptWithKeyLog(t *testing.T) {
	request := []byte("POST /api/v1/login HTTP/1.1\r\nHost: api.shop.test\r\nContent-Length: 30\r\n\r\n{\"user\":\"a\",\"password\":\"pw\"}\n")
	response := bytes.Repeat([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), 900) // spans several records
	cases := []struct {
		name    string
		version uint16
		suites  []uint16
		cipher  string
	}{
		{"TLS1.3", tls.VersionTLS13, nil, ""},
		{"TLS1.2-GCM", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
		{"TLS1.2-GCM384", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"},
		{"TLS1.2-ChaCha", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			chunks, keylog := session(t, tc.version, tc.suites, request, response)
			kl, err := OpenKeyLog(keylog)
			if err != nil {
				t.Fatal(err)
			}
			var got [2][]byte
			var alpnSeen string
			opts := Options{KeyLog: kl, Inner: func(_ stream.ConnInfo, alpn string, _ stream.Emit) stream.Parser {
				alpnSeen = alpn
				return plain{&got}
			}}
			var out []*wire.Transaction
			p := New(stream.ConnInfo{}, opts, nil, func(tx *wire.Transaction) { out = append(out, tx) })
			connrec.Replay(p, chunks, time.Unix(1, 0))
			if !bytes.Equal(got[0], request) || !bytes.Equal(got[1], response) {
				t.Fatalf("decrypted %d/%d bytes, want %d/%d", len(got[0]), len(got[1]), len(request), len(response))
			}
			e := extra(out[len(out)-1])
			if e["tls.decryption"] != "ok" || (tc.cipher != "" && e["tls.cipher"] != tc.cipher) {
				t.Errorf("metadata %v", e)
			}
			if tc.version == tls.VersionTLS13 && e["tls.cert_subject"] == "" {
				t.Errorf("the decrypted TLS 1.3 handshake should reveal the certificate: %v", e)
			}
			_ = alpnSeen
		})
	}
}

func TestDecryptWithoutKey(t *testing.T) {
	chunks, _ := session(t, tls.VersionTLS13, nil, []byte("ping"), []byte("pong"))
	empty := filepath.Join(t.TempDir(), "empty.log")
	os.WriteFile(empty, []byte("# no keys\nCLIENT_RANDOM zz 00\n"), 0o600)
	kl, err := OpenKeyLog(empty)
	if err != nil {
		t.Fatal(err)
	}
	if kl.BadLines != 1 {
		t.Errorf("bad lines %d", kl.BadLines)
	}
	var out []*wire.Transaction
	p := New(stream.ConnInfo{}, Options{KeyLog: kl}, nil, func(tx *wire.Transaction) { out = append(out, tx) })
	connrec.Replay(p, chunks, time.Unix(1, 0))
	if len(out) != 1 || extra(out[0])["tls.decryption"] != "no_key" {
		t.Fatalf("got %+v", out)
	}
	if _, err := OpenKeyLog(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing key log must fail at start")
	}
}

// TestKeysLoggedLate: on a live link the sensor sees the ServerHello, and
// the server's Finished, as soon as the client does, and the client logs
// each secret a moment after deriving it. Secrets that reach the key log
// after the sensor needed them must still decrypt the session: the
// records that came first are held and decrypted once the keys are there.
func TestKeysLoggedLate(t *testing.T) {
	request := []byte("GET /late HTTP/1.1\r\nHost: api.shop.test\r\n\r\n")
	response := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	cases := []struct {
		name    string
		version uint16
		suites  []uint16
		early   func(line string) bool // lines in the log from the start
	}{
		{"TLS1.3 all late", tls.VersionTLS13, nil, func(string) bool { return false }},
		{"TLS1.3 traffic late", tls.VersionTLS13, nil, func(l string) bool { return strings.Contains(l, "HANDSHAKE") }},
		{"TLS1.2 late", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, func(string) bool { return false }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			chunks, full := session(t, tc.version, tc.suites, request, response)
			all, err := os.ReadFile(full)
			if err != nil {
				t.Fatal(err)
			}
			var early, late []string
			for _, l := range strings.SplitAfter(string(all), "\n") {
				if tc.early(l) {
					early = append(early, l)
				} else {
					late = append(late, l)
				}
			}
			keylog := filepath.Join(t.TempDir(), "keys.log")
			if err := os.WriteFile(keylog, []byte("# keys\n"+strings.Join(early, "")), 0o600); err != nil {
				t.Fatal(err)
			}
			kl, err := OpenKeyLog(keylog)
			if err != nil {
				t.Fatal(err)
			}
			var got [2][]byte
			opts := Options{KeyLog: kl, Inner: func(stream.ConnInfo, string, stream.Emit) stream.Parser { return plain{&got} }}
			var out []*wire.Transaction
			p := New(stream.ConnInfo{}, opts, nil, func(tx *wire.Transaction) { out = append(out, tx) })
			ts := time.Unix(1, 0)
			logged := false
			for _, ch := range chunks {
				ts = ts.Add(time.Millisecond)
				p.Data(ch.Dir, ch.Data, ts)
				if !logged && ch.Dir == stream.ServerToClient {
					// The client logs its keys after the server's first flight.
					f, err := os.OpenFile(keylog, os.O_APPEND|os.O_WRONLY, 0)
					if err != nil {
						t.Fatal(err)
					}
					f.WriteString(strings.Join(late, ""))
					f.Close()
					logged = true
				}
			}
			p.Close("fin", ts)
			if !bytes.Equal(got[0], request) || !bytes.Equal(got[1], response) {
				t.Fatalf("decrypted %q / %q", got[0], got[1])
			}
			if e := extra(out[len(out)-1]); e["tls.decryption"] != "ok" {
				t.Errorf("metadata %v", e)
			}
		})
	}
}
