package config

import (
	"errors"
	"fmt"
	"time"
)

// DetectConfig tunes the anomaly detectors (analyzer/detect). Learning
// period, minimum support, the client cap and the list of disabled
// detectors live in the analyzer section; these are the detectors' own
// thresholds. Every threshold is a floor under a learned value: a detector
// fires when traffic exceeds both what was learned and the floor, so sparse
// or quiet endpoints do not cry wolf.
type DetectConfig struct {
	// Window is the tumbling window of endpoint statistics (rate, errors,
	// latency, sizes). Cost: one evaluation of every endpoint per window.
	Window time.Duration `yaml:"window" help:"window of endpoint statistics (rate, errors, latency, sizes)"`
	// ClientWindow is the tumbling window of per-client counters (failed
	// logins, new object ids, requests, bytes).
	ClientWindow time.Duration `yaml:"client_window" help:"window of per-client counters (logins, object ids, requests, bytes)"`
	// CloseAfter closes an incident that saw no new evidence for this long.
	CloseAfter time.Duration `yaml:"close_after" help:"an incident without new evidence for this long is closed"`

	RateSpikeFactor    float64       `yaml:"rate_spike_factor" help:"rate_spike: window count above expected times this"`
	RateDropFactor     float64       `yaml:"rate_drop_factor" help:"rate_drop: window count below expected times this"`
	RateDropWindows    int           `yaml:"rate_drop_windows" help:"rate_drop: consecutive low windows before it fires"`
	RateMinExpected    float64       `yaml:"rate_min_expected" help:"rate_spike/rate_drop: expected calls per window needed to judge"`
	ErrorSurgeRatio    float64       `yaml:"error_surge_ratio" help:"error_surge: 5xx ratio above the learned one by at least this"`
	ErrorSurgeMin      int           `yaml:"error_surge_min" help:"error_surge: 5xx responses per window needed"`
	LatencyFactor      float64       `yaml:"latency_factor" help:"latency_regression: window p95 above learned p95 times this"`
	LatencyMinDelta    time.Duration `yaml:"latency_min_delta" help:"latency_regression: and above learned p95 by at least this"`
	LatencyMinCount    int           `yaml:"latency_min_count" help:"latency_regression: responses per window needed"`
	SizeZ              float64       `yaml:"size_z" help:"response_size_anomaly: z-score of log size that makes an outlier"`
	SizeMinOutliers    int           `yaml:"size_min_outliers" help:"response_size_anomaly: outliers per window needed"`
	StuffingClient     int           `yaml:"stuffing_client" help:"credential_stuffing: failed logins per client window (brute force)"`
	StuffingEndpoint   int           `yaml:"stuffing_endpoint" help:"credential_stuffing: failed logins per endpoint window (spread)"`
	StuffingClients    int           `yaml:"stuffing_clients" help:"credential_stuffing: distinct failing clients per window (spread)"`
	BOLAMinIDs         int           `yaml:"bola_min_ids" help:"bola_enumeration: new, never-returned object ids per client window"`
	ScrapeMinRequests  int           `yaml:"scrape_min_requests" help:"scraping: requests per client window needed"`
	ScrapeFactor       float64       `yaml:"scrape_factor" help:"scraping: requests above the learned p99 client times this"`
	ExfilMinBytes      int64         `yaml:"exfil_min_bytes" help:"data_exfiltration: response bytes per client window needed"`
	ExfilFactor        float64       `yaml:"exfil_factor" help:"data_exfiltration: bytes above the learned p99 client times this"`
	UnauthMinRatio     float64       `yaml:"unauth_min_ratio" help:"unauthenticated_access: share of learned successes that carried credentials"`
	BlindLossRatio     float64       `yaml:"blind_loss_ratio" help:"sensor_blind: share of lossy transactions or missing records per window"`
	BlindSilentWindows int           `yaml:"blind_silent_windows" help:"sensor_blind: windows a busy mirror session may stay silent"`
	// PayloadEngine inspects parameters and bodies for attack payloads:
	// "coraza" (OWASP CRS, detection only) or "off". Cost: about a
	// millisecond per inspected request, so it runs only on requests that
	// pass a cheap prefilter and within PayloadBudget.
	PayloadEngine string `yaml:"payload_engine" help:"attack payload engine: coraza or off"`
	// PayloadBudget caps inspections per window (deterministic sampling).
	PayloadBudget int `yaml:"payload_budget" help:"injection_attempt: payload inspections per window at most"`
	// Severity overrides a detector's severity: name=level.
	Severity map[string]string `yaml:"severity" help:"override severities: detector=level,..."`
}

