package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Features are what the connected server supports beyond the 18.16
// baseline that CI runs; the DDL and the inserts use them only when set.
type Features struct {
	Version string
	// LowCardinality(String) for repetitive strings (19.x+; we use it from
	// 20.1, where it is no longer experimental).
	LowCardinality bool
	// DateTime64(3) for millisecond timestamps (20.1+).
	DateTime64 bool
	// TTL clauses for retention (19.6+; from 20.1 here, with the others).
	TTL bool
	// DedupToken: insert_deduplication_token and the MergeTree setting
	// non_replicated_deduplication_window (22.2+), so a resent batch is
	// stored once.
	DedupToken bool
}

// DetectFeatures maps a server version to features.
func DetectFeatures(major, minor int, version string) Features {
	atLeast := func(ma, mi int) bool { return major > ma || (major == ma && minor >= mi) }
	return Features{
		Version:        version,
		LowCardinality: atLeast(20, 1),
		DateTime64:     atLeast(20, 1),
		TTL:            atLeast(20, 1),
		DedupToken:     atLeast(22, 2),
	}
}

// Migration is one versioned schema step. Every statement is idempotent
// (IF NOT EXISTS), so a migration interrupted between its statements and
// its record in schema_migrations is simply applied again.
type Migration struct {
	Version    uint32
	Name       string
	Statements []string
}

// DedupWindow is how many recent insert tokens a table remembers on
// servers with DedupToken: more than the batches in flight across a
// restart.
const DedupWindow = 1000

