package config

import (
	"strings"
	"testing"
	"time"
)

// Bad detect and alerts values fail with the key to fix.
func TestDetectAndAlertsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"window", func(c *Config) { c.Detect.Window = 0 }, "detect.window"},
		{"drop factor", func(c *Config) { c.Detect.RateDropFactor = 1.5 }, "detect.rate_drop_factor"},
		{"engine", func(c *Config) { c.Detect.PayloadEngine = "modsec" }, "detect.payload_engine"},
		{"severity", func(c *Config) { c.Detect.Severity = map[string]string{"bfla": "loud"} }, "detect.severity"},
		{"blind ratio", func(c *Config) { c.Detect.BlindLossRatio = 0 }, "detect.blind_loss_ratio"},
		{"route kind", func(c *Config) { c.Alerts.Route = map[string]string{"pager": "high"} }, "alerts.route"},
		{"rate limit", func(c *Config) { c.Alerts.RateLimit = map[string]string{"high": "many"} }, "alerts.rate_limit"},
		{"events", func(c *Config) { c.Alerts.Events = []string{"started"} }, "alerts.events"},
		{"webhook url", func(c *Config) { c.Alerts.Webhooks = []string{"ftp://x"} }, "alerts.webhooks"},
		{"slack url", func(c *Config) { c.Alerts.Slack = []string{"hooks.slack.com"} }, "alerts.slack"},
		{"syslog url", func(c *Config) { c.Alerts.Syslog = "syslog.local:514" }, "alerts.syslog"},
		{"retry", func(c *Config) { c.Alerts.RetryMax = time.Millisecond }, "alerts.retry_initial"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

// Detector and alert keys reach the environment like every other key.
func TestDetectKeysFromEnvironment(t *testing.T) {
	c := Default()
	env := map[string]string{
		"APISCOUT_DETECT_RATE_SPIKE_FACTOR": "6",
		"APISCOUT_DETECT_SEVERITY":          "bfla=critical",
		"APISCOUT_ALERTS_RATE_LIMIT":        "high=5",
	}
	if err := ApplyEnv(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.Detect.RateSpikeFactor != 6 || c.Detect.Severity["bfla"] != "critical" || c.Alerts.RateLimit["high"] != "5" {
		t.Fatalf("environment not applied: %+v %+v", c.Detect, c.Alerts.RateLimit)
	}
}
