package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer"
	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/api"
	"github.com/apiscout/apiscout/analyzer/api/storeread"
	"github.com/apiscout/apiscout/analyzer/checkpoint"
	"github.com/apiscout/apiscout/analyzer/consume"
	"github.com/apiscout/apiscout/analyzer/detect"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/storage/minutes"
	"github.com/apiscout/apiscout/wire"
)

func init() {
	register(func() *cobra.Command {
		cmd := &cobra.Command{
			Use:   "analyzer",
			Short: "Consume transactions from Kafka, analyze them, store the results and serve the web UI",
			Long: `The analyzer is one member of the consumer group kafka.group: it reads
the sensors' transactions from kafka.topic, builds the inventory, compares
it with the specs, runs the detectors, writes everything to the result
store (storage.kind) and serves the web UI and REST API on ui.listen.
Offsets are committed only after the results are stored.

Examples:
  apiscout analyzer --kafka.brokers k1:9092 --storage.kind clickhouse --storage.clickhouse_addr ch:9000
  APISCOUT_UI_READ_TOKENS=$(openssl rand -hex 24) apiscout analyzer --ui.listen 0.0.0.0:8080`,
			Args: cobra.NoArgs,
			RunE: runAnalyzer,
		}
		bindConfig(cmd, "log", "metrics", "kafka", "analyzer", "detect", "storage", "ui", "alerts")
		return cmd
	})
}

// engine is what the analyzer commands need of the analyzer's Engine: the
// same engine behind `apiscout run` and `apiscout analyzer`.
type engine interface {
	// Process analyzes one transaction (packet time inside) and returns
	// the incident updates it caused.
	Process(tx *wire.Transaction) []anomaly.Anomaly
	// Services is the current inventory.
	Services() []inventory.Service
}

// resultWriter is the write side of a result store the analysis needs.
type resultWriter interface {
	WriteTransactions(ctx context.Context, txs []*wire.Transaction) error
	WriteEndpoints(ctx context.Context, eps []inventory.Endpoint) error
	WriteServices(ctx context.Context, svcs []inventory.Service) error
	WriteAnomalies(ctx context.Context, as []anomaly.Anomaly) error
}

// analysisStore is a result store as the analyzer commands use it: the
// writes above and the reads the web UI needs.
type analysisStore interface {
	resultWriter
	storeread.Store
	Close() error
}

// analysis applies batches of records to the engine and stores what
// changed. It implements consume.Handler; `apiscout run` feeds it from the
// in-process sensor, the distributed analyzer from Kafka.
type analysis struct {
	eng   engine
	store resultWriter
	log   *zap.Logger
	// written remembers each endpoint's last stored state (calls and last
	// seen), so a batch writes only the endpoints it changed.
	written map[string]endpointMark
	// minutes keeps per-minute endpoint statistics (rate, errors,
	// latency) for the charts, by packet time.
	minutes *minutes.Aggregator
	latest  time.Time
	// keep checkpoints the engine's state per partition (nil: none).
	keep *checkpoint.Keeper
}

// durableAnalysis is the analysis of the distributed analyzer: Kafka
// offsets are committed as far as its checkpoints cover
// (consume.Durable).
type durableAnalysis struct{ *analysis }

func (d durableAnalysis) Durable() map[int]int64 { return d.keep.Durable() }

// lastCaller is the engine's report of the endpoint a call was counted on.
type lastCaller interface {
	LastCall() (service, method, path string, unauthenticated, ok bool)
}

// statsWriter is the store's side for per-minute statistics.
type statsWriter interface {
	WriteStats(ctx context.Context, stats []storage.EndpointMinute) error
}

type endpointMark struct {
	calls    int64
	lastSeen time.Time
	class    inventory.Classification
}

func newAnalysis(eng engine, store resultWriter, log *zap.Logger) *analysis {
	return &analysis{eng: eng, store: store, log: log, written: map[string]endpointMark{}, minutes: minutes.New(2 * time.Minute)}
}

