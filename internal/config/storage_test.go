package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The ClickHouse TLS settings: files must be readable, the client's
// certificate and key come together, and none of them is accepted while
// TLS is off.
func TestStorageTLSValidation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(file, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	absent := filepath.Join(dir, "absent.pem")
	for _, tc := range []struct {
		name string
		set  func(s *StorageConfig)
		want string // "" when valid
	}{
		{"tls alone", func(s *StorageConfig) { s.ClickHouseTLS = true }, ""},
		{"every setting", func(s *StorageConfig) {
			s.ClickHouseTLS, s.ClickHouseTLSCA, s.ClickHouseTLSServerName = true, file, "ch.internal"
			s.ClickHouseTLSCert, s.ClickHouseTLSKey = file, file
		}, ""},
		{"cert without key", func(s *StorageConfig) { s.ClickHouseTLS, s.ClickHouseTLSCert = true, file },
			"storage.clickhouse_tls_cert and storage.clickhouse_tls_key: set both or neither"},
		{"key without cert", func(s *StorageConfig) { s.ClickHouseTLS, s.ClickHouseTLSKey = true, file },
			"storage.clickhouse_tls_cert and storage.clickhouse_tls_key: set both or neither"},
		{"missing ca", func(s *StorageConfig) { s.ClickHouseTLS, s.ClickHouseTLSCA = true, absent },
			"storage.clickhouse_tls_ca: open " + absent},
		{"missing key", func(s *StorageConfig) {
			s.ClickHouseTLS, s.ClickHouseTLSCert, s.ClickHouseTLSKey = true, file, absent
		}, "storage.clickhouse_tls_key: open " + absent},
		{"ca is a directory", func(s *StorageConfig) { s.ClickHouseTLS, s.ClickHouseTLSCA = true, dir },
			"storage.clickhouse_tls_ca: " + dir + " is a directory"},
		{"ca without tls", func(s *StorageConfig) { s.ClickHouseTLSCA = file },
			"storage.clickhouse_tls_ca: set, but storage.clickhouse_tls is false"},
		{"server name without tls", func(s *StorageConfig) { s.ClickHouseTLSServerName = "ch.internal" },
			"storage.clickhouse_tls_server_name: set, but storage.clickhouse_tls is false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Storage.Kind = "clickhouse"
			tc.set(&c.Storage)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid settings refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want an error containing %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}
