package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apiscout/apiscout/internal/simulate"
)

// detectionSlack widens each episode on both sides when incidents are
// matched to it: one client window (detect.client_window), the longest a
// detector waits before it judges.
const detectionSlack = 5 * time.Minute

// maxFalsePerDay bounds incidents that match no episode, per day of
// traffic. The simulated traffic is steady apart from its episodes, so
// every such incident is a defect; one a day leaves room for a rare
// statistical outlier of the rate detectors (a 3-sigma bound over
// 1,440 windows and 30 endpoints) without hiding a systematic one, which
// fires on every day or every endpoint.
const maxFalsePerDay = 1.0

// The whole pipeline — capture, sensor, engine, detectors — on the
// anomalies scenario: every labelled episode is found with its type and
// target, and almost nothing else is reported. APISCOUT_QUALITY_DAYS sets
// the baseline days (default 2, as apiscout simulate; at least 1, the
// learning period).
func TestDetectionQuality(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates and analyzes two and a half days of traffic, twice")
	}
	days := 2
	if v := os.Getenv("APISCOUT_QUALITY_DAYS"); v != "" {
		if _, err := fmt.Sscan(v, &days); err != nil || days < 1 {
			t.Fatalf("APISCOUT_QUALITY_DAYS=%q: want a whole number of days ≥ 1", v)
		}
	}
	for _, seed := range []uint64{1, 7} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			sc, traffic := scoreScenario(t, seed, days)
			var b strings.Builder
			sc.Table(&b)
			t.Logf("seed %d, %d day(s) of baseline, %.1f days of traffic:\n%s", seed, days, traffic.Hours()/24, b.String())
			for _, e := range sc.Episodes {
				if !e.Detected {
					t.Errorf("missed %s on %s %s %s client %q, %s to %s", e.Label.Type, e.Label.Host, e.Label.Method,
						e.Label.Path, e.Label.Client, e.Label.Start.Format(time.TimeOnly), e.Label.End.Format(time.TimeOnly))
				}
			}
			for _, in := range sc.CoAlerts {
				t.Logf("co-alert %s on %s %s %s client %q, %s to %s", in.Type, in.Host, in.Method, in.Path, in.Client,
					in.Start.Format(time.DateTime), in.End.Format(time.DateTime))
			}
			for _, in := range sc.False {
				t.Logf("false %s on %s %s %s client %q, %s to %s %v", in.Type, in.Host, in.Method, in.Path, in.Client,
					in.Start.Format(time.DateTime), in.End.Format(time.DateTime), in.Details)
			}
			if limit := maxFalsePerDay * traffic.Hours() / 24; float64(len(sc.False)) > limit {
				t.Errorf("%d false incidents over %.1f days of traffic, at most %.1f allowed", len(sc.False), traffic.Hours()/24, limit)
			}
		})
	}
}

// scoreScenario simulates the anomalies scenario, runs apiscout analyze
// on its capture and scores the incidents against the labels; it
// returns the score and the packet time the capture covers.
func scoreScenario(t *testing.T, seed uint64, days int) (*simulate.Score, time.Duration) {
	t.Helper()
	dir := t.TempDir()
	var buf bytes.Buffer
	o := simulate.Options{Scenario: "anomalies", Seed: seed, Days: days}
	if err := simulateTo(&buf, dir, o, false); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "audit")
	root := newRootCmd()
	root.SetOut(&buf)
	root.SetErr(&buf)
	root.SetArgs([]string{"analyze", "--pcap", filepath.Join(dir, "capture.pcap"), "--spec", filepath.Join(dir, "specs"),
		"--out", out, "--log.level", "error", "--sensor.redact_key", "0123456789abcdef0123"})
	if err := root.Execute(); err != nil {
		t.Fatalf("analyze: %v\n%s", err, buf.String())
	}
	os.Remove(filepath.Join(dir, "capture.pcap")) // hundreds of MB
	lf, err := os.Open(filepath.Join(dir, "labels.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	labels, err := simulate.ReadLabels(lf)
	if err != nil {
		t.Fatal(err)
	}
	af, err := os.Open(filepath.Join(out, "anomalies.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer af.Close()
	incs, err := simulate.ReadIncidents(af)
	if err != nil {
		t.Fatal(err)
	}
	if len(labels) == 0 {
		t.Fatal("the scenario labelled no episode")
	}
	sc, err := simulate.ScoreIncidents(labels, incs, detectionSlack)
	if err != nil {
		t.Fatal(err)
	}
	return sc, trafficSpan(t, filepath.Join(out, "inventory.json"))
}

// trafficSpan is the packet time from the first to the last call the
// inventory saw.
func trafficSpan(t *testing.T, inventory string) time.Duration {
	t.Helper()
	b, err := os.ReadFile(inventory)
	if err != nil {
		t.Fatal(err)
	}
	var inv struct {
		Services []struct {
			Endpoints []struct {
				FirstSeen time.Time `json:"first_seen"`
				LastSeen  time.Time `json:"last_seen"`
			} `json:"endpoints"`
		} `json:"services"`
	}
	if err := json.Unmarshal(b, &inv); err != nil {
		t.Fatal(err)
	}
	var first, last time.Time
	for _, s := range inv.Services {
		for _, e := range s.Endpoints {
			if !e.FirstSeen.IsZero() && (first.IsZero() || e.FirstSeen.Before(first)) {
				first = e.FirstSeen
			}
			if e.LastSeen.After(last) {
				last = e.LastSeen
			}
		}
	}
	if first.IsZero() {
		t.Fatal("the inventory saw no call")
	}
	return last.Sub(first)
}