// Handle implements consume.Handler: process, then store transactions,
// anomalies, changed endpoints and their services, in that order, so a
// failure leaves nothing that refers to what is not stored.
func (a *analysis) Handle(ctx context.Context, batch []consume.Record) error {
	var txs []*wire.Transaction
	var anoms []anomaly.Anomaly
	for _, r := range batch {
		if a.keep != nil {
			fresh, err := a.keep.Admit(ctx, r.Partition, r.Offset, r.Index, r.Generation)
			if err != nil {
				return fmt.Errorf("restore state: %w", err)
			}
			if !fresh {
				continue
			}
		}
		if r.Tx == nil {
			continue
		}
		txs = append(txs, r.Tx)
		anoms = append(anoms, a.eng.Process(r.Tx)...)
		if lc, ok := a.eng.(lastCaller); ok {
			if svc, m, p, unauth, ok := lc.LastCall(); ok {
				a.minutes.Add(svc, m, p, r.Tx, unauth)
				if a.keep != nil {
					a.keep.Applied(r.Partition, svc)
				}
			}
		}
		if r.Tx.RequestStart.After(a.latest) {
			a.latest = r.Tx.RequestStart
		}
	}
	if len(txs) == 0 {
		return nil
	}
	if err := a.store.WriteTransactions(ctx, txs); err != nil {
		return fmt.Errorf("store transactions: %w", err)
	}
	if len(anoms) > 0 {
		if err := a.store.WriteAnomalies(ctx, anoms); err != nil {
			return fmt.Errorf("store anomalies: %w", err)
		}
	}
	if err := a.writeStats(ctx, a.minutes.Complete(a.latest)); err != nil {
		return err
	}
	if err := a.flushInventory(ctx); err != nil {
		return err
	}
	if a.keep != nil && a.keep.Due() {
		// Only now: a checkpoint claims every result before it is stored.
		if err := a.keep.Save(ctx); err != nil {
			return fmt.Errorf("save state: %w", err)
		}
	}
	return nil
}

func (a *analysis) writeStats(ctx context.Context, stats []storage.EndpointMinute) error {
	sw, ok := a.store.(statsWriter)
	if !ok || len(stats) == 0 {
		return nil
	}
	if err := sw.WriteStats(ctx, stats); err != nil {
		return fmt.Errorf("store statistics: %w", err)
	}
	return nil
}

// Close ends the input: the engine closes its open incidents, and they
// and the last endpoint states are stored.
func (a *analysis) Close(ctx context.Context) error {
	if err := a.writeStats(ctx, a.minutes.Drain()); err != nil {
		return err
	}
	c, ok := a.eng.(interface{ Close() []anomaly.Anomaly })
	if !ok {
		return nil
	}
	if anoms := c.Close(); len(anoms) > 0 {
		if err := a.store.WriteAnomalies(ctx, anoms); err != nil {
			return fmt.Errorf("store anomalies: %w", err)
		}
	}
	if err := a.flushInventory(ctx); err != nil {
		return err
	}
	return a.saveState(ctx)
}

// saveState saves the checkpoints of what changed since the last save.
func (a *analysis) saveState(ctx context.Context) error {
	if a.keep == nil {
		return nil
	}
	if err := a.keep.Save(ctx); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// keepState checkpoints the analysis' state (the engine's, and the
// per-minute statistics still open) in store, under topic's name.
func (an *analysis) keepState(a *app, eng *lockedEngine, store any, topic string) error {
	cs, ok := store.(checkpoint.Store)
	if !ok {
		return fmt.Errorf("storage.kind %s: the store cannot keep checkpoints", a.cfg.Storage.Kind)
	}
	k, err := checkpoint.New(analysisState{eng: eng, minutes: an.minutes}, cs, checkpoint.Options{Topic: topic,
		Interval: a.cfg.Analyzer.CheckpointInterval, Log: a.log.Named("checkpoint"), Reg: a.reg})
	if err != nil {
		return err
	}
	an.keep = k
	return nil
}

// analysisState is what a checkpoint keeps of an analysis: the engine's
// services and baselines, and the open minutes of their statistics
// (under "minutes", beside the engine's own keys).
type analysisState struct {
	eng     *lockedEngine
	minutes *minutes.Aggregator
}

func (s analysisState) SnapshotServices(hosts []string) ([]byte, error) {
	b, err := s.eng.SnapshotServices(hosts)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if obj["minutes"], err = s.minutes.Export(hosts); err != nil {
		return nil, err
	}
	return json.Marshal(obj)
}

func (s analysisState) Restore(b []byte) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if m, ok := obj["minutes"]; ok {
		if err := s.minutes.Import(m); err != nil {
			return err
		}
		delete(obj, "minutes")
	}
	rest, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return s.eng.Restore(rest)
}

