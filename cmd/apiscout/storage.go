package main

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/storage/clickhouse"
	"github.com/apiscout/apiscout/storage/embedded"
)

// resultStore is what commands need of a result store to manage it; the
// analyzer, the API and the UI declare their own, wider, interfaces.
type resultStore interface {
	Migrate(ctx context.Context) error
	Close() error
}

// openStore opens the store storage.kind selects, applying migrations at
// start when storage.migrate (or force) says so. It returns the concrete
// store: *clickhouse.Store or *embedded.Store.
func openStore(ctx context.Context, c config.StorageConfig, migrate bool, log *zap.Logger, reg prometheus.Registerer) (resultStore, error) {
	switch c.Kind {
	case "clickhouse":
		return clickhouse.Open(ctx, clickhouse.OptionsFromConfig(c), migrate, log, reg)
	case "embedded":
		return embedded.Open(ctx, embedded.Options{
			Path: c.Path, SampleTransactions: c.SampleTransactions, StoreBodies: c.StoreBodies, RetentionDays: c.RetentionDays,
		}, migrate, log)
	}
	return nil, fmt.Errorf("storage.kind: %q is not embedded or clickhouse", c.Kind)
}

func init() {
	register(func() *cobra.Command {
		c := &cobra.Command{Use: "storage", Short: "Manage the result store (ClickHouse or the embedded file)"}
		migrate := &cobra.Command{
			Use:   "migrate",
			Short: "Create or update the result store's schema (idempotent: applies only what is missing)",
			Long: `Applies the versioned schema migrations the store has not recorded, in
order, and brings ClickHouse TTLs in line with storage.retention_days where
the server supports TTL. Running it again changes nothing. The analyzer
does the same at start when storage.migrate is true (the default).`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				a, err := newApp(cmd)
				if err != nil {
					return err
				}
				defer a.log.Sync() //nolint:errcheck
				s, err := openStore(cmd.Context(), a.cfg.Storage, true, a.log, nil)
				if err != nil {
					return err
				}
				defer s.Close()
				where := a.cfg.Storage.Path
				if ch, ok := s.(*clickhouse.Store); ok {
					f := ch.Features()
					where = fmt.Sprintf("%s database %s (server %s)", a.cfg.Storage.ClickHouseAddr, a.cfg.Storage.ClickHouseDatabase, f.Version)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "storage %s: schema up to date: %s\n", a.cfg.Storage.Kind, where)
				return nil
			},
		}
		bindConfig(migrate, "log", "storage")
		c.AddCommand(migrate)
		return c
	})
}
