// Package embedded stores the analyzer's results in one SQLite file
// (modernc.org/sqlite: pure Go, no cgo, no server) for the single-process
// deployment (apiscout run). It has the same methods and the same answers
// as storage/clickhouse, so the UI and the CLI read either, and it
// survives restarts: everything is in the file.
//
// Records are keyed (primary keys) and versioned like in ClickHouse, but
// here the database resolves "latest wins" on write: an upsert replaces a
// row only with an equal or newer version. Each write call is one SQLite
// transaction: all of it is stored or none.
package embedded

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/wire"
)

// Options configure a Store.
type Options struct {
	Path string
	// SampleTransactions keeps 1 in N transactions (default 1: all).
	SampleTransactions int
	// StoreBodies keeps (redacted) bodies in the transaction record.
	StoreBodies bool
	// RetentionDays deletes transactions, statistics, heartbeats and
	// closed incidents older than this many days of packet time, counted
	// from the newest transaction written (0: keep).
	RetentionDays int
}

// Store is the embedded result store. Safe for concurrent use; writes are
// serialized by SQLite.
type Store struct {
	db   *sql.DB
	opts Options
	log  *zap.Logger
}

// Open opens (creating if needed) the database file and applies the
// schema when migrate is true.
func Open(ctx context.Context, opts Options, migrate bool, log *zap.Logger) (*Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if opts.Path == "" {
		return nil, errors.New("embedded: storage.path is empty")
	}
	if opts.SampleTransactions <= 0 {
		opts.SampleTransactions = 1
	}
	if dir := filepath.Dir(opts.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("embedded open %s: %w", opts.Path, err)
		}
	}
	// WAL lets readers (the UI) run while the analyzer writes; the busy
	// timeout makes a second writer wait instead of failing.
	dsn := "file:" + opts.Path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(on)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("embedded open %s: %w", opts.Path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("embedded open %s: %w", opts.Path, err)
	}
	s := &Store{db: db, opts: opts, log: log}
	if migrate {
		if err := s.Migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return s, nil
}

// Close closes the database file.
func (s *Store) Close() error { return s.db.Close() }

// migrations of the embedded schema; each statement is idempotent.
var migrations = []struct {
	version uint32
	name    string
	stmts   []string
}{
	{1, "schema_migrations", []string{`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`}},
	{2, "transactions", []string{`CREATE TABLE IF NOT EXISTS transactions (
    id TEXT PRIMARY KEY, ts INTEGER NOT NULL, service TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
    status INTEGER NOT NULL, duration_us INTEGER NOT NULL, record BLOB NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS transactions_service_ts ON transactions (service, ts)`,
		`CREATE INDEX IF NOT EXISTS transactions_ts ON transactions (ts)`}},
	{3, "endpoints", []string{`CREATE TABLE IF NOT EXISTS endpoints (
    service TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, version INTEGER NOT NULL,
    classification TEXT NOT NULL, calls INTEGER NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
    unauthenticated INTEGER NOT NULL, sensitive TEXT NOT NULL, risk_score REAL NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (service, method, path))`}},
	{4, "services", []string{`CREATE TABLE IF NOT EXISTS services (
    service TEXT PRIMARY KEY, version INTEGER NOT NULL, record TEXT NOT NULL)`}},
	{5, "anomalies", []string{`CREATE TABLE IF NOT EXISTS anomalies (
    id TEXT PRIMARY KEY, version INTEGER NOT NULL, type TEXT NOT NULL, severity TEXT NOT NULL, host TEXT NOT NULL,
    method TEXT NOT NULL, path TEXT NOT NULL, state TEXT NOT NULL, started_at INTEGER NOT NULL, ended_at INTEGER NOT NULL,
    record TEXT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS anomalies_start ON anomalies (started_at)`}},
	{6, "endpoint_minutes", []string{`CREATE TABLE IF NOT EXISTS endpoint_minutes (
    service TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, minute INTEGER NOT NULL,
    calls INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (service, method, path, minute))`,
		`CREATE INDEX IF NOT EXISTS endpoint_minutes_minute ON endpoint_minutes (minute)`}},
	{7, "checkpoints", []string{`CREATE TABLE IF NOT EXISTS checkpoints (
    key TEXT PRIMARY KEY, version INTEGER NOT NULL, saved_at INTEGER NOT NULL, offsets TEXT NOT NULL, data BLOB NOT NULL)`}},
	{8, "sensor_heartbeats", []string{`CREATE TABLE IF NOT EXISTS sensor_heartbeats (
    sensor_id TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (sensor_id, seq, ts))`}},
}

