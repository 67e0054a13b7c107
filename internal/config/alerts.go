package config

import (
	"errors"
	"fmt"
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
	// OutboxDir keeps undelivered alerts across restarts.
	OutboxDir string `yaml:"outbox_dir" help:"directory of the persistent alert outbox"`
}

func defaultAlerts() AlertsConfig {
	return AlertsConfig{MinSeverity: "medium"}
}

func (a *AlertsConfig) validate() error {
	switch a.MinSeverity {
	case "info", "low", "medium", "high", "critical":
		return nil
	}
	return errors.Join(fmt.Errorf("alerts.min_severity: %q is not info, low, medium, high or critical", a.MinSeverity))
}
