package clickhouse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/wire"
)

// chunks calls fn for consecutive slices of at most size items.
func chunks[T any](items []T, size int, fn func([]T) error) error {
	for len(items) > 0 {
		n := min(len(items), size)
		if err := fn(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// minParallelChunk is the smallest insert worth splitting a write into to
// use more than one server thread: below it, extra parts cost more than
// the parallelism gains.
const minParallelChunk = 10000

// parallelChunks splits items into chunks of at most size (and into at
// least workers chunks when items are many) and runs fn on up to workers
// of them at once. An insert runs on one server thread, so two at once use
// two cores. The split depends only on len(items), size and workers, so a
// write rebuilt from the same rows makes the same chunks (and tokens). It
// returns every chunk's error, joined.
func parallelChunks[T any](items []T, size, workers int, fn func([]T) error) error {
	n := (len(items) + size - 1) / size
	if workers > 1 && n < workers && len(items) >= workers*minParallelChunk {
		n = workers
		size = (len(items) + n - 1) / n
	}
	if workers <= 1 || n <= 1 {
		return chunks(items, size, fn)
	}
	sem := make(chan struct{}, workers)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		lo, hi := i*size, min((i+1)*size, len(items))
		if lo >= hi {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = fn(items[lo:hi])
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func idsOf[T any](items []T, id func(*T) string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for i := range items {
			if !yield(id(&items[i])) {
				return
			}
		}
	}
}

// blockRows is how many rows go into one block of an INSERT. The client
// sends each block as it fills and reuses its buffers for the next, so an
// insert's memory is one block's, not the whole batch's grown by 1.25x
// steps; the server squashes the blocks of one INSERT into one part
// (min_insert_block_size_rows), so parts stay as large as the batch.
const blockRows = 8192

// inBlocks calls add for consecutive row ranges of at most blockRows and
// sends each block but the last (Send sends that one).
func inBlocks(b driver.Batch, n int, add func(lo, hi int) error) error {
	for lo := 0; lo < n; lo += blockRows {
		hi := min(lo+blockRows, n)
		if err := add(lo, hi); err != nil {
			return err
		}
		if hi < n {
			if err := b.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// appendColumns appends one slice per column, in the statement's column
// order: column-wise appends cost far less per row than Append(row...).
func appendColumns(b driver.Batch, cols ...any) error {
	for i, c := range cols {
		if err := b.Column(i).Append(c); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return nil
}

const txColumns = "ts, id, sensor_id, seq, service, method, path, query, status, protocol, client, server, " +
	"duration_us, request_bytes, response_bytes, request_content_type, response_content_type, flags, capture_loss, record"

// txRows is one batch of transactions in column form. Built once per
// write: every resend appends the same slices.
type txRows struct {
	ts                         []time.Time
	id, sensor                 []string
	seq                        []uint64
	service, method, path, qry []string
	status                     []uint16
	protocol, client, server   []string
	dur, reqBytes, respBytes   []uint64
	reqCT, respCT              []string
	flags                      []uint32
	loss                       []uint64
	record                     []string
}

// token is the batch's deduplication token on servers that use one, ""
// elsewhere (hashing every id costs ~3% of an insert's CPU for nothing).
func (s *Store) token(table string, ids iter.Seq[string]) string {
	if !s.features.DedupToken {
		return ""
	}
	return storage.BatchToken(table, ids)
}

func nonNeg(v int64) uint64 {
	if v < 0 {
		return 0
	}
	return uint64(v)
}

func buildTxRows(txs []*wire.Transaction, storeBodies bool) (*txRows, []string, error) {
	n := len(txs)
	r := &txRows{
		ts: make([]time.Time, n), id: make([]string, n), sensor: make([]string, n), seq: make([]uint64, n),
		service: make([]string, n), method: make([]string, n), path: make([]string, n), qry: make([]string, n),
		status: make([]uint16, n), protocol: make([]string, n), client: make([]string, n), server: make([]string, n),
		dur: make([]uint64, n), reqBytes: make([]uint64, n), respBytes: make([]uint64, n),
		reqCT: make([]string, n), respCT: make([]string, n), flags: make([]uint32, n), loss: make([]uint64, n),
		record: make([]string, n),
	}
	// Records and addresses go into arenas, each turned into one string:
	// no allocation per row.
	arena := make([]byte, 0, n*320)
	ends := make([]int, n)
	addrs := make([]byte, 0, n*40)
	clientEnd, serverEnd := make([]int, n), make([]int, n)
	for i, t := range txs {
		arena = storage.AppendTransactionRecord(arena, t, storeBodies)
		ends[i] = len(arena)
		r.ts[i] = t.RequestStart.UTC()
		r.id[i] = t.ID()
		r.sensor[i] = t.SensorID
		r.seq[i] = t.Seq
		r.service[i] = t.Key()
		r.method[i] = t.Method
		r.path[i] = t.Path
		r.qry[i] = t.Query
		r.status[i] = uint16(max(0, min(t.Status, 65535)))
		r.protocol[i] = t.Protocol
		if t.Client.IsValid() {
			addrs = t.Client.AppendTo(addrs)
		}
		clientEnd[i] = len(addrs)
		if t.Server.IsValid() {
			addrs = t.Server.AppendTo(addrs)
		}
		serverEnd[i] = len(addrs)
		r.dur[i] = storage.TransactionDuration(t)
		r.reqBytes[i] = nonNeg(t.RequestBodyWireLen)
		r.respBytes[i] = nonNeg(t.ResponseBodyWireLen)
		r.reqCT[i] = t.RequestContentType
		r.respCT[i] = t.ResponseContentType
		r.flags[i] = uint32(t.Flags)
		r.loss[i] = t.CaptureLoss
	}
	// The arena is never written again: share its bytes instead of
	// copying them into a string.
	all := unsafe.String(unsafe.SliceData(arena), len(arena))
	for i, start := 0, 0; i < n; i++ {
		r.record[i] = all[start:ends[i]]
		start = ends[i]
	}
	as := unsafe.String(unsafe.SliceData(addrs), len(addrs))
	for i, start := 0, 0; i < n; i++ {
		r.client[i] = as[start:clientEnd[i]]
		r.server[i] = as[clientEnd[i]:serverEnd[i]]
		start = serverEnd[i]
	}
	return r, r.id, nil
}

// WriteTransactions stores the metadata of the transactions that pass
// sampling (storage.Sampled with storage.sample_transactions), bodies only
// with storage.store_bodies.
func (s *Store) WriteTransactions(ctx context.Context, txs []*wire.Transaction) error {
	if s.opts.SampleTransactions > 1 {
		kept := make([]*wire.Transaction, 0, len(txs)/s.opts.SampleTransactions+1)
		for _, t := range txs {
			if storage.Sampled(t.ID(), s.opts.SampleTransactions) {
				kept = append(kept, t)
			}
		}
		s.m.sampled.Add(float64(len(txs) - len(kept)))
		txs = kept
	}
	return parallelChunks(txs, s.opts.BatchSize, s.opts.InsertConcurrency, func(part []*wire.Transaction) error {
		r, ids, err := buildTxRows(part, s.opts.StoreBodies)
		if err != nil {
			return fmt.Errorf("clickhouse transactions: %w", err)
		}
		token := s.token("transactions", slices.Values(ids))
		return s.insert(ctx, "transactions", txColumns, len(part), token, func(b driver.Batch) error {
			return inBlocks(b, len(part), func(lo, hi int) error {
				return appendColumns(b, r.ts[lo:hi], r.id[lo:hi], r.sensor[lo:hi], r.seq[lo:hi], r.service[lo:hi],
					r.method[lo:hi], r.path[lo:hi], r.qry[lo:hi], r.status[lo:hi], r.protocol[lo:hi], r.client[lo:hi],
					r.server[lo:hi], r.dur[lo:hi], r.reqBytes[lo:hi], r.respBytes[lo:hi], r.reqCT[lo:hi], r.respCT[lo:hi],
					r.flags[lo:hi], r.loss[lo:hi], r.record[lo:hi])
			})
		})
	})
}

const endpointColumns = "service, method, path, version, protocol, classification, calls, first_seen, last_seen, " +
	"auth, sensitive, unauthenticated, risk_score, findings, record"

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// WriteEndpoints stores the current state of endpoints; the state with
// the latest LastSeen is what Endpoints returns.
func (s *Store) WriteEndpoints(ctx context.Context, eps []inventory.Endpoint) error {
	return chunks(eps, s.opts.BatchSize, func(part []inventory.Endpoint) error {
		rows := make([][]any, len(part))
		for i := range part {
			e := &part[i]
			rec, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("clickhouse endpoints: %s: %w", e.Key(), err)
			}
			unauth := uint8(0)
			if e.Unauthenticated {
				unauth = 1
			}
			rows[i] = []any{e.Service, e.Method, e.Path, storage.Version(e.LastSeen, 0), e.Protocol, string(e.Classification),
				e.Calls, e.FirstSeen.UTC(), e.LastSeen.UTC(), nonNil(e.Auth), nonNil(e.Sensitive), unauth, e.RiskScore,
				nonNil(e.Findings), string(rec)}
		}
		token := s.token("endpoints", idsOf(part, func(e *inventory.Endpoint) string {
			return fmt.Sprintf("%s %d", e.Key(), storage.Version(e.LastSeen, 0))
		}))
		return s.insert(ctx, "endpoints", endpointColumns, len(part), token, appendRows(rows))
	})
}

// appendRows appends prepared rows; for the small tables, where clarity
// beats the column form's speed.
func appendRows(rows [][]any) func(driver.Batch) error {
	return func(b driver.Batch) error {
		for _, r := range rows {
			if err := b.Append(r...); err != nil {
				return err
			}
		}
		return nil
	}
}

const serviceColumns = "service, version, calls, first_seen, last_seen, risk_score, spec, record"

// WriteServices stores the state of services, without their endpoints
// (WriteEndpoints holds those).
func (s *Store) WriteServices(ctx context.Context, svcs []inventory.Service) error {
	return chunks(svcs, s.opts.BatchSize, func(part []inventory.Service) error {
		rows := make([][]any, len(part))
		for i := range part {
			c := part[i]
			c.Endpoints = nil
			rec, err := json.Marshal(&c)
			if err != nil {
				return fmt.Errorf("clickhouse services: %s: %w", c.Host, err)
			}
			rows[i] = []any{c.Host, storage.Version(c.LastSeen, 0), c.Calls, c.FirstSeen.UTC(), c.LastSeen.UTC(),
				c.RiskScore, c.Spec, string(rec)}
		}
		token := s.token("services", idsOf(part, func(v *inventory.Service) string {
			return fmt.Sprintf("%s %d", v.Host, storage.Version(v.LastSeen, 0))
		}))
		return s.insert(ctx, "services", serviceColumns, len(part), token, appendRows(rows))
	})
}

const anomalyColumns = "id, version, type, severity, owasp, host, method, path, client, started_at, ended_at, " +
	"observed, expected, summary, state, count, record"

// WriteAnomalies stores incident updates; per ID the update with the
// latest End (then Count, then closed) is what Anomalies returns.
func (s *Store) WriteAnomalies(ctx context.Context, as []anomaly.Anomaly) error {
	for i := range as {
		if as[i].ID == "" {
			return fmt.Errorf("clickhouse anomalies: record %d (%s on %s) has no ID", i, as[i].Type, as[i].Host)
		}
	}
	return chunks(as, s.opts.BatchSize, func(part []anomaly.Anomaly) error {
		rows := make([][]any, len(part))
		for i := range part {
			a := &part[i]
			rec, err := json.Marshal(a)
			if err != nil {
				return fmt.Errorf("clickhouse anomalies: %s: %w", a.ID, err)
			}
			rows[i] = []any{a.ID, anomalyVersion(a), a.Type, string(a.Severity), a.OWASP, a.Host, a.Method, a.Path,
				a.Client, a.Start.UTC(), a.End.UTC(), a.Observed, a.Expected, a.Summary, string(a.State), a.Count, string(rec)}
		}
		token := s.token("anomalies", idsOf(part, func(a *anomaly.Anomaly) string {
			return fmt.Sprintf("%s %d", a.ID, anomalyVersion(a))
		}))
		return s.insert(ctx, "anomalies", anomalyColumns, len(part), token, appendRows(rows))
	})
}

func anomalyVersion(a *anomaly.Anomaly) uint64 {
	return storage.AnomalyVersion(a.End, a.Count, a.State == anomaly.Closed)
}

const statColumns = "minute, service, method, path, calls, errors_4xx, errors_5xx, no_response, unauthenticated, " +
	"latency_p50_ms, latency_p90_ms, latency_p95_ms, latency_p99_ms, latency_max_ms, request_bytes, response_bytes, " +
	"status_codes, status_counts"

// statusArrays renders the status map as two parallel arrays sorted by
// code (Map is not a type 18.16 has).
func statusArrays(m map[uint16]uint64) ([]uint16, []uint64) {
	codes := make([]uint16, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	counts := make([]uint64, len(codes))
	for i, c := range codes {
		counts[i] = m[c]
	}
	return codes, counts
}

// WriteStats stores per-minute endpoint statistics.
func (s *Store) WriteStats(ctx context.Context, stats []storage.EndpointMinute) error {
	return chunks(stats, s.opts.BatchSize, func(part []storage.EndpointMinute) error {
		n := len(part)
		var (
			minute                       = make([]time.Time, n)
			svc, method, path            = make([]string, n), make([]string, n), make([]string, n)
			calls, e4, e5, nores, unauth = make([]uint64, n), make([]uint64, n), make([]uint64, n), make([]uint64, n), make([]uint64, n)
			p50, p90, p95, p99, pmax     = make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
			reqB, respB                  = make([]uint64, n), make([]uint64, n)
			codes                        = make([][]uint16, n)
			counts                       = make([][]uint64, n)
		)
		for i := range part {
			m := &part[i]
			minute[i] = m.Minute.UTC().Truncate(time.Minute)
			svc[i], method[i], path[i] = m.Service, m.Method, m.Path
			calls[i], e4[i], e5[i], nores[i], unauth[i] = m.Calls, m.Errors4xx, m.Errors5xx, m.NoResponse, m.Unauthenticated
			p50[i], p90[i], p95[i], p99[i], pmax[i] = m.LatencyP50, m.LatencyP90, m.LatencyP95, m.LatencyP99, m.LatencyMax
			reqB[i], respB[i] = m.RequestBytes, m.ResponseBytes
			codes[i], counts[i] = statusArrays(m.StatusCodes)
		}
		token := s.token("endpoint_minutes", idsOf(part, func(m *storage.EndpointMinute) string {
			return fmt.Sprintf("%s %s %s %d %d", m.Service, m.Method, m.Path, m.Minute.Unix(), m.Calls)
		}))
		return s.insert(ctx, "endpoint_minutes", statColumns, n, token, func(b driver.Batch) error {
			return appendColumns(b, minute, svc, method, path, calls, e4, e5, nores, unauth, p50, p90, p95, p99, pmax,
				reqB, respB, codes, counts)
		})
	})
}

const heartbeatColumns = "ts, sensor_id, seq, packets, bytes, kernel_drops, capture_loss_bytes, acked_bytes, transactions, dropped, record"

// WriteHeartbeats stores sensor heartbeats for the sensor health
// dashboard.
func (s *Store) WriteHeartbeats(ctx context.Context, hbs []wire.Heartbeat) error {
	return chunks(hbs, s.opts.BatchSize, func(part []wire.Heartbeat) error {
		rows := make([][]any, len(part))
		for i := range part {
			h := &part[i]
			rec, err := json.Marshal(h)
			if err != nil {
				return fmt.Errorf("clickhouse heartbeats: %s/%d: %w", h.SensorID, h.Seq, err)
			}
			var dropped uint64
			for _, v := range h.Dropped {
				dropped += v
			}
			rows[i] = []any{h.Time.UTC(), h.SensorID, h.Seq, h.Packets, h.Bytes, h.KernelDrops, h.CaptureLossBytes,
				h.AckedBytes, h.Transactions, dropped, string(rec)}
		}
		token := s.token("sensor_heartbeats", idsOf(part, func(h *wire.Heartbeat) string {
			return fmt.Sprintf("%s %d %d", h.SensorID, h.Seq, h.Time.UnixNano())
		}))
		return s.insert(ctx, "sensor_heartbeats", heartbeatColumns, len(part), token, appendRows(rows))
	})
}

// SaveCheckpoint stores the analyzer's state for key with the Kafka
// offsets it reflects. The latest save of a key wins; saves are ordered by
// the writer's clock (a checkpoint is the writer's own record, and the new
// owner of a partition saves after it loaded the previous one).
func (s *Store) SaveCheckpoint(ctx context.Context, key string, data []byte, offsets map[int]int64) error {
	off, err := json.Marshal(offsets)
	if err != nil {
		return fmt.Errorf("clickhouse checkpoint %s: %w", key, err)
	}
	now := time.Now().UTC()
	row := [][]any{{key, uint64(now.UnixNano()), now, string(off), string(data)}}
	token := storage.BatchToken("checkpoints", slices.Values([]string{key, fmt.Sprint(now.UnixNano())}))
	return s.insert(ctx, "checkpoints", "key, version, saved_at, offsets, data", 1, token, appendRows(row))
}
