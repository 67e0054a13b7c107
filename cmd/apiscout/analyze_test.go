package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apiscout/apiscout/internal/simulate"
)

// apiscout analyze on a simulated capture: the inventory names every
// endpoint with its true classification and the labelled attacks appear
// as anomalies.
func TestAnalyzeCommand(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	if err := simulateTo(&buf, dir, simulate.Options{Scenario: "demo", Seed: 1, Duration: time.Hour}, true); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "audit")
	root := newRootCmd()
	root.SetOut(&buf)
	root.SetArgs([]string{"analyze", "--pcap", filepath.Join(dir, "capture.pcap.gz"), "--spec", filepath.Join(dir, "specs"),
		"--out", out, "--log.level", "error", "--sensor.redact_key", "0123456789abcdef0123"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	var inv struct {
		Services []struct {
			Host      string `json:"host"`
			Endpoints []struct {
				Method, Path, Classification string
				Calls                        int64
				Auth, Sensitive              []string
			} `json:"endpoints"`
		} `json:"services"`
	}
	b, err := os.ReadFile(filepath.Join(out, "inventory.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &inv); err != nil {
		t.Fatal(err)
	}
	var truth simulate.Truth
	tb, _ := os.ReadFile(filepath.Join(dir, "truth.json"))
	json.Unmarshal(tb, &truth)
	want := map[string]string{}
	for _, s := range truth.Services {
		for _, e := range s.Endpoints {
			want[s.Host+" "+e.Method+" "+e.Path] = e.Classification
		}
	}
	got := 0
	for _, s := range inv.Services {
		for _, e := range s.Endpoints {
			path, _, _ := strings.Cut(e.Path, "#")
			k := s.Host + " " + e.Method + " " + path
			if w, ok := want[k]; ok {
				got++
				if w != e.Classification {
					t.Errorf("%s: %s, truth %s", k, e.Classification, w)
				}
			}
		}
	}
	if got < len(want)-2 { // the two shadow operations carried in bodies are split by operation
		t.Errorf("%d of %d true endpoints in the inventory", got, len(want))
	}
	an, _ := os.ReadFile(filepath.Join(out, "anomalies.jsonl"))
	for _, typ := range []string{"credential_stuffing", "bola_enumeration", "injection_attempt"} {
		if !strings.Contains(string(an), `"type":"`+typ+`"`) {
			t.Errorf("labelled %s not found in anomalies.jsonl", typ)
		}
	}
	for _, f := range []string{"openapi/bank.example.yaml", "diff/bank.example.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
}
