package config

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// AlertsConfig routes anomalies to receivers.
type AlertsConfig struct {
	Webhooks []string `yaml:"webhooks" help:"generic JSON webhook URLs"`
	Slack    []string `yaml:"slack" help:"Slack-compatible webhook URLs"`
	// Secret signs webhook bodies (HMAC-SHA256 over timestamp and body).
	Secret string `yaml:"secret" help:"HMAC secret for webhook signatures"`
	// MinSeverity filters what is sent: info, low, medium, high, critical.
	MinSeverity string `yaml:"min_severity" help:"lowest severity sent: info, low, medium, high, critical"`
	Syslog      string `yaml:"syslog" help:"syslog receiver udp://host:514 or tcp://host:514 (RFC 5424)"`
	SyslogCEF   bool   `yaml:"syslog_cef" help:"format syslog messages as CEF"`
	// OutboxDir keeps undelivered alerts across restarts. Empty keeps them
	// in memory only (lost on restart). Cost: one small file per alert and
	// receiver until delivered.
	OutboxDir string `yaml:"outbox_dir" help:"directory of the persistent alert outbox"`
	// Route raises the lowest severity per receiver kind above
	// MinSeverity, e.g. slack=high so chat only hears the loud ones.
	Route map[string]string `yaml:"route" help:"lowest severity per receiver kind: webhook=..,slack=..,syslog=.."`
	// RateLimit caps alerts per minute of packet time, per receiver and
	// severity; over the cap alerts are dropped and counted (the incident
	// is still stored). Absent or 0: unlimited.
	RateLimit map[string]string `yaml:"rate_limit" help:"alerts per minute per receiver by severity: low=10,medium=30,..."`
	// Events lists the incident events sent: opened, updated, closed.
	Events []string `yaml:"events" help:"incident events sent: opened, updated, closed"`
	// Retries back off exponentially from RetryInitial to RetryMax; an
	// alert still undelivered after MaxAge is moved to the outbox's dead/
	// folder and counted.
	RetryInitial time.Duration `yaml:"retry_initial" help:"first retry delay of an undelivered alert"`
	RetryMax     time.Duration `yaml:"retry_max" help:"longest retry delay"`
	MaxAge       time.Duration `yaml:"max_age" help:"give up (dead-letter) an alert undelivered this long"`
	Timeout      time.Duration `yaml:"timeout" help:"timeout of one delivery attempt"`
}

func defaultAlerts() AlertsConfig {
	return AlertsConfig{
		MinSeverity:  "medium",
		RateLimit:    map[string]string{"info": "5", "low": "10", "medium": "30", "high": "60"},
		Events:       []string{"opened", "closed"},
		RetryInitial: time.Second,
		RetryMax:     5 * time.Minute,
		MaxAge:       24 * time.Hour,
		Timeout:      5 * time.Second,
	}
}

func validSeverity(s string) bool {
	switch s {
	case "info", "low", "medium", "high", "critical":
		return true
	}
	return false
}

func (a *AlertsConfig) validate() error {
	var errs []error
	if !validSeverity(a.MinSeverity) {
		errs = append(errs, fmt.Errorf("alerts.min_severity: %q is not info, low, medium, high or critical", a.MinSeverity))
	}
	for k, v := range a.Route {
		switch k {
		case "webhook", "slack", "syslog":
		default:
			errs = append(errs, fmt.Errorf("alerts.route: %q is not webhook, slack or syslog", k))
		}
		if !validSeverity(v) {
			errs = append(errs, fmt.Errorf("alerts.route: %s=%q is not info, low, medium, high or critical", k, v))
		}
	}
	for k, v := range a.RateLimit {
		if !validSeverity(k) {
			errs = append(errs, fmt.Errorf("alerts.rate_limit: %q is not info, low, medium, high or critical", k))
		}
		if n, err := strconv.Atoi(v); err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("alerts.rate_limit: %s=%q is not a non-negative integer", k, v))
		}
	}
	for _, e := range a.Events {
		switch e {
		case "opened", "updated", "closed":
		default:
			errs = append(errs, fmt.Errorf("alerts.events: %q is not opened, updated or closed", e))
		}
	}
	for i, u := range append(append([]string(nil), a.Webhooks...), a.Slack...) {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			key := "alerts.webhooks"
			if i >= len(a.Webhooks) {
				key = "alerts.slack"
			}
			errs = append(errs, fmt.Errorf("%s: %q is not an http(s) URL", key, u))
		}
	}
	if a.Syslog != "" {
		p, err := url.Parse(a.Syslog)
		if err != nil || (p.Scheme != "udp" && p.Scheme != "tcp") || p.Host == "" {
			errs = append(errs, fmt.Errorf("alerts.syslog: %q is not udp://host:port or tcp://host:port", a.Syslog))
		}
	}
	if a.RetryInitial <= 0 || a.RetryMax < a.RetryInitial {
		errs = append(errs, fmt.Errorf("alerts.retry_initial/retry_max: %s/%s, want 0 < initial <= max", a.RetryInitial, a.RetryMax))
	}
	if a.MaxAge <= 0 {
		errs = append(errs, fmt.Errorf("alerts.max_age: %s, want positive", a.MaxAge))
	}
	if a.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("alerts.timeout: %s, want positive", a.Timeout))
	}
	return errors.Join(errs...)
}

// Validate checks the alerts section alone.
func (a *AlertsConfig) Validate() error { return a.validate() }
