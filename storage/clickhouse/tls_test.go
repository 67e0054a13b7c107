package clickhouse

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apiscout/apiscout/storage/storagetest"
)

// tlsServer is the test server's secure native port and the CA that
// signed its certificate (deploy/dev/clickhouse.sh makes both), and a
// client certificate of that CA.
type tlsServer struct {
	addr, ca, cert, key string
}

func testTLSServer(t *testing.T) tlsServer {
	t.Helper()
	s := tlsServer{
		addr: os.Getenv("APISCOUT_TEST_CLICKHOUSE_TLS"),
		ca:   os.Getenv("APISCOUT_TEST_CLICKHOUSE_CA"),
		cert: os.Getenv("APISCOUT_TEST_CLICKHOUSE_CLIENT_CERT"),
		key:  os.Getenv("APISCOUT_TEST_CLICKHOUSE_CLIENT_KEY"),
	}
	if s.addr == "" || s.ca == "" || s.cert == "" || s.key == "" {
		t.Fatal("APISCOUT_TEST_CLICKHOUSE_TLS, _CA, _CLIENT_CERT or _CLIENT_KEY is not set: the test server has no TLS port. " +
			"Start it with `make clickhouse-up` (openssl must be installed; a server started by an older script needs " +
			"`deploy/dev/clickhouse.sh stop && deploy/dev/clickhouse.sh up`) and `eval $(deploy/dev/clickhouse.sh env)`, or run `make test`")
	}
	return s
}

// TestTLSVerification connects to the server's TLS port with each
// setting: the certificate is checked against the configured CA and name,
// and a client certificate is checked by the server.
func TestTLSVerification(t *testing.T) {
	srv := testTLSServer(t)
	strangerCert, strangerKey := selfSigned(t)
	for _, tc := range []struct {
		name string
		opts Options
		// fails is nil when the connection must succeed.
		fails func(error) bool
	}{
		{name: "ca", opts: Options{TLSCA: srv.ca}},
		{name: "ca and the certificate's name", opts: Options{TLSCA: srv.ca, TLSServerName: "localhost"}},
		{name: "ca and a client certificate of it", opts: Options{TLSCA: srv.ca, TLSCert: srv.cert, TLSKey: srv.key}},
		{name: "system roots", opts: Options{}, fails: func(err error) bool {
			var ua x509.UnknownAuthorityError
			return errors.As(err, &ua)
		}},
		{name: "wrong server name", opts: Options{TLSCA: srv.ca, TLSServerName: "clickhouse.wrong.example"}, fails: func(err error) bool {
			var he x509.HostnameError
			return errors.As(err, &he)
		}},
		{name: "client certificate of another CA", opts: Options{TLSCA: srv.ca, TLSCert: strangerCert, TLSKey: strangerKey}, fails: func(err error) bool {
			// The server's alert (which one depends on its OpenSSL). TLS
			// 1.3 ends the client's handshake before the server has
			// checked the certificate: the refusal then reaches the
			// client's first write as a reset, or its first read as the
			// alert.
			msg := err.Error()
			return strings.Contains(msg, "remote error: tls:") || errors.Is(err, syscall.ECONNRESET) ||
				errors.Is(err, syscall.EPIPE) || strings.Contains(msg, "connection reset by peer") || strings.Contains(msg, "broken pipe")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.Addr, o.TLS, o.DialTimeout = []string{srv.addr}, true, 10*time.Second
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := Open(ctx, o, false, nil, nil)
			if err == nil {
				defer s.Close()
			}
			switch {
			case tc.fails == nil && err != nil:
				t.Fatalf("connect over TLS: %v", err)
			case tc.fails != nil && err == nil:
				t.Fatalf("connected (server %s), want a certificate error", s.Features().Version)
			case tc.fails != nil && !tc.fails(err):
				t.Fatalf("error %q (%T) is not the certificate error expected", err, errors.Unwrap(err))
			}
			if err != nil {
				t.Logf("refused as expected: %v", err)
			}
		})
	}
}

// A whole write and read back over TLS.
func TestTLSRoundTrip(t *testing.T) {
	srv := testTLSServer(t)
	s := openTest(t, Options{
		Addr: []string{srv.addr}, TLS: true, TLSCA: srv.ca,
		// Dropped at cleanup through the plain port.
		Database:  testDatabase(t, testAddr(t)),
		BatchSize: 300,
	})
	ctx := context.Background()
	d := storagetest.Generate(21, testStart, 5, 100)
	if err := storagetest.WriteAll(ctx, s, d); err != nil {
		t.Fatal(err)
	}
	storagetest.CheckReadBack(t, ctx, s, d)
}

// Bad TLS files fail Open before any connection, naming the key.
func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, key := selfSigned(t)
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"missing ca", Options{TLSCA: filepath.Join(dir, "absent.pem")}, "storage.clickhouse_tls_ca: open"},
		{"ca without certificates", Options{TLSCA: notPEM}, "storage.clickhouse_tls_ca: no PEM certificate"},
		{"key that is not one", Options{TLSCert: cert, TLSKey: notPEM}, "storage.clickhouse_tls_cert/storage.clickhouse_tls_key"},
		{"key without certificate", Options{TLSKey: key}, "storage.clickhouse_tls_cert/storage.clickhouse_tls_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.Addr, o.TLS = []string{"127.0.0.1:1"}, true
			_, err := Open(context.Background(), o, false, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// selfSigned writes a client certificate and key no test CA signed.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stranger"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
