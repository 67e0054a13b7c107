package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// The committed capture testdata/demo-5min (written once by apiscout
// simulate) analyzed end to end gives the committed inventory: any change
// in sensor, templates or classification shows up here as a diff.
func TestGoldenInventory(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "demo-5min")
	out := t.TempDir()
	root := newRootCmd()
	var buf bytes.Buffer
	root.SetOut(&buf)
	root.SetArgs([]string{"analyze", "--pcap", filepath.Join(dir, "capture.pcap.gz"), "--spec", filepath.Join(dir, "specs"),
		"--out", out, "--log.level", "error", "--sensor.redact_key", "golden-key-0123456789"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "inventory.json"))
	if err != nil {
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
	if err := json.Unmarshal(b, &inv); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, s := range inv.Services {
		for _, e := range s.Endpoints {
			lines = append(lines, fmt.Sprintf("%s %s %s %s calls=%d auth=%s sensitive=%s", s.Host, e.Method, e.Path,
				e.Classification, e.Calls, strings.Join(e.Auth, ","), strings.Join(e.Sensitive, ",")))
		}
	}
	sort.Strings(lines)
	got := strings.Join(lines, "\n") + "\n"
	golden := filepath.Join(dir, "inventory.golden.txt")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (regenerate with go test ./cmd/apiscout -run TestGoldenInventory -update)", err)
	}
	if got != string(want) {
		t.Errorf("inventory differs from %s (regenerate with -update if the change is intended):\n--- got\n%s--- want\n%s", golden, got, want)
	}
}
