package main

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/obs"
)

// app is what every long-running command starts from: the configuration,
// a logger, a metrics registry and the health flag.
type app struct {
	cfg    config.Config
	log    *zap.Logger
	reg    *prometheus.Registry
	health *obs.Health
}

// bindConfig adds the flags of the named configuration sections to cmd.
func bindConfig(cmd *cobra.Command, sections ...string) {
	scratch := config.Default()
	config.BindFlags(cmd.Flags(), &scratch, sections...)
}

// loadConfig applies defaults, the --config file, the environment and the
// flags the user set, and validates the result.
func loadConfig(cmd *cobra.Command) (config.Config, error) {
	path, _ := cmd.Flags().GetString("config")
	return config.Load(path, cmd.Flags())
}

// newApp loads the configuration and builds logger and registry.
func newApp(cmd *cobra.Command) (*app, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	log, err := obs.NewLogger(cfg.Log)
	if err != nil {
		return nil, err
	}
	return &app{cfg: cfg, log: log, reg: obs.NewRegistry(), health: &obs.Health{}}, nil
}

// serveMetrics starts /metrics and /healthz when configured; the returned
// function waits for the server to stop after ctx ends.
func (a *app) serveMetrics(ctx context.Context) (func(), error) {
	if a.cfg.Metrics.Listen == "" {
		return func() {}, nil
	}
	s, err := obs.Listen(a.cfg.Metrics.Listen, a.reg, a.health)
	if err != nil {
		return nil, fmt.Errorf("%w (set --metrics.listen to another address, or empty to turn it off)", err)
	}
	a.log.Info("metrics listening", zap.String("addr", s.Addr()))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil {
			a.log.Error("metrics server", zap.Error(err))
		}
	}()
	return func() { <-done }, nil
}

// aliasFlag adds a short flag name for a configuration key's flag: both
// set the same value.
func aliasFlag(cmd *cobra.Command, alias, key, usage string) {
	f := cmd.Flags().Lookup(key)
	if f == nil {
		panic("no flag " + key)
	}
	cmd.Flags().Var(f.Value, alias, usage)
	cmd.PreRunE = chainPreRun(cmd.PreRunE, func(cmd *cobra.Command, _ []string) error {
		if a := cmd.Flags().Lookup(alias); a.Changed {
			return cmd.Flags().Set(key, a.Value.String())
		}
		return nil
	})
}

func chainPreRun(prev, next func(*cobra.Command, []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if prev != nil {
			if err := prev(cmd, args); err != nil {
				return err
			}
		}
		return next(cmd, args)
	}
}

// waitStop cancels nothing itself: it waits for the metrics server to end
// once ctx is done, or returns at once when the work ended on its own.
func waitStop(ctx context.Context, waitMetrics func()) {
	if ctx.Err() != nil {
		waitMetrics()
	}
}