func defaultDetect() DetectConfig {
	return DetectConfig{
		Window:             time.Minute,
		ClientWindow:       5 * time.Minute,
		CloseAfter:         10 * time.Minute,
		RateSpikeFactor:    4,
		RateDropFactor:     0.2,
		RateDropWindows:    3,
		RateMinExpected:    10,
		ErrorSurgeRatio:    0.1,
		ErrorSurgeMin:      5,
		LatencyFactor:      2,
		LatencyMinDelta:    50 * time.Millisecond,
		LatencyMinCount:    20,
		SizeZ:              4,
		SizeMinOutliers:    5,
		StuffingClient:     20,
		StuffingEndpoint:   60,
		StuffingClients:    10,
		BOLAMinIDs:         30,
		ScrapeMinRequests:  600,
		ScrapeFactor:       5,
		ExfilMinBytes:      50 << 20,
		ExfilFactor:        10,
		UnauthMinRatio:     0.98,
		BlindLossRatio:     0.05,
		BlindSilentWindows: 3,
		PayloadEngine:      "coraza",
		PayloadBudget:      3000,
	}
}

func (d *DetectConfig) validate() error {
	var errs []error
	pos := func(key string, v float64) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("detect.%s: %v, want a positive value", key, v))
		}
	}
	pos("window", float64(d.Window))
	pos("client_window", float64(d.ClientWindow))
	pos("close_after", float64(d.CloseAfter))
	pos("rate_spike_factor", d.RateSpikeFactor)
	pos("rate_drop_windows", float64(d.RateDropWindows))
	pos("latency_factor", d.LatencyFactor)
	pos("size_z", d.SizeZ)
	pos("stuffing_client", float64(d.StuffingClient))
	pos("stuffing_endpoint", float64(d.StuffingEndpoint))
	pos("bola_min_ids", float64(d.BOLAMinIDs))
	pos("scrape_min_requests", float64(d.ScrapeMinRequests))
	pos("exfil_min_bytes", float64(d.ExfilMinBytes))
	pos("blind_silent_windows", float64(d.BlindSilentWindows))
	if d.RateDropFactor <= 0 || d.RateDropFactor >= 1 {
		errs = append(errs, fmt.Errorf("detect.rate_drop_factor: %v, want between 0 and 1", d.RateDropFactor))
	}
	if d.UnauthMinRatio <= 0 || d.UnauthMinRatio > 1 {
		errs = append(errs, fmt.Errorf("detect.unauth_min_ratio: %v, want in (0, 1]", d.UnauthMinRatio))
	}
	if d.BlindLossRatio <= 0 || d.BlindLossRatio > 1 {
		errs = append(errs, fmt.Errorf("detect.blind_loss_ratio: %v, want in (0, 1]", d.BlindLossRatio))
	}
	switch d.PayloadEngine {
	case "coraza", "off":
	default:
		errs = append(errs, fmt.Errorf("detect.payload_engine: %q is not coraza or off", d.PayloadEngine))
	}
	if d.PayloadBudget < 0 {
		errs = append(errs, fmt.Errorf("detect.payload_budget: %d is negative", d.PayloadBudget))
	}
	for name, sev := range d.Severity {
		switch sev {
		case "info", "low", "medium", "high", "critical":
		default:
			errs = append(errs, fmt.Errorf("detect.severity: %s=%q is not info, low, medium, high or critical", name, sev))
		}
	}
	return errors.Join(errs...)
}

// Validate checks the detect section alone (for constructors that get it
// without the whole Config).
func (d *DetectConfig) Validate() error { return d.validate() }
