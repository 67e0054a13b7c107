package main

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/storage/clickhouse"
	"github.com/apiscout/apiscout/storage/embedded"
	"github.com/apiscout/apiscout/wire"
)

// resultStore is the whole API both stores have (see package storage):
// the commands that wire the analyzer, the REST API and the UI to the
// configured store hold it as this, and hand each consumer the subset its
// own interface declares.
type resultStore interface {
	Migrate(ctx context.Context) error

	WriteTransactions(ctx context.Context, txs []*wire.Transaction) error
	WriteEndpoints(ctx context.Context, eps []inventory.Endpoint) error
	WriteServices(ctx context.Context, svcs []inventory.Service) error
	WriteAnomalies(ctx context.Context, as []anomaly.Anomaly) error
	WriteStats(ctx context.Context, stats []storage.EndpointMinute) error
	WriteHeartbeats(ctx context.Context, hbs []wire.Heartbeat) error
	SaveCheckpoint(ctx context.Context, key string, data []byte, offsets map[int]int64) error
	LoadCheckpoint(ctx context.Context, key string) (storage.Checkpoint, error)

	Endpoints(ctx context.Context, q storage.EndpointQuery) ([]inventory.Endpoint, int, error)
	Services(ctx context.Context) ([]storage.ServiceSummary, error)
	Anomalies(ctx context.Context, q storage.AnomalyQuery) ([]anomaly.Anomaly, int, error)
	EndpointStats(ctx context.Context, service, method, path string, from, to time.Time) ([]storage.EndpointMinute, error)
	Transactions(ctx context.Context, q storage.TransactionQuery) ([]wire.Transaction, error)

	Close() error
}

// openStore opens the store storage.kind selects, applying migrations at
// start when storage.migrate (or force) says so. It returns the concrete
// store: *clickhouse.Store or *embedded.Store.
func openStore(ctx context.Context, c config.StorageConfig, migrate bool, log *zap.Logger, reg prometheus.Registerer) (resultStore, error) {
	switch c.Kind {
	case "clickhouse":
		s, err := clickhouse.Open(ctx, clickhouse.OptionsFromConfig(c), migrate, log, reg)
		if err != nil {
			return nil, err
		}
		return s, nil
	case "embedded":
		s, err := embedded.Open(ctx, embedded.Options{
			Path: c.Path, SampleTransactions: c.SampleTransactions, StoreBodies: c.StoreBodies, RetentionDays: c.RetentionDays,
		}, migrate, log)
		if err != nil {
			return nil, err
		}
		return s, nil
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
