package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ui.tls_client_ca needs HTTPS and a readable file.
func TestUIClientCAValidation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(file, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                string
		cert, key, clientCA string
		want                string // "" when valid
	}{
		{"https with client CA", file, file, file, ""},
		{"client CA without https", "", "", file, "ui.tls_client_ca: set, but ui.tls_cert and ui.tls_key are not"},
		{"missing client CA", file, file, filepath.Join(dir, "absent.pem"), "ui.tls_client_ca: open "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.UI.TLSCert, c.UI.TLSKey, c.UI.TLSClientCA = tc.cert, tc.key, tc.clientCA
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid settings refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
