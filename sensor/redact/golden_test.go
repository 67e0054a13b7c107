package redact

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/apiscout/apiscout/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// TestGoldenTransaction redacts a transaction carrying every kind of
// secret and compares it with testdata/transaction.golden.json: the
// file shows the analyzer side exactly what a redacted record looks like.
func TestGoldenTransaction(t *testing.T) {
	r := newTest(t, nil)
	tx := &wire.Transaction{
		Method: "POST", Host: "api.example.com", Path: "/v1/payments", Query: "api_key=live_123&currency=usd",
		RequestHeaders: []wire.Header{
			{Name: "Host", Value: "api.example.com"},
			{Name: "Authorization", Value: "Bearer " + jwt},
			{Name: "Cookie", Value: "session=abc123; theme=dark"},
			{Name: "X-Tenant-Secret", Value: "tenant-7"},
			{Name: "Referer", Value: "https://shop.example.com/checkout?session=s1&step=2"},
			{Name: "Content-Type", Value: "application/json"},
		},
		RequestContentType: "application/json",
		RequestBody:        []byte(`{"card":{"number":"4242 4242 4242 4242","exp":"12/30"},"email":"payer@example.org","ssn":"123-45-6789","password":"hunter2","amount":1200}`),
		Status:             201,
		ResponseHeaders: []wire.Header{
			{Name: "Set-Cookie", Value: "session=def456; Path=/; Secure; HttpOnly; SameSite=Lax"},
			{Name: "Location", Value: "/v1/payments/pay_1?token=t0k"},
		},
		ResponseContentType: "application/json",
		ResponseBody:        []byte(`{"id":"pay_1","client_secret":"pi_secret_xyz","last4":"4242","key":"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----"}`),
	}
	r.Apply(tx)
	got, err := json.MarshalIndent(struct {
		*wire.Transaction
		RequestBody  string `json:"request_body"`
		ResponseBody string `json:"response_body"`
	}{tx, string(tx.RequestBody), string(tx.ResponseBody)}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	file := filepath.Join("testdata", "transaction.golden.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (go test -run TestGoldenTransaction -update creates it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("redacted record differs from %s:\n%s", file, got)
	}
	for _, secret := range []string{"live_123", "abc123", "tenant-7", "c2lnbmF0dXJl", "4242 4242 4242 4242", "hunter2", "123-45-6789", "payer@", "def456", "t0k", "pi_secret_xyz", "MIIB"} {
		if bytes.Contains(got, []byte(secret)) {
			t.Errorf("secret %q left in the record", secret)
		}
	}
}
