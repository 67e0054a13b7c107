// Package clickhouse stores the analyzer's results in ClickHouse, where
// teams query them and Grafana draws them (dashboards/). It speaks the
// native protocol through clickhouse-go/v2 and works with servers from
// 18.16 (Debian's package, what CI runs) to current releases: the schema
// uses LowCardinality, DateTime64, TTL and insert deduplication tokens
// only when the server has them (see Features).
//
// Writes are synchronous and batched: a call inserts its rows in batches
// of Options.BatchSize, and an insert that fails for a reason that can
// pass (connection lost, server restarting, too many parts) is rebuilt from
// the same rows and sent again with backoff until Options.RetryMaxElapsed.
// A failed insert may or may not have been stored, so the resend carries
// the same insert_deduplication_token where the server supports it, and on
// every server the tables are keyed (ReplacingMergeTree) and every read
// counts a key once. When the server stays down the write returns an
// error: the caller stops consuming and tries again later.
package clickhouse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	sqldriver "database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
)

// Options configure a Store. Zero values take the defaults noted.
type Options struct {
	Addr     []string // host:port of the native protocol
	Database string   // created by Migrate
	User     string
	Password string
	// TLS connects to the server's secure port; the rest of the TLS
	// settings apply only with it.
	TLS bool
	// TLSCA is a PEM bundle that replaces the system's roots.
	TLSCA string
	// TLSServerName is the name the server's certificate must carry
	// (default: the host of each address).
	TLSServerName string
	// TLSCert and TLSKey are the client's certificate and key (mTLS).
	TLSCert, TLSKey string
	// BatchSize is the most rows per INSERT (default 50000: ~10 MB of
	// transaction metadata; larger batches insert faster and hold more
	// memory).
	BatchSize int
	// InsertConcurrency is how many batches of one write are inserted at
	// once (default 2: a server inserts a batch on one thread).
	InsertConcurrency int
	// SampleTransactions keeps 1 in N transactions (default 1: all).
	SampleTransactions int
	// StoreBodies keeps (redacted) bodies in the transaction record.
	StoreBodies bool
	// RetentionDays is the TTL where supported (0: keep forever).
	RetentionDays int
	// RetryMaxElapsed bounds the retries of one insert (default 30s);
	// after it the write returns the last error.
	RetryMaxElapsed time.Duration
	// RetryInitial is the first backoff (default 100ms), doubled up to 5s.
	RetryInitial time.Duration
	// DialTimeout bounds a connection attempt (default 5s).
	DialTimeout time.Duration
	// Compression of the native protocol: "lz4" (default), "zstd" or
	// "none". LZ4 costs ~1µs of client CPU per transaction row and saves
	// ~3/4 of the bytes; "none" suits a server on the same host or LAN.
	Compression string
}

// OptionsFromConfig maps the storage section to Options.
func OptionsFromConfig(c config.StorageConfig) Options {
	return Options{
		Addr:               c.ClickHouseAddr,
		Database:           c.ClickHouseDatabase,
		User:               c.ClickHouseUser,
		Password:           c.ClickHousePassword,
		TLS:                c.ClickHouseTLS,
		TLSCA:              c.ClickHouseTLSCA,
		TLSServerName:      c.ClickHouseTLSServerName,
		TLSCert:            c.ClickHouseTLSCert,
		TLSKey:             c.ClickHouseTLSKey,
		BatchSize:          c.BatchSize,
		SampleTransactions: c.SampleTransactions,
		StoreBodies:        c.StoreBodies,
		RetentionDays:      c.RetentionDays,
		RetryMaxElapsed:    c.RetryMaxElapsed,
		InsertConcurrency:  c.InsertConcurrency,
		Compression:        c.ClickHouseCompression,
	}
}

