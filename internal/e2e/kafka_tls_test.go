package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/kafkatest"
	"github.com/apiscout/apiscout/sensor/publish"
	"github.com/apiscout/apiscout/wire"
)

// The sensor and the analyzer reach a real broker's TLS listener, trusting
// its certificate through kafka.tls_ca; without that CA the connection is
// refused, not silently made.
func TestTLS(t *testing.T) {
	kafkatest.Broker(t) // the suite's broker must be up too; this test runs its own
	dir := t.TempDir()
	caFile, pemFile := brokerCert(t, dir)
	b := kafkatest.StartPrivate(t, 19492, "KAFKA_SSL_PORT=19495", "KAFKA_SSL_PEM="+pemFile)
	topic := kafkatest.Topic(t, b.Addr, 2)
	cfg := kcfg("127.0.0.1:19495", topic)
	cfg.TLS, cfg.TLSCA = true, caFile
	p, err := publish.New(cfg, "tls", zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*wire.Transaction
	for i := 1; i <= 50; i++ {
		recs = append(recs, tx("tls", uint64(i), fmt.Sprintf("svc%d.test", i%3)))
	}
	if err := p.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	p.Close()
	col := newCollector()
	consumeUntil(t, cfg, col, func() bool { return col.count() == 50 })

	untrusted := cfg
	untrusted.TLSCA, untrusted.MaxAttempts = "", 1
	q, err := publish.New(untrusted, "tls-untrusted", zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = q.Write(ctx, recs[:1])
	if err == nil {
		err = q.Flush(ctx)
	}
	q.Close()
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a broker certificate from an unknown authority: %v", err)
	}
}

// brokerCert writes a CA certificate (for the client) and a PEM file with
// a broker key and certificate for 127.0.0.1 signed by it (for the
// broker's PEM keystore).
func brokerCert(t *testing.T, dir string) (caFile, brokerPEM string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "apiscout test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	caFile, brokerPEM = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "broker.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	both := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	if err := os.WriteFile(brokerPEM, both, 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, brokerPEM
}
