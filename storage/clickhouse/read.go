package clickhouse

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/wire"
)

// Every read collapses duplicates itself: argMax(column, version) grouped
// by the record's key, because ReplacingMergeTree removes them only when
// it merges, and a resent batch may still be there twice. Aliases carry a
// prefix so that they never shadow a column (old servers resolve an alias
// inside the expression that defines it).

// latestEndpoints is the latest state of every endpoint, optionally of one
// service (a filter on the key, so it is safe before grouping).
func (s *Store) latestEndpoints(serviceFilter bool) string {
	where := ""
	if serviceFilter {
		where = "WHERE service = ?"
	}
	return `SELECT service AS l_service, method AS l_method, path AS l_path,
    argMax(record, version) AS l_record,
    argMax(classification, version) AS l_classification,
    argMax(calls, version) AS l_calls,
    argMax(first_seen, version) AS l_first_seen,
    argMax(last_seen, version) AS l_last_seen,
    argMax(unauthenticated, version) AS l_unauthenticated,
    argMax(sensitive, version) AS l_sensitive,
    argMax(risk_score, version) AS l_risk_score
FROM ` + s.table("endpoints") + ` ` + where + `
GROUP BY service, method, path`
}

// readQuery is one read's SQL with its bound values (clickhouse-go binds
// them client-side, quoted: values never become SQL text).
type readQuery struct {
	sql  string
	args []any
}

