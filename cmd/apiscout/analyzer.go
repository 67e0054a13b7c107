package main

import (
	"context"
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
	"github.com/apiscout/apiscout/analyzer/ingest"
	"github.com/apiscout/apiscout/analyzer/inventory"
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

// analysisStore is a result store as the analyzer commands use it: the
// writes above and the reads the web UI needs.
type analysisStore interface {
	ingest.Store
	storeread.Store
	Close() error
}

// newAnalysis builds the analysis of eng into store, its state
// checkpointed in store under topic's name.
func newAnalysis(a *app, eng *lockedEngine, store analysisStore, topic string) (*ingest.Analysis, error) {
	cs, ok := store.(checkpoint.Store)
	if !ok {
		return nil, fmt.Errorf("storage.kind %s: the store cannot keep checkpoints", a.cfg.Storage.Kind)
	}
	an := ingest.New(eng, store, a.log)
	err := an.Keep(eng, cs, checkpoint.Options{Topic: topic, Interval: a.cfg.Analyzer.CheckpointInterval,
		Log: a.log.Named("checkpoint"), Reg: a.reg})
	return an, err
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

// startAnalysis starts what the analyzer and run commands share: the
// metrics endpoint, the result store (closed by the caller) and the
// engine restored from it.
func startAnalysis(ctx context.Context, a *app) (analysisStore, *lockedEngine, func(), error) {
	waitMetrics, err := a.serveMetrics(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	store, err := openAnalysisStore(ctx, a)
	if err != nil {
		return nil, nil, nil, err
	}
	eng, err := openEngine(ctx, a, store)
	if err != nil {
		store.Close()
		return nil, nil, nil, err
	}
	return store, eng, waitMetrics, nil
}

func runAnalyzer(cmd *cobra.Command, _ []string) error {
	a, err := newApp(cmd)
	if err != nil {
		return err
	}
	defer a.log.Sync() //nolint:errcheck
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	store, eng, waitMetrics, err := startAnalysis(ctx, a)
	if err != nil {
		return err
	}
	defer store.Close()
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
	an, err := newAnalysis(a, eng, store, a.cfg.Kafka.Topic)
	if err != nil {
		return err
	}
	err = cons.Run(ctx, an.Durable())
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	if err == nil {
		// Offsets past the last checkpoint stay uncommitted: the next
		// owner reads those records again and skips what this saves.
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = an.SaveState(sctx)
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