func (s analysisState) Forget(hosts []string) {
	s.eng.Forget(hosts)
	s.minutes.Forget(hosts)
}

// flushInventory writes the endpoints changed since the last flush and
// the services that hold them.
func (a *analysis) flushInventory(ctx context.Context) error {
	var eps []inventory.Endpoint
	var svcs []inventory.Service
	marks := map[string]endpointMark{}
	for _, s := range a.eng.Services() {
		changed := false
		for _, e := range s.Endpoints {
			m := endpointMark{calls: e.Calls, lastSeen: e.LastSeen, class: e.Classification}
			if a.written[e.Key()] != m {
				eps = append(eps, e)
				marks[e.Key()] = m
				changed = true
			}
		}
		if changed {
			svcs = append(svcs, s)
		}
	}
	if len(eps) > 0 {
		if err := a.store.WriteEndpoints(ctx, eps); err != nil {
			return fmt.Errorf("store endpoints: %w", err)
		}
	}
	if len(svcs) > 0 {
		if err := a.store.WriteServices(ctx, svcs); err != nil {
			return fmt.Errorf("store services: %w", err)
		}
	}
	for k, m := range marks {
		a.written[k] = m
	}
	return nil
}

// openAnalysisStore opens the configured store with its read side.
func openAnalysisStore(ctx context.Context, a *app) (analysisStore, error) {
	s, err := openStore(ctx, a.cfg.Storage, a.cfg.Storage.Migrate, a.log, a.reg)
	if err != nil {
		return nil, err
	}
	as, ok := s.(analysisStore)
	if !ok {
		s.Close()
		return nil, fmt.Errorf("storage.kind %s: the store lacks the analyzer's read or write methods", a.cfg.Storage.Kind)
	}
	return as, nil
}

// startUI builds the API server over the store, binds ui.listen and
// serves in the background; the returned function waits for it to stop.
func startUI(ctx context.Context, a *app, store storeread.Store, eng *lockedEngine, ready func() bool) (addr string, wait func(), err error) {
	srv, err := api.New(api.Options{
		Config: a.cfg.UI, Reader: storeread.New(store, eng.specs()), Uploader: eng, Templates: eng, Log: a.log.Named("ui"), Reg: a.reg, Ready: ready,
	})
	if err != nil {
		return "", nil, err
	}
	ln, err := srv.Listen()
	if err != nil {
		return "", nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, ln); err != nil {
			a.log.Error("web UI", zap.Error(err))
		}
	}()
	scheme := "http"
	if a.cfg.UI.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + ln.Addr().String(), func() { <-done }, nil
}

func runAnalyzer(cmd *cobra.Command, _ []string) error {
	a, err := newApp(cmd)
	if err != nil {
		return err
	}
	defer a.log.Sync() //nolint:errcheck
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	waitMetrics, err := a.serveMetrics(ctx)
	if err != nil {
		return err
	}
	store, err := openAnalysisStore(ctx, a)
	if err != nil {
		return err
	}
	defer store.Close()
	eng, err := openEngine(ctx, a, store)
	if err != nil {
		return err
	}
	cons, err := consume.New(a.cfg.Kafka, consume.Options{}, a.log.Named("consume"), a.reg)
	if err != nil {
		return err
	}
	defer cons.Close()
	addr, waitUI, err := startUI(ctx, a, store, eng, nil)
	if err != nil {
		return err
	}
	a.log.Info("analyzer started", zap.String("ui", addr), zap.String("group", a.cfg.Kafka.Group), zap.String("topic", a.cfg.Kafka.Topic))
	an := newAnalysis(eng, store, a.log)
	if err := an.keepState(a, eng, store, a.cfg.Kafka.Topic); err != nil {
		return err
	}
	err = cons.Run(ctx, durableAnalysis{an})
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	if err == nil {
		// Offsets past the last checkpoint stay uncommitted: the next
		// owner reads those records again and skips what this saves.
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = an.saveState(sctx)
		scancel()
	}
	cancel()
	waitUI()
	waitMetrics()
	return err
}

