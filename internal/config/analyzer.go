package config

import (
	"errors"
	"fmt"
	"time"
)

// AnalyzerConfig configures the inventory, specs, baselines and detectors.
type AnalyzerConfig struct {
	// Specs lists OpenAPI/Swagger files or directories.
	Specs []string `yaml:"specs" help:"OpenAPI 3 / Swagger 2 spec files or directories"`
	// SpecServices binds a spec file to a service host when its servers
	// section does not: file=host.
	SpecServices map[string]string `yaml:"spec_services" help:"bind spec files to hosts: file=host,..."`
	// MaxEndpointsPerService bounds memory against junk paths.
	MaxEndpointsPerService int `yaml:"max_endpoints_per_service" help:"cap on endpoints tracked per service"`
	MaxServices            int `yaml:"max_services" help:"cap on services tracked"`
	// OrphanWindow: a documented endpoint not seen for this long is orphan.
	OrphanWindow time.Duration `yaml:"orphan_window" help:"documented endpoints unseen this long are orphan"`
	// Templates are operator decisions on path templates, each
	// "[pin|split|merge] /path/{param} [on SERVICE]": pin a template
	// ("/users/{userId}" alone, or the older "GET /users/{userId}", is a
	// pin), keep a value or a whole position literal ("split /users/me",
	// "split /files/{name}"), or make a position one parameter ("merge
	// /reports/{report}"); for every service, or the one named after
	// "on". Decisions made through the REST API are kept in the result
	// store, not here. The analyzer checks them when it starts (the
	// grammar is analyzer/template's); analyzer/templates.go says how they
	// regroup endpoints.
	Templates []string `yaml:"templates" help:"template decisions: [pin|split|merge] /path/{param} [on SERVICE], e.g. split /users/me"`
	// LearningPeriod before an endpoint's baseline may alert.
	LearningPeriod time.Duration `yaml:"learning_period" help:"packet time an endpoint is learned before it alerts"`
	// MinSupport is the minimum number of calls before a baseline alerts.
	MinSupport int `yaml:"min_support" help:"calls an endpoint needs before its baseline alerts"`
	// MaxClients bounds per-client state.
	MaxClients int `yaml:"max_clients" help:"cap on tracked client identities"`
	// Detectors lists disabled detectors by name.
	DisabledDetectors []string `yaml:"disabled_detectors" help:"detector names to turn off"`
	// TrustedCleartext lists CIDRs where cleartext credentials are accepted.
	TrustedCleartext []string `yaml:"trusted_cleartext" help:"CIDRs where cleartext credentials are not a finding"`
	// CheckpointInterval is how often the state of the services a Kafka
	// partition carries is saved to the result store; offsets are
	// committed only as far as a checkpoint covers, so a restart re-reads
	// at most this much.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval" help:"how often the analyzer saves its state to the store (restart and rebalance resume from it)"`
	// Out is where `apiscout analyze` writes its results.
	Out string `yaml:"out" help:"output directory of apiscout analyze"`
}

func defaultAnalyzer() AnalyzerConfig {
	return AnalyzerConfig{
		MaxEndpointsPerService: 5000,
		MaxServices:            10000,
		OrphanWindow:           7 * 24 * time.Hour,
		LearningPeriod:         24 * time.Hour,
		MinSupport:             50,
		MaxClients:             200000,
		CheckpointInterval:     30 * time.Second,
		Out:                    "apiscout-out",
	}
}

func (a *AnalyzerConfig) validate() error {
	var errs []error
	if a.MaxEndpointsPerService < 1 {
		errs = append(errs, fmt.Errorf("analyzer.max_endpoints_per_service: %d, want at least 1", a.MaxEndpointsPerService))
	}
	if a.CheckpointInterval < time.Second {
		errs = append(errs, fmt.Errorf("analyzer.checkpoint_interval: %s, want at least 1s", a.CheckpointInterval))
	}
	if a.MinSupport < 0 {
		errs = append(errs, fmt.Errorf("analyzer.min_support: %d is negative", a.MinSupport))
	}
	return errors.Join(errs...)
}