// Migrations returns the schema for a server with features f, the database
// db and rows kept retentionDays (0: forever; applied only with TTL).
//
// Every table tolerates a row written twice: the sorting key identifies a
// record (ReplacingMergeTree keeps one per key after merges) and every
// read groups by that key or reads FINAL, because merges happen whenever
// the server likes and a duplicate may still be on disk when queried.
// Tables are partitioned by the day of a time that does not change for a
// record (replacement only happens within a partition).
func Migrations(f Features, db string, retentionDays int) []Migration {
	lc := "String"
	if f.LowCardinality {
		lc = "LowCardinality(String)"
	}
	dt := "DateTime('UTC')"
	if f.DateTime64 {
		dt = "DateTime64(3, 'UTC')"
	}
	ttl := func(col string) string {
		if !f.TTL || retentionDays <= 0 {
			return ""
		}
		return fmt.Sprintf("\nTTL toDateTime(%s) + toIntervalDay(%d)", col, retentionDays)
	}
	settings := ""
	if f.DedupToken {
		settings = fmt.Sprintf("\nSETTINGS non_replicated_deduplication_window = %d", DedupWindow)
	}
	r := strings.NewReplacer("{db}", quoteIdent(db), "{lc}", lc, "{dt}", dt, "{settings}", settings)
	q := func(s string) string { return r.Replace(s) }

	return []Migration{
		{1, "database and schema_migrations", []string{
			q("CREATE DATABASE IF NOT EXISTS {db}"),
			q(`CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime('UTC')
) ENGINE = ReplacingMergeTree
ORDER BY version`),
		}},
		{2, "transactions", []string{q(`CREATE TABLE IF NOT EXISTS {db}.transactions (
    ts {dt},
    id String,
    sensor_id {lc},
    seq UInt64,
    service {lc},
    method {lc},
    path String,
    query String,
    status UInt16,
    protocol {lc},
    client String,
    server String,
    duration_us UInt64,
    request_bytes UInt64,
    response_bytes UInt64,
    request_content_type {lc},
    response_content_type {lc},
    flags UInt32,
    capture_loss UInt64,
    record String -- wire encoding (protobuf), see storage.AppendTransactionRecord
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (service, ts, id)` + ttl("ts") + "{settings}")}},
		{3, "endpoints", []string{q(`CREATE TABLE IF NOT EXISTS {db}.endpoints (
    service {lc},
    method {lc},
    path String,
    version UInt64,
    protocol {lc},
    classification {lc},
    calls Int64,
    first_seen {dt},
    last_seen {dt},
    auth Array(String),
    sensitive Array(String),
    unauthenticated UInt8,
    risk_score Float64,
    findings Array(String),
    record String
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(first_seen)
ORDER BY (service, method, path){settings}`)}},
		{4, "services", []string{q(`CREATE TABLE IF NOT EXISTS {db}.services (
    service {lc},
    version UInt64,
    calls Int64,
    first_seen {dt},
    last_seen {dt},
    risk_score Float64,
    spec String,
    record String
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(first_seen)
ORDER BY service{settings}`)}},
		{5, "anomalies", []string{q(`CREATE TABLE IF NOT EXISTS {db}.anomalies (
    id String,
    version UInt64,
    type {lc},
    severity {lc},
    owasp {lc},
    host {lc},
    method {lc},
    path String,
    client String,
    started_at {dt},
    ended_at {dt},
    observed Float64,
    expected Float64,
    summary String,
    state {lc},
    count Int64,
    record String
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(started_at)
ORDER BY (type, host, id)` + ttl("started_at") + "{settings}")}},
		{6, "endpoint_minutes", []string{q(`CREATE TABLE IF NOT EXISTS {db}.endpoint_minutes (
    minute DateTime('UTC'),
    service {lc},
    method {lc},
    path String,
    calls UInt64,
    errors_4xx UInt64,
    errors_5xx UInt64,
    no_response UInt64,
    unauthenticated UInt64,
    latency_p50_ms Float64,
    latency_p90_ms Float64,
    latency_p95_ms Float64,
    latency_p99_ms Float64,
    latency_max_ms Float64,
    request_bytes UInt64,
    response_bytes UInt64,
    status_codes Array(UInt16),
    status_counts Array(UInt64)
) ENGINE = ReplacingMergeTree(calls)
PARTITION BY toYYYYMMDD(minute)
ORDER BY (service, method, path, minute)` + ttl("minute") + "{settings}")}},
		{7, "checkpoints", []string{q(`CREATE TABLE IF NOT EXISTS {db}.checkpoints (
    key String,
    version UInt64,
    saved_at DateTime('UTC'),
    offsets String,
    data String
) ENGINE = ReplacingMergeTree(version)
ORDER BY key{settings}`)}},
		{8, "sensor_heartbeats", []string{q(`CREATE TABLE IF NOT EXISTS {db}.sensor_heartbeats (
    ts {dt},
    sensor_id {lc},
    seq UInt64,
    packets UInt64,
    bytes UInt64,
    kernel_drops UInt64,
    capture_loss_bytes UInt64,
    acked_bytes UInt64,
    transactions UInt64,
    dropped UInt64,
    record String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (sensor_id, ts, seq)` + ttl("ts") + "{settings}")}},
		// For people and tools querying ClickHouse directly: the latest
		// state of each endpoint and incident, one query away, duplicates
		// collapsed the way the store's reads do.
		{9, "endpoints_latest and anomalies_latest views", []string{
			q(`CREATE VIEW IF NOT EXISTS {db}.endpoints_latest AS
SELECT service, method, path,
    argMax(protocol, version) AS protocol_latest,
    argMax(classification, version) AS classification_latest,
    argMax(calls, version) AS calls_latest,
    argMax(first_seen, version) AS first_seen_latest,
    argMax(last_seen, version) AS last_seen_latest,
    argMax(auth, version) AS auth_latest,
    argMax(sensitive, version) AS sensitive_latest,
    argMax(unauthenticated, version) AS unauthenticated_latest,
    argMax(risk_score, version) AS risk_score_latest,
    argMax(findings, version) AS findings_latest,
    argMax(record, version) AS record_latest
FROM {db}.endpoints
GROUP BY service, method, path`),
			q(`CREATE VIEW IF NOT EXISTS {db}.anomalies_latest AS
SELECT id,
    argMax(type, version) AS type_latest,
    argMax(severity, version) AS severity_latest,
    argMax(owasp, version) AS owasp_latest,
    argMax(host, version) AS host_latest,
    argMax(method, version) AS method_latest,
    argMax(path, version) AS path_latest,
    argMax(client, version) AS client_latest,
    argMax(started_at, version) AS started_at_latest,
    argMax(ended_at, version) AS ended_at_latest,
    argMax(state, version) AS state_latest,
    argMax(count, version) AS count_latest,
    argMax(summary, version) AS summary_latest,
    argMax(record, version) AS record_latest
FROM {db}.anomalies
GROUP BY id`),
		}},
	}
}

