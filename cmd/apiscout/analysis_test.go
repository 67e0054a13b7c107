package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer"
	"github.com/apiscout/apiscout/analyzer/api"
	"github.com/apiscout/apiscout/analyzer/api/storeread"
	"github.com/apiscout/apiscout/analyzer/ingest"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/sensor"
	"github.com/apiscout/apiscout/storage/embedded"
)

// TestSensorIntoAnalysis runs the real sensor pipeline on a simulated
// capture into the analysis glue of apiscout run: every transaction the
// sensor reports reaches the store, and the UI's reader sees the
// endpoints.
func TestSensorIntoAnalysis(t *testing.T) {
	dir := t.TempDir()
	sim := newRootCmd()
	sim.SetArgs([]string{"simulate", "--scenario", "demo", "--out", dir})
	sim.SetOut(&bytes.Buffer{})
	if err := sim.Execute(); err != nil {
		t.Fatalf("simulate: %v", err)
	}
	ctx := context.Background()
	st, err := embedded.Open(ctx, embedded.Options{Path: filepath.Join(dir, "a.db")}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	eng, err := analyzer.New(analyzer.Options{Config: config.Default().Analyzer})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().Sensor
	cfg.Pcap = []string{filepath.Join(dir, "capture.pcap")}
	cfg.Progress = false
	p, err := sensor.New(cfg, zap.NewNop(), prometheus.NewRegistry(), engineSink{h: ingest.New(eng, st, zap.NewNop())})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	stats := p.Stats()
	var calls int64
	endpoints := 0
	for _, s := range eng.Services() {
		calls += s.Calls
		for _, e := range s.Endpoints {
			if e.Classification != inventory.Orphan {
				endpoints++
			}
		}
	}
	if stats.Transactions == 0 || uint64(calls) != stats.Transactions {
		t.Fatalf("sensor reported %d transactions, the engine saw %d", stats.Transactions, calls)
	}
	page, err := storeread.New(st, storeread.Specs{}).Endpoints(ctx, api.EndpointQuery{Limit: 0})
	if err != nil || page.Total != endpoints {
		t.Errorf("store holds %d endpoints, the engine %d (%v)", page.Total, endpoints, err)
	}
}