func (o *Options) defaults() {
	if o.Database == "" {
		o.Database = "apiscout"
	}
	if o.User == "" {
		o.User = "default"
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 50000
	}
	if o.SampleTransactions <= 0 {
		o.SampleTransactions = 1
	}
	if o.InsertConcurrency <= 0 {
		o.InsertConcurrency = 2
	}
	if o.RetryMaxElapsed <= 0 {
		o.RetryMaxElapsed = 30 * time.Second
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = 100 * time.Millisecond
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.Compression == "" {
		o.Compression = "lz4"
	}
}

// Store is the ClickHouse result store. Its methods are safe for
// concurrent use.
type Store struct {
	conn     driver.Conn
	opts     Options
	features Features
	log      *zap.Logger
	m        *metrics
}

type metrics struct {
	rows    *prometheus.CounterVec // table
	batches *prometheus.CounterVec // table
	retries *prometheus.CounterVec // table, reason
	failed  *prometheus.CounterVec // table, reason
	sampled prometheus.Counter
	seconds *prometheus.HistogramVec // table
}

// Reasons an insert failed, the values of the reason label.
const (
	reasonConnection = "connection" // lost, refused, reset: resent
	reasonServer     = "server"     // a passing server condition (too many parts, memory, shutting down): resent
	reasonTimeout    = "timeout"    // resent
	reasonRejected   = "rejected"   // the server refused the statement or the data: not resent
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "apiscout", Subsystem: "storage", Name: "rows_written_total",
			Help: "Rows inserted into ClickHouse, by table (a resent batch counts again).",
		}, []string{"table"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "apiscout", Subsystem: "storage", Name: "batches_written_total",
			Help: "INSERT batches accepted by ClickHouse, by table.",
		}, []string{"table"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "apiscout", Subsystem: "storage", Name: "insert_retries_total",
			Help: "INSERTs resent after a failure whose outcome is unknown, by table and reason.",
		}, []string{"table", "reason"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "apiscout", Subsystem: "storage", Name: "insert_failures_total",
			Help: "Writes returned as errors to the caller after retries, by table and reason (nothing is dropped: the caller keeps the rows).",
		}, []string{"table", "reason"}),
		sampled: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "apiscout", Subsystem: "storage", Name: "transactions_sampled_out_total",
			Help: "Transactions not stored because of storage.sample_transactions.",
		}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "apiscout", Subsystem: "storage", Name: "insert_seconds",
			Help:    "Duration of successful INSERT batches, by table.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}, []string{"table"}),
	}
	if reg != nil {
		m.rows = register(reg, m.rows)
		m.batches = register(reg, m.batches)
		m.retries = register(reg, m.retries)
		m.failed = register(reg, m.failed)
		m.sampled = register(reg, m.sampled)
		m.seconds = register(reg, m.seconds)
	}
	return m
}

// register adds c to reg, or returns the collector already there: a
// process may open the store more than once (a command that migrates,
// then runs), and both must count into the same series.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("clickhouse metrics: %v", err)) // two different metrics of one name: a bug
	}
	return c
}

// Open connects, detects the server's features and, when migrate is true,
// applies the schema. reg may be nil (no metrics).
func Open(ctx context.Context, opts Options, migrate bool, log *zap.Logger, reg prometheus.Registerer) (*Store, error) {
	opts.defaults()
	if log == nil {
		log = zap.NewNop()
	}
	if len(opts.Addr) == 0 {
		return nil, errors.New("clickhouse: storage.clickhouse_addr is empty")
	}
	var (
		compression *ch.Compression
		err         error
	)
	switch opts.Compression {
	case "lz4":
		compression = &ch.Compression{Method: ch.CompressionLZ4}
	case "zstd":
		compression = &ch.Compression{Method: ch.CompressionZSTD}
	case "none":
	default:
		return nil, fmt.Errorf("clickhouse: storage.clickhouse_compression %q is not lz4, zstd or none", opts.Compression)
	}
	chOpts := &ch.Options{
		Addr: opts.Addr,
		Auth: ch.Auth{Database: "default", Username: opts.User, Password: opts.Password},
		// The database may not exist before Migrate; every statement names
		// it instead.
		DialTimeout:     opts.DialTimeout,
		MaxOpenConns:    8,
		MaxIdleConns:    4,
		ConnMaxLifetime: time.Hour,
		Compression:     compression,
	}
	if chOpts.TLS, err = tlsConfig(opts); err != nil {
		return nil, err
	}
	conn, err := ch.Open(chOpts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse open %s: %w", strings.Join(opts.Addr, ","), err)
	}
	sv, err := conn.ServerVersion()
	if err != nil {
		conn.Close()
		hint := "is the server up? make clickhouse-up starts one on 127.0.0.1:19000"
		if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
			hint = "check storage.clickhouse_tls_ca and storage.clickhouse_tls_server_name"
		}
		return nil, fmt.Errorf("clickhouse connect %s: %w (%s)", strings.Join(opts.Addr, ","), err, hint)
	}
	s := &Store{
		conn:     conn,
		opts:     opts,
		features: DetectFeatures(int(sv.Version.Major), int(sv.Version.Minor), fmt.Sprintf("%d.%d.%d", sv.Version.Major, sv.Version.Minor, sv.Version.Patch)),
		log:      log,
		m:        newMetrics(reg),
	}
	log.Info("clickhouse connected", zap.Strings("addr", opts.Addr), zap.String("server", s.features.Version),
		zap.Bool("low_cardinality", s.features.LowCardinality), zap.Bool("datetime64", s.features.DateTime64),
		zap.Bool("ttl", s.features.TTL), zap.Bool("dedup_token", s.features.DedupToken))
	if migrate {
		if err := s.Migrate(ctx); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return s, nil
}

