package config

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// StorageConfig selects where the analyzer's results live.
type StorageConfig struct {
	// Kind is "embedded" (one process, no server) or "clickhouse".
	Kind string `yaml:"kind" help:"result store: embedded or clickhouse"`
	// Path of the embedded database file.
	Path string `yaml:"path" help:"embedded store file"`
	// ClickHouse connection.
	ClickHouseAddr     []string `yaml:"clickhouse_addr" help:"ClickHouse native addresses host:9000, comma separated"`
	ClickHouseDatabase string   `yaml:"clickhouse_database" help:"ClickHouse database"`
	ClickHouseUser     string   `yaml:"clickhouse_user" help:"ClickHouse user"`
	ClickHousePassword string   `yaml:"clickhouse_password" help:"ClickHouse password (prefer the environment variable)"`
	ClickHouseTLS      bool     `yaml:"clickhouse_tls" help:"connect to ClickHouse with TLS (the server's tcp_port_secure, usually 9440)"`
	// ClickHouseTLSCA replaces the system's roots (a private CA);
	// ClickHouseTLSServerName is the name the certificate must carry when
	// it is not the address's host. Cert and key are the client's (mTLS).
	ClickHouseTLSCA         string `yaml:"clickhouse_tls_ca" help:"CA bundle for the ClickHouse server's certificate (empty: the system's roots)"`
	ClickHouseTLSServerName string `yaml:"clickhouse_tls_server_name" help:"name the ClickHouse server's certificate must carry (empty: the host of clickhouse_addr)"`
	ClickHouseTLSCert       string `yaml:"clickhouse_tls_cert" help:"client certificate for ClickHouse (mTLS)"`
	ClickHouseTLSKey        string `yaml:"clickhouse_tls_key" help:"client key for ClickHouse (mTLS)"`
	// ClickHouseCompression of the native protocol.
	ClickHouseCompression string        `yaml:"clickhouse_compression" help:"ClickHouse wire compression: lz4, zstd or none (none: less CPU on a local or LAN server)"`
	BatchSize             int           `yaml:"batch_size" help:"rows per insert batch"`
	FlushInterval         time.Duration `yaml:"flush_interval" help:"longest wait before a partial batch is written"`
	// SampleTransactions stores 1 in N transactions' metadata (1 = all).
	SampleTransactions int  `yaml:"sample_transactions" help:"store 1 in N transactions (1: all)"`
	StoreBodies        bool `yaml:"store_bodies" help:"store (redacted) bodies with transactions"`
	// RetentionDays sets a TTL where the server supports it (0: keep).
	RetentionDays int  `yaml:"retention_days" help:"days to keep rows (0: forever)"`
	Migrate       bool `yaml:"migrate" help:"apply schema migrations at start"`
	// RetryMaxElapsed bounds how long one insert is resent before the
	// write fails and the analyzer stops consuming (backpressure).
	RetryMaxElapsed time.Duration `yaml:"retry_max_elapsed" help:"how long a failed insert is resent before the write fails and consumption pauses"`
	// InsertConcurrency is how many ClickHouse inserts of one write run at
	// once.
	InsertConcurrency int `yaml:"insert_concurrency" help:"ClickHouse inserts of one write run at once (each uses a server thread)"`
}

func defaultStorage() StorageConfig {
	return StorageConfig{
		Kind:               "embedded",
		Path:               "apiscout.db",
		ClickHouseAddr:     []string{"127.0.0.1:9000"},
		ClickHouseDatabase: "apiscout",
		ClickHouseUser:     "default",
		// lz4 costs ~1µs of CPU per transaction row and cuts the bytes sent
		// by ~3/4.
		ClickHouseCompression: "lz4",
		// 50,000 transaction rows are ~15 MB in flight per batch (the
		// store buffers up to 4 batches while ClickHouse is down); smaller
		// batches make more parts for the server to merge.
		BatchSize: 50000,
		// A partial batch waits at most 1s: dashboards lag by that much.
		FlushInterval: time.Second,
		// Every transaction's metadata: ~300 bytes each on disk before
		// compression; 1 in N divides that by N.
		SampleTransactions: 1,
		// 30 days of transactions and minutes; the inventory is kept.
		RetentionDays: 30,
		Migrate:       true,
		// 30s rides out a server restart; longer holds the batch (up to
		// batch_size rows) in memory that much longer.
		RetryMaxElapsed: 30 * time.Second,
		// 2 uses two server cores for large writes; each holds its
		// batch's connection.
		InsertConcurrency: 2,
	}
}

func (s *StorageConfig) validate() error {
	var errs []error
	switch s.Kind {
	case "embedded", "clickhouse":
	default:
		errs = append(errs, fmt.Errorf("storage.kind: %q is not embedded or clickhouse", s.Kind))
	}
	if s.SampleTransactions < 1 {
		errs = append(errs, fmt.Errorf("storage.sample_transactions: %d, want at least 1", s.SampleTransactions))
	}
	if s.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("storage.batch_size: %d, want at least 1", s.BatchSize))
	}
	if s.RetentionDays < 0 {
		errs = append(errs, fmt.Errorf("storage.retention_days: %d, want 0 (forever) or more", s.RetentionDays))
	}
	if s.RetryMaxElapsed < 0 {
		errs = append(errs, fmt.Errorf("storage.retry_max_elapsed: %s, want 0 (default 30s) or more", s.RetryMaxElapsed))
	}
	switch s.ClickHouseCompression {
	case "lz4", "zstd", "none":
	default:
		errs = append(errs, fmt.Errorf("storage.clickhouse_compression: %q is not lz4, zstd or none", s.ClickHouseCompression))
	}
	if s.InsertConcurrency < 1 {
		errs = append(errs, fmt.Errorf("storage.insert_concurrency: %d, want at least 1", s.InsertConcurrency))
	}
	if s.Kind == "clickhouse" && len(s.ClickHouseAddr) == 0 {
		errs = append(errs, errors.New("storage.clickhouse_addr: empty, want at least one host:port"))
	}
	if s.Kind == "embedded" && s.Path == "" {
		errs = append(errs, errors.New("storage.path: empty, want the embedded store's file"))
	}
	return errors.Join(append(errs, s.validateTLS()...)...)
}

func (s *StorageConfig) validateTLS() []error {
	var errs []error
	if (s.ClickHouseTLSCert == "") != (s.ClickHouseTLSKey == "") {
		errs = append(errs, errors.New("storage.clickhouse_tls_cert and storage.clickhouse_tls_key: set both or neither"))
	}
	for _, f := range []struct{ key, val string }{
		{"storage.clickhouse_tls_ca", s.ClickHouseTLSCA},
		{"storage.clickhouse_tls_server_name", s.ClickHouseTLSServerName},
		{"storage.clickhouse_tls_cert", s.ClickHouseTLSCert},
		{"storage.clickhouse_tls_key", s.ClickHouseTLSKey},
	} {
		if f.val == "" {
			continue
		}
		// Silently connecting in plain text would send the password in it.
		if !s.ClickHouseTLS {
			errs = append(errs, fmt.Errorf("%s: set, but storage.clickhouse_tls is false", f.key))
			continue
		}
		if f.key == "storage.clickhouse_tls_server_name" {
			continue
		}
		if err := readable(f.val); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
		}
	}
	return errs
}

// readable reports whether path is a file this process can read.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return err
	} else if st.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return nil
}