// lockedEngine serializes the Engine, which is pure logic without locks:
// the analysis feeds it from one goroutine while the web UI asks it for
// specs and diffs from others.
type lockedEngine struct {
	mu        sync.Mutex
	e         *analyzer.Engine
	templates templateKeeper // keeps the API's template decisions (templates.go)
}

// newEngine builds the analyzer engine with its detectors, from the
// analyzer and detect sections.
func newEngine(a *app) (*lockedEngine, error) {
	det, err := detect.New(a.cfg.Detect, a.cfg.Analyzer, a.log.Named("detect"), a.reg)
	if err != nil {
		return nil, err
	}
	e, err := analyzer.New(analyzer.Options{Config: a.cfg.Analyzer, Log: a.log.Named("analyzer"), Reg: a.reg, Detectors: det})
	if err != nil {
		return nil, err
	}
	return &lockedEngine{e: e}, nil
}

func (l *lockedEngine) Process(tx *wire.Transaction) []anomaly.Anomaly {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.e.Process(tx)
}

func (l *lockedEngine) LastCall() (service, method, path string, unauthenticated, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.e.LastCall()
}

func (l *lockedEngine) Services() []inventory.Service {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.e.Services()
}

// SnapshotServices, Restore and Forget serve the checkpoints.
func (l *lockedEngine) SnapshotServices(hosts []string) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.e.SnapshotServices(hosts)
}

func (l *lockedEngine) Restore(b []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.e.Restore(b)
}

func (l *lockedEngine) Forget(hosts []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.e.Forget(hosts)
}

// Close ends the input: open incidents are closed at the last packet time.
func (l *lockedEngine) Close() []anomaly.Anomaly {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.e.Close()
}

// Spec renders a service's reconstructed OpenAPI document.
func (l *lockedEngine) Spec(_ context.Context, host string) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, err := l.e.Spec(host)
	if errors.Is(err, analyzer.ErrUnknownService) {
		return nil, api.ErrNotFound
	}
	return b, err
}

// Diff renders a service's spec diff for the API; a service without a
// spec has none.
func (l *lockedEngine) Diff(_ context.Context, host string) ([]api.DiffItem, error) {
	l.mu.Lock()
	d, err := l.e.Diff(host)
	l.mu.Unlock()
	if errors.Is(err, analyzer.ErrUnknownService) {
		return nil, api.ErrNotFound
	}
	if err != nil || d.Spec == "" {
		return nil, err
	}
	var out []api.DiffItem
	add := func(kind, sev, key, detail string) {
		method, path, _ := strings.Cut(key, " ")
		out = append(out, api.DiffItem{Kind: kind, Severity: sev, Method: method, Path: path, Detail: detail})
	}
	for _, k := range d.Shadow {
		add("shadow", "high", k, "called, but not in "+d.Spec)
	}
	for _, k := range d.Zombie {
		add("zombie", "medium", k, "deprecated in "+d.Spec+", still called")
	}
	for _, k := range d.Orphan {
		add("orphan", "low", k, "in "+d.Spec+", never called")
	}
	for _, x := range d.Drift {
		key, detail, _ := strings.Cut(x, ": ")
		add("drift", "medium", key, detail)
	}
	return out, nil
}

// UploadSpec binds an admin's spec to a service (api.SpecUploader).
func (l *lockedEngine) UploadSpec(_ context.Context, service string, doc []byte) error {
	if err := api.CheckSpec(doc); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.e.LoadSpec(service, doc); err != nil {
		return fmt.Errorf("%w: %v", api.ErrBadSpec, err)
	}
	return nil
}

// specs gives the UI the engine's reconstructed specs and diffs.
func (l *lockedEngine) specs() storeread.Specs {
	return storeread.Specs{Reconstructed: l.Spec, Diff: l.Diff}
}
