package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiscout/apiscout/analyzer/web/webtest"
	"github.com/apiscout/apiscout/internal/simulate"
)

// syncBuffer is a bytes.Buffer safe for the command's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestRunDemoEndToEnd is what `make run` does, checked: simulate the demo
// capture, run the whole pipeline on it in one process, compare the
// summary and the API with the simulator's truth, and walk the UI in
// headless Chromium (screenshots in .artifacts/run-demo).
func TestRunDemoEndToEnd(t *testing.T) {
	dir := t.TempDir()
	sim := newRootCmd()
	sim.SetArgs([]string{"simulate", "--scenario", "demo", "--out", dir})
	sim.SetOut(&bytes.Buffer{})
	if err := sim.Execute(); err != nil {
		t.Fatalf("simulate: %v", err)
	}
	var truth simulate.Truth
	b, err := os.ReadFile(filepath.Join(dir, "truth.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &truth); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	run := newRootCmd()
	run.SetArgs([]string{"run", "--pcap", filepath.Join(dir, "capture.pcap"), "--analyzer.specs", filepath.Join(dir, "specs"),
		"--storage.path", filepath.Join(dir, "apiscout.db"), "--ui.listen", "127.0.0.1:0", "--metrics.listen", "", "--log.level", "warn",
		"--sensor.progress=false"})
	run.SetOut(out)
	run.SetErr(&syncBuffer{})
	done := make(chan error, 1)
	go func() { done <- run.ExecuteContext(ctx) }()
	for !regexp.MustCompile(`serving the UI`).MatchString(out.String()) {
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v\n%s", err, out)
		case <-time.After(50 * time.Millisecond):
		}
	}
	text := out.String()
	t.Log("\n" + text)
	num := func(label string) int {
		m := regexp.MustCompile(`(?m)^\s+` + label + `\s+(\d+)`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("summary has no %s:\n%s", label, text)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	base := regexp.MustCompile(`web UI\s+(http://\S+)`).FindStringSubmatch(text)
	if base == nil {
		t.Fatalf("no UI address:\n%s", text)
	}
	want := map[string]int{}
	for _, s := range truth.Services {
		for _, e := range s.Endpoints {
			if e.Called {
				want[e.Classification]++
			}
		}
	}
	if got := num("services"); got != len(truth.Services) {
		t.Errorf("services %d, truth %d", got, len(truth.Services))
	}
	// Path templates may split a shadow endpoint the simulator calls with
	// random ids; at least the true ones must be found.
	if got := num("shadow"); got < want["shadow"] {
		t.Errorf("shadow %d, truth %d", got, want["shadow"])
	}
	if got := num("zombie"); got != want["zombie"] {
		t.Errorf("zombie %d, truth %d", got, want["zombie"])
	}
	if num("anomalies") == 0 {
		t.Error("no anomalies found in a capture with attacks")
	}

	// The API agrees with the summary.
	var sum struct {
		Services  int            `json:"services"`
		Endpoints int            `json:"endpoints"`
		Classes   map[string]int `json:"classes"`
		Ready     bool           `json:"ready"`
	}
	resp, err := http.Get(base[1] + "/api/v1/summary")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&sum); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !sum.Ready || sum.Services != num("services") || sum.Endpoints != num("endpoints") || sum.Classes["shadow"] != num("shadow") {
		t.Errorf("API summary %+v disagrees with the printed one", sum)
	}

	// Every true shadow endpoint is listed as shadow by the API.
	var page struct {
		Items []struct{ Service, Method, Path string }
	}
	resp, err = http.Get(base[1] + "/api/v1/endpoints?class=shadow&limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The template of a shadow endpoint may differ in its parameters or
	// carry an operation (/graphql#op): match on the literal prefix.
	found := func(host, method, path string) bool {
		prefix, _, _ := strings.Cut(path, "{")
		for _, it := range page.Items {
			if it.Service == host && it.Method == method && strings.HasPrefix(it.Path, prefix) {
				return true
			}
		}
		return false
	}
	for _, s := range truth.Services {
		for _, e := range s.Endpoints {
			if e.Classification == "shadow" && e.Called && !found(s.Host, e.Method, e.Path) {
				t.Errorf("shadow endpoint %s %s %s not reported as shadow", s.Host, e.Method, e.Path)
			}
		}
	}

	webtest.Walkthrough(t, base[1], filepath.Join("..", "..", ".artifacts", "run-demo"))

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop after its context ended")
	}
}