// Migrate applies the migrations the file has not recorded.
func (s *Store) Migrate(ctx context.Context) error {
	for _, m := range migrations {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if m.version > 1 {
				var n int
				if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations WHERE version = ?", m.version).Scan(&n); err != nil {
					return err
				}
				if n > 0 {
					return nil
				}
			}
			for _, st := range m.stmts {
				if _, err := tx.ExecContext(ctx, st); err != nil {
					return err
				}
			}
			_, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
				m.version, m.name, time.Now().UTC().Format(time.RFC3339))
			return err
		})
		if err != nil {
			return fmt.Errorf("embedded migrate %d (%s): %w", m.version, m.name, err)
		}
	}
	return nil
}

// tx runs fn in one transaction.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// exec prepares stmt once and runs it for each of n rows.
func (s *Store) exec(ctx context.Context, what, stmt string, n int, args func(i int) ([]any, error)) error {
	if n == 0 {
		return nil
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, stmt)
		if err != nil {
			return err
		}
		defer st.Close()
		for i := 0; i < n; i++ {
			a, err := args(i)
			if err != nil {
				return err
			}
			if _, err := st.ExecContext(ctx, a...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("embedded %s (%d rows): %w", what, n, err)
	}
	return nil
}

// WriteTransactions stores the transactions that pass sampling.
func (s *Store) WriteTransactions(ctx context.Context, txs []*wire.Transaction) error {
	if s.opts.SampleTransactions > 1 {
		kept := txs[:0:0]
		for _, t := range txs {
			if storage.Sampled(t.ID(), s.opts.SampleTransactions) {
				kept = append(kept, t)
			}
		}
		txs = kept
	}
	err := s.exec(ctx, "transactions", `INSERT OR IGNORE INTO transactions (id, ts, service, method, path, status, duration_us, record)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, len(txs), func(i int) ([]any, error) {
		t := txs[i]
		rec := storage.AppendTransactionRecord(nil, t, s.opts.StoreBodies)
		return []any{t.ID(), t.RequestStart.UnixNano(), t.Key(), t.Method, t.Path, t.Status, int64(storage.TransactionDuration(t)), rec}, nil
	})
	if err != nil || s.opts.RetentionDays <= 0 || len(txs) == 0 {
		return err
	}
	return s.expire(ctx, txs[len(txs)-1].RequestStart)
}

// expire deletes rows older than the retention, measured in packet time
// from now (the newest transaction written).
func (s *Store) expire(ctx context.Context, now time.Time) error {
	cut := now.Add(-time.Duration(s.opts.RetentionDays) * 24 * time.Hour)
	for _, st := range []struct {
		q string
		v int64
	}{
		{"DELETE FROM transactions WHERE ts < ?", cut.UnixNano()},
		{"DELETE FROM endpoint_minutes WHERE minute < ?", cut.Unix()},
		{"DELETE FROM sensor_heartbeats WHERE ts < ?", cut.UnixNano()},
		{"DELETE FROM anomalies WHERE state = 'closed' AND ended_at < ?", cut.Unix()},
	} {
		if _, err := s.db.ExecContext(ctx, st.q, st.v); err != nil {
			return fmt.Errorf("embedded retention: %w", err)
		}
	}
	return nil
}

func jsonText(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// WriteEndpoints stores endpoint states; a state replaces the stored one
// when its version (LastSeen) is not older.
func (s *Store) WriteEndpoints(ctx context.Context, eps []inventory.Endpoint) error {
	return s.exec(ctx, "endpoints", `INSERT INTO endpoints (service, method, path, version, classification, calls,
    first_seen, last_seen, unauthenticated, sensitive, risk_score, record)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (service, method, path) DO UPDATE SET version = excluded.version, classification = excluded.classification,
    calls = excluded.calls, first_seen = excluded.first_seen, last_seen = excluded.last_seen,
    unauthenticated = excluded.unauthenticated, sensitive = excluded.sensitive, risk_score = excluded.risk_score,
    record = excluded.record
WHERE excluded.version >= endpoints.version`, len(eps), func(i int) ([]any, error) {
		e := &eps[i]
		rec, err := jsonText(e)
		if err != nil {
			return nil, err
		}
		sens, err := jsonText(nonNil(e.Sensitive))
		if err != nil {
			return nil, err
		}
		// Times as seconds: sorting agrees with ClickHouse's DateTime.
		return []any{e.Service, e.Method, e.Path, int64(storage.Version(e.LastSeen, 0)), string(e.Classification), e.Calls,
			e.FirstSeen.Unix(), e.LastSeen.Unix(), e.Unauthenticated, sens, e.RiskScore, rec}, nil
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// WriteServices stores service states (without their endpoints).
func (s *Store) WriteServices(ctx context.Context, svcs []inventory.Service) error {
	return s.exec(ctx, "services", `INSERT INTO services (service, version, record) VALUES (?, ?, ?)
ON CONFLICT (service) DO UPDATE SET version = excluded.version, record = excluded.record
WHERE excluded.version >= services.version`, len(svcs), func(i int) ([]any, error) {
		c := svcs[i]
		c.Endpoints = nil
		rec, err := jsonText(&c)
		if err != nil {
			return nil, err
		}
		return []any{c.Host, int64(storage.Version(c.LastSeen, 0)), rec}, nil
	})
}

// WriteAnomalies stores incident updates; per ID the latest wins.
func (s *Store) WriteAnomalies(ctx context.Context, as []anomaly.Anomaly) error {
	for i := range as {
		if as[i].ID == "" {
			return fmt.Errorf("embedded anomalies: record %d (%s on %s) has no ID", i, as[i].Type, as[i].Host)
		}
	}
	return s.exec(ctx, "anomalies", `INSERT INTO anomalies (id, version, type, severity, host, method, path, state,
    started_at, ended_at, record)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET version = excluded.version, type = excluded.type, severity = excluded.severity,
    host = excluded.host, method = excluded.method, path = excluded.path, state = excluded.state,
    started_at = excluded.started_at, ended_at = excluded.ended_at, record = excluded.record
WHERE excluded.version >= anomalies.version`, len(as), func(i int) ([]any, error) {
		a := &as[i]
		rec, err := jsonText(a)
		if err != nil {
			return nil, err
		}
		v := storage.AnomalyVersion(a.End, a.Count, a.State == anomaly.Closed)
		return []any{a.ID, int64(v), a.Type, string(a.Severity), a.Host, a.Method, a.Path, string(a.State),
			a.Start.Unix(), a.End.Unix(), rec}, nil
	})
}

// WriteStats stores per-minute statistics; a minute written again with at
// least as many calls replaces the stored one.
func (s *Store) WriteStats(ctx context.Context, stats []storage.EndpointMinute) error {
	return s.exec(ctx, "endpoint_minutes", `INSERT INTO endpoint_minutes (service, method, path, minute, calls, record)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (service, method, path, minute) DO UPDATE SET calls = excluded.calls, record = excluded.record
WHERE excluded.calls >= endpoint_minutes.calls`, len(stats), func(i int) ([]any, error) {
		m := stats[i]
		m.Minute = m.Minute.UTC().Truncate(time.Minute)
		rec, err := jsonText(&m)
		if err != nil {
			return nil, err
		}
		return []any{m.Service, m.Method, m.Path, m.Minute.Unix(), int64(m.Calls), rec}, nil
	})
}

// WriteHeartbeats stores sensor heartbeats.
func (s *Store) WriteHeartbeats(ctx context.Context, hbs []wire.Heartbeat) error {
	return s.exec(ctx, "sensor_heartbeats", `INSERT OR IGNORE INTO sensor_heartbeats (sensor_id, seq, ts, record) VALUES (?, ?, ?, ?)`,
		len(hbs), func(i int) ([]any, error) {
			rec, err := jsonText(&hbs[i])
			if err != nil {
				return nil, err
			}
			return []any{hbs[i].SensorID, int64(hbs[i].Seq), hbs[i].Time.UnixNano(), rec}, nil
		})
}

// SaveCheckpoint stores the state for key; the latest save wins.
func (s *Store) SaveCheckpoint(ctx context.Context, key string, data []byte, offsets map[int]int64) error {
	off, err := json.Marshal(offsets)
	if err != nil {
		return fmt.Errorf("embedded checkpoint %s: %w", key, err)
	}
	now := time.Now().UTC()
	if _, err := s.db.ExecContext(ctx, `INSERT INTO checkpoints (key, version, saved_at, offsets, data) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET version = excluded.version, saved_at = excluded.saved_at, offsets = excluded.offsets, data = excluded.data
WHERE excluded.version >= checkpoints.version`, key, now.UnixNano(), now.Unix(), string(off), data); err != nil {
		return fmt.Errorf("embedded checkpoint %s: %w", key, err)
	}
	return nil
}

// LoadCheckpoint returns the latest checkpoint of key, or
// storage.ErrNotFound.
func (s *Store) LoadCheckpoint(ctx context.Context, key string) (storage.Checkpoint, error) {
	var (
		cp    = storage.Checkpoint{Key: key}
		off   string
		saved int64
		ver   int64
	)
	err := s.db.QueryRowContext(ctx, "SELECT version, saved_at, offsets, data FROM checkpoints WHERE key = ?", key).
		Scan(&ver, &saved, &off, &cp.Data)
	if errors.Is(err, sql.ErrNoRows) {
		return storage.Checkpoint{}, fmt.Errorf("embedded checkpoint %s: %w", key, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Checkpoint{}, fmt.Errorf("embedded checkpoint %s: %w", key, err)
	}
	cp.Version, cp.SavedAt = uint64(ver), time.Unix(saved, 0).UTC()
	if err := json.Unmarshal([]byte(off), &cp.Offsets); err != nil {
		return storage.Checkpoint{}, fmt.Errorf("embedded checkpoint %s: bad offsets: %w", key, err)
	}
	return cp, nil
}

// Endpoints returns one page of endpoints matching q and how many match.
func (s *Store) Endpoints(ctx context.Context, q storage.EndpointQuery) ([]inventory.Endpoint, int, error) {
	col, desc, err := storage.SortColumn(q.Sort)
	if err != nil {
		return nil, 0, err
	}
	var (
		conds []string
		args  []any
	)
	add := func(c string, v ...any) { conds = append(conds, c); args = append(args, v...) }
	if q.Service != "" {
		add("service = ?", q.Service)
	}
	if q.Classification != "" {
		add("classification = ?", string(q.Classification))
	}
	if q.Unauthenticated {
		add("unauthenticated = 1")
	}
	switch q.Sensitive {
	case "":
	case "any":
		add("json_array_length(sensitive) > 0")
	default:
		add("EXISTS (SELECT 1 FROM json_each(endpoints.sensitive) WHERE value = ?)", q.Sensitive)
	}
	if q.Search != "" {
		add("(instr(lower(path), lower(?)) > 0 OR instr(lower(service), lower(?)) > 0)", q.Search, q.Search)
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	var total int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM endpoints"+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("embedded endpoints count: %w", err)
	}
	dir := "ASC"
	if desc {
		dir = "DESC"
	}
	// col comes from storage.SortKeys, never from the request.
	rows, err := s.db.QueryContext(ctx, fmt.Sprintf("SELECT record FROM endpoints%s ORDER BY %s %s, service, method, path LIMIT %d OFFSET %d",
		where, col, dir, storage.PageLimit(q.Limit), max(q.Offset, 0)), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("embedded endpoints: %w", err)
	}
	out, err := scanRecords[inventory.Endpoint](rows)
	if err != nil {
		return nil, 0, fmt.Errorf("embedded endpoints: %w", err)
	}
	return out, total, nil
}

func scanRecords[T any](rows *sql.Rows) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		var rec string
		if err := rows.Scan(&rec); err != nil {
			return nil, err
		}
		var v T
		if err := json.Unmarshal([]byte(rec), &v); err != nil {
			return nil, fmt.Errorf("bad record: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Services returns every service with counts over its endpoints.
func (s *Store) Services(ctx context.Context) ([]storage.ServiceSummary, error) {
	by := map[string]*storage.ServiceSummary{}
	var order []string
	rows, err := s.db.QueryContext(ctx, `SELECT service, count(*), sum(calls), min(first_seen), max(last_seen),
    sum(classification = 'shadow'), sum(classification = 'zombie'), sum(unauthenticated),
    sum(json_array_length(sensitive) > 0), max(risk_score)
FROM endpoints GROUP BY service ORDER BY service`)
	if err != nil {
		return nil, fmt.Errorf("embedded services: %w", err)
	}
	for rows.Next() {
		var (
			name                            string
			n, shadow, zombie, unauth, sens int
			calls, first, last              int64
			risk                            float64
		)
		if err := rows.Scan(&name, &n, &calls, &first, &last, &shadow, &zombie, &unauth, &sens, &risk); err != nil {
			rows.Close()
			return nil, fmt.Errorf("embedded services: %w", err)
		}
		by[name] = &storage.ServiceSummary{
			Service:       inventory.Service{Host: name, Calls: calls, FirstSeen: time.Unix(first, 0).UTC(), LastSeen: time.Unix(last, 0).UTC(), RiskScore: risk},
			EndpointCount: n, Shadow: shadow, Zombie: zombie, Unauthenticated: unauth, Sensitive: sens,
		}
		order = append(order, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("embedded services: %w", err)
	}
	rows, err = s.db.QueryContext(ctx, "SELECT record FROM services")
	if err != nil {
		return nil, fmt.Errorf("embedded services: %w", err)
	}
	svcs, err := scanRecords[inventory.Service](rows)
	if err != nil {
		return nil, fmt.Errorf("embedded services: %w", err)
	}
	for _, svc := range svcs {
		sum, ok := by[svc.Host]
		if !ok {
			sum = &storage.ServiceSummary{}
			by[svc.Host] = sum
			order = append(order, svc.Host)
		}
		sum.Service = svc
	}
	return storage.SortServices(by, order), nil
}

// Anomalies returns one page of incidents matching q, latest start first.
func (s *Store) Anomalies(ctx context.Context, q storage.AnomalyQuery) ([]anomaly.Anomaly, int, error) {
	var (
		conds []string
		args  []any
	)
	add := func(c string, v any) { conds = append(conds, c); args = append(args, v) }
	for _, f := range []struct{ col, v string }{
		{"host", q.Host}, {"method", q.Method}, {"path", q.Path}, {"type", q.Type}, {"severity", q.Severity}, {"state", q.State},
	} {
		if f.v != "" {
			add(f.col+" = ?", f.v) // col is a constant above
		}
	}
	if !q.From.IsZero() {
		add("started_at >= ?", q.From.Unix())
	}
	if !q.To.IsZero() {
		add("started_at < ?", q.To.Unix())
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	var total int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM anomalies"+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("embedded anomalies count: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, fmt.Sprintf("SELECT record FROM anomalies%s ORDER BY started_at DESC, id LIMIT %d OFFSET %d",
		where, storage.PageLimit(q.Limit), max(q.Offset, 0)), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("embedded anomalies: %w", err)
	}
	out, err := scanRecords[anomaly.Anomaly](rows)
	if err != nil {
		return nil, 0, fmt.Errorf("embedded anomalies: %w", err)
	}
	return out, total, nil
}

// EndpointStats returns one endpoint's minutes in [from, to), oldest
// first.
func (s *Store) EndpointStats(ctx context.Context, service, method, path string, from, to time.Time) ([]storage.EndpointMinute, error) {
	q := "SELECT record FROM endpoint_minutes WHERE service = ? AND method = ? AND path = ?"
	args := []any{service, method, path}
	if !from.IsZero() {
		q += " AND minute >= ?"
		args = append(args, from.Unix())
	}
	if !to.IsZero() {
		q += " AND minute < ?"
		args = append(args, to.Unix())
	}
	rows, err := s.db.QueryContext(ctx, q+" ORDER BY minute", args...)
	if err != nil {
		return nil, fmt.Errorf("embedded endpoint stats: %w", err)
	}
	out, err := scanRecords[storage.EndpointMinute](rows)
	if err != nil {
		return nil, fmt.Errorf("embedded endpoint stats: %w", err)
	}
	for i := range out {
		out[i].Minute = out[i].Minute.UTC()
	}
	return out, nil
}

// Transactions returns stored transactions, newest first.
func (s *Store) Transactions(ctx context.Context, q storage.TransactionQuery) ([]wire.Transaction, error) {
	var (
		conds []string
		args  []any
	)
	if len(q.IDs) > 0 {
		ids := slices.Compact(slices.Sorted(slices.Values(q.IDs)))
		conds = append(conds, "id IN ("+strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")+")")
		for _, id := range ids {
			args = append(args, id)
		}
	}
	if q.Service != "" {
		conds = append(conds, "service = ?")
		args = append(args, q.Service)
	}
	if !q.From.IsZero() {
		conds = append(conds, "ts >= ?")
		args = append(args, q.From.Truncate(time.Second).UnixNano())
	}
	if !q.To.IsZero() {
		conds = append(conds, "ts < ?")
		args = append(args, q.To.Truncate(time.Second).UnixNano())
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	rows, err := s.db.QueryContext(ctx, fmt.Sprintf("SELECT record FROM transactions%s ORDER BY ts DESC, id LIMIT %d", where, storage.PageLimit(q.Limit)), args...)
	if err != nil {
		return nil, fmt.Errorf("embedded transactions: %w", err)
	}
	defer rows.Close()
	var out []wire.Transaction
	for rows.Next() {
		var rec []byte
		if err := rows.Scan(&rec); err != nil {
			return nil, fmt.Errorf("embedded transactions: %w", err)
		}
		var t wire.Transaction
		if err := storage.DecodeTransactionRecord(rec, &t); err != nil {
			return nil, fmt.Errorf("embedded transactions: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("embedded transactions: %w", err)
	}
	return out, nil
}
