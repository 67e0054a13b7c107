package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apiscout/apiscout/internal/simulate"
	"github.com/apiscout/apiscout/sensor/output"
	"github.com/apiscout/apiscout/wire"
)

// Redaction end to end: a simulated capture full of real secrets (JWT
// signatures, API keys, session cookies, passwords, card numbers) goes
// through the sensor's output and the whole offline analysis; none of the
// secrets may appear in anything apiscout writes: the transaction records
// that leave the sensor, the inventory, the anomalies, the reconstructed
// specs and diffs, or the logs.
func TestNoSecretLeavesApiscout(t *testing.T) {
	dir := t.TempDir()
	o := simulate.Options{Scenario: "demo", Seed: 11, Duration: 30 * time.Minute}
	secrets := map[string]bool{}
	cardRE := regexp.MustCompile(`"(card_number|from_iban)":"([^"]+)"`)
	pwRE := regexp.MustCompile(`"password":"([^"]+)"`)
	var buf bytes.Buffer
	if err := simulateTo(&buf, dir, o, false); err != nil {
		t.Fatal(err)
	}
	if _, err := simulate.Run(o, func(ex *simulate.Exchange) error {
		for _, h := range ex.ReqHeaders {
			switch strings.ToLower(h.Name) {
			case "authorization":
				if parts := strings.Split(h.Value, "."); len(parts) == 3 && len(parts[2]) > 10 {
					secrets[parts[2]] = true // the JWT's signature
				}
			case "x-api-key":
				secrets[h.Value] = true
			case "cookie":
				if _, v, ok := strings.Cut(h.Value, "="); ok {
					secrets[v] = true
				}
			}
		}
		for _, m := range cardRE.FindAllStringSubmatch(string(ex.ReqBody), -1) {
			if m[1] == "card_number" {
				secrets[m[2]] = true
			}
		}
		for _, m := range pwRE.FindAllStringSubmatch(string(ex.ReqBody), -1) {
			secrets[m[1]] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(secrets) < 50 {
		t.Fatalf("only %d secrets collected: the scenario changed", len(secrets))
	}

	logs := filepath.Join(dir, "logs.txt")
	run := func(args ...string) {
		t.Helper()
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "--log.format", "json", "--log.level", "debug", "--sensor.redact_key", "e2e-redaction-key-0123"))
		// Logs go to stderr: capture the process's stderr while the command runs.
		old := os.Stderr
		f, err := os.OpenFile(logs, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		os.Stderr = f
		err = root.Execute()
		os.Stderr = old
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "stdout-"+args[0]+".txt"), out.Bytes(), 0o600)
	}
	capture := filepath.Join(dir, "capture.pcap")
	os.MkdirAll(filepath.Join(dir, "out"), 0o755)
	run("sensor", "--pcap", capture, "--sensor.output_file", filepath.Join(dir, "out", "transactions.jsonl"), "--metrics.listen", "")
	run("analyze", "--pcap", capture, "--spec", filepath.Join(dir, "specs"), "--out", filepath.Join(dir, "out"))

	var scanned int
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || strings.HasSuffix(p, ".pcap") || strings.HasSuffix(p, ".yaml") && strings.Contains(p, "specs") ||
			strings.HasSuffix(p, "truth.json") || strings.HasSuffix(p, "labels.jsonl") {
			return nil
		}
		b, _ := os.ReadFile(p)
		if strings.HasSuffix(p, "transactions.jsonl") {
			// Bodies travel base64-encoded in JSON: search them decoded too.
			var decoded bytes.Buffer
			output.ReadJSONL(bytes.NewReader(b), func(tx *wire.Transaction) error {
				decoded.Write(tx.RequestBody)
				decoded.Write(tx.ResponseBody)
				return nil
			})
			b = append(b, decoded.Bytes()...)
		}
		scanned += len(b)
		for s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("secret %.12s… found in %s", s, p)
			}
		}
		return nil
	})
	if scanned < 100_000 {
		t.Fatalf("only %d bytes of output scanned", scanned)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "out", "transactions.jsonl")); !bytes.Contains(b, []byte("fp:")) {
		t.Fatal("the sensor's records carry no fingerprints: nothing was redacted, or nothing written")
	}
}