// quoteIdent quotes a database name for DDL; the name comes from
// configuration, never from a request, but a backquote in it must not end
// the identifier.
func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}

// Migrate applies every migration the database has not recorded, in
// order, then brings the retention (TTL) of existing tables in line with
// the configuration where the server supports TTL. Running it again does
// nothing.
func (s *Store) Migrate(ctx context.Context) error {
	ms := Migrations(s.features, s.opts.Database, s.opts.RetentionDays)
	// The first migration creates the table that records the others.
	for _, st := range ms[0].Statements {
		if err := s.conn.Exec(ctx, st); err != nil {
			return fmt.Errorf("clickhouse migrate %d (%s): %w", ms[0].Version, ms[0].Name, err)
		}
	}
	applied := map[uint32]bool{}
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT version FROM "+s.table("schema_migrations"))
	if err != nil {
		return fmt.Errorf("clickhouse migrate: read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("clickhouse migrate: read schema_migrations: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("clickhouse migrate: read schema_migrations: %w", err)
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		for _, st := range m.Statements {
			if err := s.conn.Exec(ctx, st); err != nil {
				return fmt.Errorf("clickhouse migrate %d (%s): %w", m.Version, m.Name, err)
			}
		}
		// Old servers expect INSERT data as blocks, never inline VALUES.
		row := [][]any{{m.Version, m.Name, time.Now().UTC()}}
		if err := s.insert(ctx, "schema_migrations", "version, name, applied_at", 1, "", appendRows(row)); err != nil {
			return fmt.Errorf("clickhouse migrate %d (%s): record: %w", m.Version, m.Name, err)
		}
		s.log.Info("clickhouse migration applied", zap.Uint32("version", m.Version), zap.String("name", m.Name))
	}
	return s.applyRetention(ctx)
}

// retentionColumns are the tables whose rows expire, with their time.
var retentionColumns = map[string]string{
	"transactions":      "ts",
	"anomalies":         "started_at",
	"endpoint_minutes":  "minute",
	"sensor_heartbeats": "ts",
}

// applyRetention changes a table's TTL when storage.retention_days
// changed since it was created. Modifying a TTL rewrites parts on some
// versions, so it happens only when the clause differs.
func (s *Store) applyRetention(ctx context.Context) error {
	if !s.features.TTL {
		return nil
	}
	for table, col := range retentionColumns {
		var create string
		if err := s.conn.QueryRow(ctx, "SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?",
			s.opts.Database, table).Scan(&create); err != nil {
			return fmt.Errorf("clickhouse retention %s: %w", table, err)
		}
		want := fmt.Sprintf("toIntervalDay(%d)", s.opts.RetentionDays)
		has := strings.Contains(create, " TTL ")
		switch {
		case s.opts.RetentionDays <= 0 && has:
			if err := s.conn.Exec(ctx, "ALTER TABLE "+s.table(table)+" REMOVE TTL"); err != nil {
				return fmt.Errorf("clickhouse retention %s: %w", table, err)
			}
		case s.opts.RetentionDays > 0 && !strings.Contains(create, want):
			if err := s.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s MODIFY TTL toDateTime(%s) + %s", s.table(table), col, want)); err != nil {
				return fmt.Errorf("clickhouse retention %s: %w", table, err)
			}
		}
	}
	return nil
}