// endpointsQueries builds the count and the page query of Endpoints.
func (s *Store) endpointsQueries(q storage.EndpointQuery) (count, page readQuery, err error) {
	col, desc, err := storage.SortColumn(q.Sort)
	if err != nil {
		return count, page, err
	}
	var (
		conds []string
		args  []any
	)
	if q.Service != "" {
		args = append(args, q.Service)
	}
	if q.Classification != "" {
		conds = append(conds, "l_classification = ?")
		args = append(args, string(q.Classification))
	}
	if q.Unauthenticated {
		conds = append(conds, "l_unauthenticated = 1")
	}
	switch q.Sensitive {
	case "":
	case "any":
		conds = append(conds, "notEmpty(l_sensitive)")
	default:
		conds = append(conds, "has(l_sensitive, ?)")
		args = append(args, q.Sensitive)
	}
	if q.Search != "" {
		conds = append(conds, "(positionCaseInsensitive(l_path, ?) > 0 OR positionCaseInsensitive(l_service, ?) > 0)")
		args = append(args, q.Search, q.Search)
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	inner := s.latestEndpoints(q.Service != "")
	dir := "ASC"
	if desc {
		dir = "DESC"
	}
	order := "l_" + col // col comes from storage.SortKeys, never from the request
	if col == "first_seen" || col == "last_seen" {
		order = "toDateTime(" + order + ")" // seconds, as on servers without DateTime64
	}
	count = readQuery{"SELECT count() FROM (" + inner + ")" + where, args}
	page = readQuery{fmt.Sprintf("SELECT l_record FROM (%s)%s ORDER BY %s %s, l_service, l_method, l_path LIMIT %d, %d",
		inner, where, order, dir, max(q.Offset, 0), storage.PageLimit(q.Limit)), args}
	return count, page, nil
}

// Endpoints returns one page of endpoints matching q, in q.Sort order, and
// how many match in all.
func (s *Store) Endpoints(ctx context.Context, q storage.EndpointQuery) ([]inventory.Endpoint, int, error) {
	countQ, pageQ, err := s.endpointsQueries(q)
	if err != nil {
		return nil, 0, err
	}
	var total uint64
	if err := s.conn.QueryRow(ctx, countQ.sql, countQ.args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("clickhouse endpoints count: %w", err)
	}
	query, args := pageQ.sql, pageQ.args
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("clickhouse endpoints: %w", err)
	}
	defer rows.Close()
	var out []inventory.Endpoint
	for rows.Next() {
		var rec string
		if err := rows.Scan(&rec); err != nil {
			return nil, 0, fmt.Errorf("clickhouse endpoints: %w", err)
		}
		var e inventory.Endpoint
		if err := json.Unmarshal([]byte(rec), &e); err != nil {
			return nil, 0, fmt.Errorf("clickhouse endpoints: bad record: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("clickhouse endpoints: %w", err)
	}
	return out, int(total), nil
}

// servicesQueries builds the endpoint summary and the service records
// queries of Services.
func (s *Store) servicesQueries() (summary, records readQuery) {
	summary.sql = `SELECT l_service, count(), sum(l_calls), min(l_first_seen), max(l_last_seen),
    countIf(l_classification = 'shadow'), countIf(l_classification = 'zombie'),
    countIf(l_unauthenticated = 1), countIf(notEmpty(l_sensitive)), max(l_risk_score)
FROM (` + s.latestEndpoints(false) + `)
GROUP BY l_service ORDER BY l_service`
	records.sql = "SELECT service, argMax(record, version) FROM " + s.table("services") + " GROUP BY service"
	return summary, records
}

// Services returns every service with counts over its latest endpoints,
// sorted by name. A service known only from its endpoints is returned
// with what they tell.
func (s *Store) Services(ctx context.Context) ([]storage.ServiceSummary, error) {
	byName := map[string]*storage.ServiceSummary{}
	var order []string
	summaryQ, recordsQ := s.servicesQueries()
	rows, err := s.conn.Query(ctx, summaryQ.sql)
	if err != nil {
		return nil, fmt.Errorf("clickhouse services: %w", err)
	}
	for rows.Next() {
		var (
			name                                 string
			n, shadow, zombie, unauth, sensitive uint64
			calls                                int64
			first, last                          time.Time
			risk                                 float64
		)
		if err := rows.Scan(&name, &n, &calls, &first, &last, &shadow, &zombie, &unauth, &sensitive, &risk); err != nil {
			rows.Close()
			return nil, fmt.Errorf("clickhouse services: %w", err)
		}
		byName[name] = &storage.ServiceSummary{
			Service:       inventory.Service{Host: name, Calls: calls, FirstSeen: first.UTC(), LastSeen: last.UTC(), RiskScore: risk},
			EndpointCount: int(n), Shadow: int(shadow), Zombie: int(zombie), Unauthenticated: int(unauth), Sensitive: int(sensitive),
		}
		order = append(order, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse services: %w", err)
	}
	rows, err = s.conn.Query(ctx, recordsQ.sql)
	if err != nil {
		return nil, fmt.Errorf("clickhouse services: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, rec string
		if err := rows.Scan(&name, &rec); err != nil {
			return nil, fmt.Errorf("clickhouse services: %w", err)
		}
		var svc inventory.Service
		if err := json.Unmarshal([]byte(rec), &svc); err != nil {
			return nil, fmt.Errorf("clickhouse services: bad record: %w", err)
		}
		sum, ok := byName[name]
		if !ok {
			sum = &storage.ServiceSummary{}
			byName[name] = sum
			order = append(order, name)
		}
		sum.Service = svc
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse services: %w", err)
	}
	return storage.SortServices(byName, order), nil
}

// anomaliesQueries builds the count and the page query of Anomalies.
func (s *Store) anomaliesQueries(q storage.AnomalyQuery) (count, page readQuery) {
	var (
		conds []string
		args  []any
	)
	add := func(cond string, v any) {
		conds = append(conds, cond)
		args = append(args, v)
	}
	if q.Host != "" {
		add("l_host = ?", q.Host)
	}
	if q.Method != "" {
		add("l_method = ?", q.Method)
	}
	if q.Path != "" {
		add("l_path = ?", q.Path)
	}
	if q.Type != "" {
		add("l_type = ?", q.Type)
	}
	if q.Severity != "" {
		add("l_severity = ?", q.Severity)
	}
	if q.State != "" {
		add("l_state = ?", q.State)
	}
	if !q.From.IsZero() {
		add("l_start >= toDateTime(?)", q.From.Unix())
	}
	if !q.To.IsZero() {
		add("l_start < toDateTime(?)", q.To.Unix())
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	inner := `SELECT id AS l_id,
    argMax(record, version) AS l_record, argMax(host, version) AS l_host, argMax(method, version) AS l_method,
    argMax(path, version) AS l_path, argMax(type, version) AS l_type, argMax(severity, version) AS l_severity,
    argMax(state, version) AS l_state, argMax(started_at, version) AS l_start
FROM ` + s.table("anomalies") + ` GROUP BY id`
	count = readQuery{"SELECT count() FROM (" + inner + ")" + where, args}
	page = readQuery{fmt.Sprintf("SELECT l_record FROM (%s)%s ORDER BY toDateTime(l_start) DESC, l_id LIMIT %d, %d",
		inner, where, max(q.Offset, 0), storage.PageLimit(q.Limit)), args}
	return count, page
}

// Anomalies returns one page of incidents matching q, latest start first,
// and how many match in all.
func (s *Store) Anomalies(ctx context.Context, q storage.AnomalyQuery) ([]anomaly.Anomaly, int, error) {
	countQ, pageQ := s.anomaliesQueries(q)
	var total uint64
	if err := s.conn.QueryRow(ctx, countQ.sql, countQ.args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("clickhouse anomalies count: %w", err)
	}
	query, args := pageQ.sql, pageQ.args
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("clickhouse anomalies: %w", err)
	}
	defer rows.Close()
	var out []anomaly.Anomaly
	for rows.Next() {
		var rec string
		if err := rows.Scan(&rec); err != nil {
			return nil, 0, fmt.Errorf("clickhouse anomalies: %w", err)
		}
		var a anomaly.Anomaly
		if err := json.Unmarshal([]byte(rec), &a); err != nil {
			return nil, 0, fmt.Errorf("clickhouse anomalies: bad record: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("clickhouse anomalies: %w", err)
	}
	return out, int(total), nil
}

// EndpointStats returns the per-minute statistics of one endpoint with
// from <= minute < to, oldest first (zero times: unbounded).
func (s *Store) EndpointStats(ctx context.Context, service, method, path string, from, to time.Time) ([]storage.EndpointMinute, error) {
	sq := s.statsQuery(service, method, path, from, to)
	rows, err := s.conn.Query(ctx, sq.sql, sq.args...)
	if err != nil {
		return nil, fmt.Errorf("clickhouse endpoint stats: %w", err)
	}
	defer rows.Close()
	var out []storage.EndpointMinute
	for rows.Next() {
		m := storage.EndpointMinute{Service: service, Method: method, Path: path}
		var (
			codes  []uint16
			counts []uint64
		)
		if err := rows.Scan(&m.Minute, &m.Calls, &m.Errors4xx, &m.Errors5xx, &m.NoResponse, &m.Unauthenticated,
			&m.LatencyP50, &m.LatencyP90, &m.LatencyP95, &m.LatencyP99, &m.LatencyMax,
			&m.RequestBytes, &m.ResponseBytes, &codes, &counts); err != nil {
			return nil, fmt.Errorf("clickhouse endpoint stats: %w", err)
		}
		m.Minute = m.Minute.UTC()
		if len(codes) > 0 {
			m.StatusCodes = make(map[uint16]uint64, len(codes))
			for i, c := range codes {
				if i < len(counts) {
					m.StatusCodes[c] = counts[i]
				}
			}
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse endpoint stats: %w", err)
	}
	return out, nil
}

// statsQuery builds the query of EndpointStats.
func (s *Store) statsQuery(service, method, path string, from, to time.Time) readQuery {
	query := `SELECT minute, calls, errors_4xx, errors_5xx, no_response, unauthenticated,
    latency_p50_ms, latency_p90_ms, latency_p95_ms, latency_p99_ms, latency_max_ms,
    request_bytes, response_bytes, status_codes, status_counts
FROM ` + s.table("endpoint_minutes") + ` FINAL
WHERE service = ? AND method = ? AND path = ?`
	args := []any{service, method, path}
	if !from.IsZero() {
		query += " AND minute >= toDateTime(?)"
		args = append(args, from.Unix())
	}
	if !to.IsZero() {
		query += " AND minute < toDateTime(?)"
		args = append(args, to.Unix())
	}
	return readQuery{query + " ORDER BY minute", args}
}

// transactionsQuery builds the query of Transactions.
func (s *Store) transactionsQuery(q storage.TransactionQuery) readQuery {
	var (
		conds []string
		args  []any
	)
	if len(q.IDs) > 0 {
		conds = append(conds, "has(?, id)") // an array literal: old servers take no array for IN
		args = append(args, q.IDs)
	}
	if q.Service != "" {
		conds = append(conds, "service = ?")
		args = append(args, q.Service)
	}
	if !q.From.IsZero() {
		conds = append(conds, "ts >= toDateTime(?)")
		args = append(args, q.From.Unix())
	}
	if !q.To.IsZero() {
		conds = append(conds, "ts < toDateTime(?)")
		args = append(args, q.To.Unix())
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	return readQuery{fmt.Sprintf("SELECT id, any(record), max(ts) AS l_ts FROM %s%s GROUP BY id ORDER BY l_ts DESC, id LIMIT %d",
		s.table("transactions"), where, storage.PageLimit(q.Limit)), args}
}

// Transactions returns stored transactions, newest first, each once.
func (s *Store) Transactions(ctx context.Context, q storage.TransactionQuery) ([]wire.Transaction, error) {
	tq := s.transactionsQuery(q)
	query, args := tq.sql, tq.args
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("clickhouse transactions: %w", err)
	}
	defer rows.Close()
	var out []wire.Transaction
	for rows.Next() {
		var (
			id, rec string
			ts      time.Time
		)
		if err := rows.Scan(&id, &rec, &ts); err != nil {
			return nil, fmt.Errorf("clickhouse transactions: %w", err)
		}
		var t wire.Transaction
		if err := storage.DecodeTransactionRecord([]byte(rec), &t); err != nil {
			return nil, fmt.Errorf("clickhouse transactions: %s: %w", id, err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse transactions: %w", err)
	}
	return out, nil
}

// checkpointQuery builds the query of LoadCheckpoint.
func (s *Store) checkpointQuery(key string) readQuery {
	return readQuery{"SELECT argMax(data, version), argMax(offsets, version), max(version), argMax(saved_at, version) FROM " +
		s.table("checkpoints") + " WHERE key = ? GROUP BY key", []any{key}}
}

// LoadCheckpoint returns the latest checkpoint saved for key, or
// storage.ErrNotFound.
func (s *Store) LoadCheckpoint(ctx context.Context, key string) (storage.Checkpoint, error) {
	var (
		data, offsets string
		version       uint64
		saved         time.Time
	)
	cq := s.checkpointQuery(key)
	err := s.conn.QueryRow(ctx, cq.sql, cq.args...).Scan(&data, &offsets, &version, &saved)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return storage.Checkpoint{}, fmt.Errorf("clickhouse checkpoint %s: %w", key, storage.ErrNotFound)
		}
		return storage.Checkpoint{}, fmt.Errorf("clickhouse checkpoint %s: %w", key, err)
	}
	cp := storage.Checkpoint{Key: key, Data: []byte(data), SavedAt: saved.UTC(), Version: version}
	if err := json.Unmarshal([]byte(offsets), &cp.Offsets); err != nil {
		return storage.Checkpoint{}, fmt.Errorf("clickhouse checkpoint %s: bad offsets: %w", key, err)
	}
	return cp, nil
}
