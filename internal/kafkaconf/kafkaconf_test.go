package kafkaconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"

	"github.com/apiscout/apiscout/internal/config"
)

// writeCert writes a self-signed certificate and its key as PEM files.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "apiscout-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	empty := filepath.Join(dir, "empty.pem")
	os.WriteFile(empty, []byte("no certificate here\n"), 0o600)
	for _, tc := range []struct {
		name    string
		set     func(*config.KafkaConfig)
		wantErr string // empty: no error
		check   func(*testing.T, *config.KafkaConfig)
	}{
		{name: "off", set: func(c *config.KafkaConfig) {}},
		{name: "system roots", set: func(c *config.KafkaConfig) { c.TLS = true }},
		{name: "CA bundle", set: func(c *config.KafkaConfig) { c.TLS, c.TLSCA = true, cert }},
		{name: "client certificate", set: func(c *config.KafkaConfig) { c.TLS, c.TLSCert, c.TLSKey = true, cert, key }},
		{name: "missing CA", set: func(c *config.KafkaConfig) { c.TLS, c.TLSCA = true, filepath.Join(dir, "nope.pem") }, wantErr: "kafka.tls_ca"},
		{name: "CA without certificate", set: func(c *config.KafkaConfig) { c.TLS, c.TLSCA = true, empty }, wantErr: "kafka.tls_ca: no certificate"},
		{name: "key missing", set: func(c *config.KafkaConfig) { c.TLS, c.TLSCert = true, cert }, wantErr: "kafka.tls_cert/kafka.tls_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default().Kafka
			tc.set(&c)
			got, err := TLS(c)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case !c.TLS && got != nil:
				t.Fatal("TLS off gave a TLS config")
			case c.TLS && got == nil:
				t.Fatal("TLS on gave none")
			case c.TLSCA != "" && got.RootCAs == nil:
				t.Fatal("CA bundle not used")
			case c.TLSCert != "" && len(got.Certificates) != 1:
				t.Fatal("client certificate not used")
			case c.TLS && got.MinVersion < 0x0303:
				t.Fatal("TLS below 1.2 allowed")
			}
			// The same settings reach both the producer's transport and the
			// consumer's dialer.
			tr, err := Transport(c, "x")
			if err != nil {
				t.Fatal(err)
			}
			d, err := Dialer(c, "x")
			if err != nil {
				t.Fatal(err)
			}
			if (tr.TLS != nil) != c.TLS || (d.TLS != nil) != c.TLS {
				t.Fatal("TLS not carried to the transport and the dialer")
			}
		})
	}
}

func TestSASLMechanisms(t *testing.T) {
	for mech, want := range map[string]string{"": "", "PLAIN": "PLAIN", "SCRAM-SHA-256": "SCRAM-SHA-256", "SCRAM-SHA-512": "SCRAM-SHA-512"} {
		c := config.Default().Kafka
		c.SASLMechanism, c.SASLUser, c.SASLPassword = mech, "u", "p"
		m, err := SASL(c)
		if err != nil {
			t.Fatalf("%q: %v", mech, err)
		}
		got := ""
		if m != nil {
			got = m.Name()
		}
		if got != want {
			t.Errorf("%q gives mechanism %q", mech, got)
		}
	}
	c := config.Default().Kafka
	c.SASLMechanism = "GSSAPI"
	if _, err := SASL(c); err == nil || !strings.Contains(err.Error(), "kafka.sasl_mechanism") {
		t.Fatalf("GSSAPI: %v", err)
	}
}

func TestCompressionAndAcks(t *testing.T) {
	for name, want := range map[string]compress.Compression{"none": 0, "gzip": compress.Gzip, "snappy": compress.Snappy, "lz4": compress.Lz4, "zstd": compress.Zstd} {
		if got, err := Compression(name); err != nil || got != want {
			t.Errorf("compression %s: %v, %v", name, got, err)
		}
	}
	if _, err := Compression("brotli"); err == nil || !strings.Contains(err.Error(), "kafka.compression") {
		t.Errorf("brotli: %v", err)
	}
	// kafka-go's zero value is no acknowledgement: never the default here.
	for name, want := range map[string]kafka.RequiredAcks{"all": kafka.RequireAll, "": kafka.RequireAll, "one": kafka.RequireOne, "none": kafka.RequireNone} {
		if got, err := Acks(name); err != nil || got != want {
			t.Errorf("acks %q: %v, %v", name, got, err)
		}
	}
	if _, err := Acks("two"); err == nil || !strings.Contains(err.Error(), "kafka.required_acks") {
		t.Errorf("two: %v", err)
	}
}
