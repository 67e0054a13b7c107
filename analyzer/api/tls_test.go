package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiscout/apiscout/internal/config"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// issue signs a server (127.0.0.1 and localhost) or client certificate
// and writes it and its key as PEM files.
func (ca *testCA) issue(t *testing.T, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "apiscout test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.IPAddresses, tmpl.DNSNames = []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	return certFile, keyFile
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// serveTLS starts the real server (New, Listen, Serve) on a free
// loopback port with c's TLS settings and returns its address.
func serveTLS(t *testing.T, c config.UIConfig) string {
	t.Helper()
	c.Listen = "127.0.0.1:0"
	s, err := New(Options{Config: c, Reader: fixture(), Reg: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// get asks for the services with the read token over a client with tc.
func get(addr string, tc *tls.Config) (*http.Response, []byte, error) {
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer cl.CloseIdleConnections()
	req, err := http.NewRequest("GET", "https://"+addr+"/api/v1/services", nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+readToken)
	resp, err := cl.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// The UI over HTTPS: the certificate verifies against its CA, the
// security headers include HSTS, session cookies are Secure, and
// neither plain HTTP nor TLS before 1.2 gets an answer with data.
func TestServeTLS(t *testing.T) {
	ca := newTestCA(t, "apiscout ui test CA")
	c := testConfig()
	c.TLSCert, c.TLSKey = ca.issue(t, x509.ExtKeyUsageServerAuth)
	addr := serveTLS(t, c)

	t.Run("https with the CA", func(t *testing.T) {
		resp, body, err := get(addr, &tls.Config{RootCAs: ca.pool()})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "shop.example") {
			t.Fatalf("status %d body %.200s", resp.StatusCode, body)
		}
		if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
			t.Fatalf("connection state %+v", resp.TLS)
		}
		if h := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(h, "max-age=") || h == "max-age=0" {
			t.Errorf("Strict-Transport-Security %q, want a max-age", h)
		}
	})

	t.Run("session cookie is Secure", func(t *testing.T) {
		cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool()}}}
		defer cl.CloseIdleConnections()
		resp, err := cl.Post("https://"+addr+"/api/v1/session", "application/json", strings.NewReader(`{"token":"`+readToken+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if len(resp.Cookies()) == 0 {
			t.Fatalf("status %d and no session cookie", resp.StatusCode)
		}
		for _, ck := range resp.Cookies() {
			if !ck.Secure {
				t.Errorf("cookie %s is not Secure over HTTPS", ck.Name)
			}
		}
	})

	t.Run("https without the CA", func(t *testing.T) {
		_, _, err := get(addr, &tls.Config{})
		var ua x509.UnknownAuthorityError
		if !errors.As(err, &ua) {
			t.Fatalf("error %v, want an unknown authority", err)
		}
	})

	t.Run("plain http", func(t *testing.T) {
		cl := &http.Client{Timeout: 10 * time.Second}
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/services", nil)
		req.Header.Set("Authorization", "Bearer "+readToken)
		resp, err := cl.Do(req)
		if err != nil {
			t.Logf("refused: %v", err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 || strings.Contains(string(body), "shop.example") {
			t.Fatalf("plain HTTP answered %d %.200s", resp.StatusCode, body)
		}
	})

	for _, v := range []struct {
		name    string
		version uint16
		refused bool
	}{
		{"TLS 1.0", tls.VersionTLS10, true},
		{"TLS 1.1", tls.VersionTLS11, true},
		{"TLS 1.2", tls.VersionTLS12, false},
		{"TLS 1.3", tls.VersionTLS13, false},
	} {
		t.Run(v.name, func(t *testing.T) {
			d := &net.Dialer{Timeout: 10 * time.Second}
			conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
				RootCAs: ca.pool(), MinVersion: v.version, MaxVersion: v.version, //nolint:gosec // old versions on purpose
			})
			if err == nil {
				conn.Close()
			}
			switch {
			case v.refused && err == nil:
				t.Fatalf("%s handshake succeeded", v.name)
			case v.refused && !strings.Contains(err.Error(), "protocol version"):
				t.Fatalf("error %v, want a protocol version alert", err)
			case !v.refused && err != nil:
				t.Fatalf("%s refused: %v", v.name, err)
			}
		})
	}
}

// With ui.tls_client_ca, only clients with a certificate of that CA are
// answered.
func TestServeMutualTLS(t *testing.T) {
	serverCA, clientCA, stranger := newTestCA(t, "server CA"), newTestCA(t, "client CA"), newTestCA(t, "stranger CA")
	c := testConfig()
	c.TLSCert, c.TLSKey = serverCA.issue(t, x509.ExtKeyUsageServerAuth)
	c.TLSClientCA = filepath.Join(t.TempDir(), "clients.pem")
	writeFile(t, c.TLSClientCA, clientCA.pem)
	addr := serveTLS(t, c)

	load := func(ca *testCA) []tls.Certificate {
		certFile, keyFile := ca.issue(t, x509.ExtKeyUsageClientAuth)
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{cert}
	}
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		ok    bool
	}{
		{"certificate of the client CA", load(clientCA), true},
		{"no certificate", nil, false},
		{"certificate of another CA", load(stranger), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := get(addr, &tls.Config{RootCAs: serverCA.pool(), Certificates: tc.certs})
			switch {
			case tc.ok && err != nil:
				t.Fatal(err)
			case tc.ok && (resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "shop.example")):
				t.Fatalf("status %d body %.200s", resp.StatusCode, body)
			case !tc.ok && err == nil:
				t.Fatalf("answered %d without a trusted client certificate", resp.StatusCode)
			case !tc.ok && !strings.Contains(err.Error(), "remote error: tls:"):
				t.Fatalf("error %v, want the server's TLS alert", err)
			}
		})
	}
}

// Bad TLS files fail New, before anything listens, naming the key.
func TestServeTLSConfigErrors(t *testing.T) {
	ca := newTestCA(t, "ca")
	cert, key := ca.issue(t, x509.ExtKeyUsageServerAuth)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	writeFile(t, notPEM, []byte("not a certificate"))
	for _, tc := range []struct {
		name                string
		cert, key, clientCA string
		want                string
	}{
		{"missing certificate", filepath.Join(t.TempDir(), "absent.pem"), key, "", "ui.tls_cert/ui.tls_key"},
		{"key that is not one", cert, notPEM, "", "ui.tls_cert/ui.tls_key"},
		{"client CA without certificates", cert, key, notPEM, "ui.tls_client_ca: no PEM certificate"},
		{"client CA without TLS", "", "", notPEM, "ui.tls_client_ca: set, but ui.tls_cert and ui.tls_key are not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			c.TLSCert, c.TLSKey, c.TLSClientCA = tc.cert, tc.key, tc.clientCA
			_, err := New(Options{Config: c, Reader: NewMemory(), Reg: prometheus.NewRegistry()})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