// tlsConfig builds the client's TLS settings, nil without TLS. Errors
// name the configuration key to fix.
func tlsConfig(o Options) (*tls.Config, error) {
	if !o.TLS {
		return nil, nil
	}
	// An empty ServerName is filled from each address by the dialer.
	t := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.TLSServerName}
	if o.TLSCA != "" {
		pem, err := os.ReadFile(o.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("clickhouse: storage.clickhouse_tls_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("clickhouse: storage.clickhouse_tls_ca: no PEM certificate in %s", o.TLSCA)
		}
		t.RootCAs = pool
	}
	if o.TLSCert != "" || o.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("clickhouse: storage.clickhouse_tls_cert/storage.clickhouse_tls_key: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// Features reports what the connected server supports.
func (s *Store) Features() Features { return s.features }

// Close releases the connections.
func (s *Store) Close() error { return s.conn.Close() }

// table is the qualified name of one of our tables.
func (s *Store) table(name string) string { return quoteIdent(s.opts.Database) + "." + name }

// retryReason classifies an insert error: "" when it cannot pass by
// itself (a bad statement, a type mismatch), else the reason label.
func retryReason(err error) string {
	var ex *ch.Exception
	if errors.As(err, &ex) {
		switch ex.Code {
		case 252, // TOO_MANY_PARTS: merges will catch up
			241, // MEMORY_LIMIT_EXCEEDED
			202, // TOO_MANY_SIMULTANEOUS_QUERIES
			159, // TIMEOUT_EXCEEDED
			209, // SOCKET_TIMEOUT
			210, // NETWORK_ERROR
			394: // QUERY_WAS_CANCELLED (server shutting down)
			return reasonServer
		}
		return ""
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return reasonTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed),
		errors.Is(err, sqldriver.ErrBadConn), errors.As(err, &ne):
		return reasonConnection
	}
	// clickhouse-go wraps some connection failures in plain errors.
	msg := err.Error()
	for _, s := range []string{"connection", "broken pipe", "EOF", "reset by peer", "refused", "acquire conn timeout"} {
		if strings.Contains(msg, s) {
			return reasonConnection
		}
	}
	return ""
}

// insert sends rows to table in one batch, built by fill, resending with
// backoff while the failure can pass. fill is called again for every
// attempt: clickhouse-go cannot resend a batch that failed, so the same
// rows are appended to a fresh one. token identifies the rows (see
// storage.BatchToken) for servers that deduplicate inserts.
func (s *Store) insert(ctx context.Context, table, columns string, n int, token string, fill func(driver.Batch) error) error {
	if n == 0 {
		return nil
	}
	stmt := "INSERT INTO " + s.table(table) + " (" + columns + ")"
	deadline := time.Now().Add(s.opts.RetryMaxElapsed)
	backoff := s.opts.RetryInitial
	for attempt := 0; ; attempt++ {
		start := time.Now()
		err := s.insertOnce(ctx, stmt, token, fill)
		if err == nil {
			s.m.rows.WithLabelValues(table).Add(float64(n))
			s.m.batches.WithLabelValues(table).Inc()
			s.m.seconds.WithLabelValues(table).Observe(time.Since(start).Seconds())
			if attempt > 0 {
				s.log.Info("clickhouse insert succeeded after retries", zap.String("table", table), zap.Int("attempts", attempt+1))
			}
			return nil
		}
		reason := retryReason(err)
		if reason == "" {
			s.m.failed.WithLabelValues(table, reasonRejected).Inc()
			return fmt.Errorf("clickhouse insert %s (%d rows): %w", table, n, err)
		}
		if ctx.Err() != nil || time.Now().Add(backoff).After(deadline) {
			s.m.failed.WithLabelValues(table, reason).Inc()
			return fmt.Errorf("clickhouse insert %s (%d rows, %d attempts): %w", table, n, attempt+1, err)
		}
		s.m.retries.WithLabelValues(table, reason).Inc()
		if attempt == 0 {
			s.log.Warn("clickhouse insert failed, resending", zap.String("table", table), zap.Int("rows", n), zap.Error(err))
		}
		select {
		case <-ctx.Done():
			s.m.failed.WithLabelValues(table, reason).Inc()
			return fmt.Errorf("clickhouse insert %s (%d rows): %w (last error: %v)", table, n, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Store) insertOnce(ctx context.Context, stmt, token string, fill func(driver.Batch) error) error {
	if s.features.DedupToken && token != "" {
		ctx = ch.Context(ctx, ch.WithSettings(ch.Settings{"insert_deduplication_token": token}))
	}
	// A dead server must fail the attempt, not hang it.
	actx, cancel := context.WithTimeout(ctx, max(s.opts.RetryMaxElapsed, 30*time.Second))
	// clickhouse-go (v2.50) stops Send's context watchdog without waiting
	// for it: cancelling actx as Send returns can let the watchdog close
	// the connection after it went back to the pool, and the next insert
	// on it fails with "use of closed network connection" (the soak test
	// saw one such retry every two to three minutes; upstream
	// ClickHouse/clickhouse-go#2032). The watchdog has long stopped a
	// second later; the deadline would end actx anyway.
	defer func() { time.AfterFunc(time.Second, cancel) }()
	b, err := s.conn.PrepareBatch(actx, stmt, driver.WithReleaseConnection())
	if err != nil {
		return err
	}
	if err := fill(b); err != nil {
		_ = b.Abort()
		return err
	}
	return b.Send()
}
