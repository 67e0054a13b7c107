// Package ingest applies batches of records to the analyzer's engine and
// stores what they changed: transactions, incident updates, per-minute
// statistics, then the changed endpoints and their services, in that
// order, so that a failure leaves nothing stored that refers to what is
// not; then, every so often, the engine's checkpoints. Its Analysis is the
// consume.Handler of the distributed analyzer and the sink of
// `apiscout run`'s in-process sensor: the same code on both paths.
package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/checkpoint"
	"github.com/apiscout/apiscout/analyzer/consume"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/storage/minutes"
	"github.com/apiscout/apiscout/wire"
)

// Engine is what an Analysis needs of the analyzer's Engine.
type Engine interface {
	// Process analyzes one transaction (packet time inside) and returns
	// the incident updates it caused.
	Process(tx *wire.Transaction) []anomaly.Anomaly
	// Services is the current inventory.
	Services() []inventory.Service
}

// lastCaller is the engine's report of the endpoint a call was counted
// on; without it there are no per-minute statistics.
type lastCaller interface {
	LastCall() (service, method, path string, unauthenticated, ok bool)
}

// closer closes the engine's open incidents at the end of the input.
type closer interface{ Close() []anomaly.Anomaly }

// Store is the write side of a result store.
type Store interface {
	WriteTransactions(ctx context.Context, txs []*wire.Transaction) error
	WriteEndpoints(ctx context.Context, eps []inventory.Endpoint) error
	WriteServices(ctx context.Context, svcs []inventory.Service) error
	WriteAnomalies(ctx context.Context, as []anomaly.Anomaly) error
}

// statsWriter is the store's side for per-minute statistics.
type statsWriter interface {
	WriteStats(ctx context.Context, stats []storage.EndpointMinute) error
}

// StateEngine is an Engine whose state a checkpoint can carry.
type StateEngine interface {
	SnapshotServices(hosts []string) ([]byte, error)
	Restore(b []byte) error
	Forget(hosts []string)
}

// Analysis applies batches of records; one goroutine calls it.
type Analysis struct {
	eng   Engine
	store Store
	log   *zap.Logger
	// written remembers each endpoint's last stored state, so a batch
	// writes only the endpoints it changed.
	written map[string]endpointMark
	// minutes keeps per-minute endpoint statistics (rate, errors,
	// latency) for the charts, by packet time.
	minutes *minutes.Aggregator
	latest  time.Time
	// keep checkpoints the engine's state per partition (nil: none).
	keep *checkpoint.Keeper
}

type endpointMark struct {
	calls    int64
	lastSeen time.Time
	class    inventory.Classification
}

// New returns an Analysis of eng's results into store.
func New(eng Engine, store Store, log *zap.Logger) *Analysis {
	if log == nil {
		log = zap.NewNop()
	}
	return &Analysis{eng: eng, store: store, log: log, written: map[string]endpointMark{}, minutes: minutes.New(2 * time.Minute)}
}

// Keep checkpoints the state of eng (the Engine given to New, with its
// state side) and the open per-minute statistics in store, per partition
// (see package checkpoint).
func (a *Analysis) Keep(eng StateEngine, store checkpoint.Store, opts checkpoint.Options) error {
	k, err := checkpoint.New(state{eng: eng, minutes: a.minutes}, store, opts)
	if err != nil {
		return err
	}
	a.keep = k
	return nil
}

// RestoreLocal restores the checkpoint of records that come without
// Kafka (checkpoint.Local), before the first one: `apiscout run`.
func (a *Analysis) RestoreLocal(ctx context.Context) error {
	if a.keep == nil {
		return nil
	}
	return a.keep.RestoreLocal(ctx)
}

// Durable wraps a for a consumer: Kafka offsets are committed only as far
// as its checkpoints cover (consume.Durable). Call Keep first.
func (a *Analysis) Durable() consume.Handler { return durable{a} }

type durable struct{ *Analysis }

func (d durable) Durable() map[int]int64 { return d.keep.Durable() }

// Passed implements consume.Passer.
func (d durable) Passed(part int, offset int64, gen int64) { d.keep.Passed(part, offset, gen) }

// Handle implements consume.Handler.
func (a *Analysis) Handle(ctx context.Context, batch []consume.Record) error {
	var txs []*wire.Transaction
	var anoms []anomaly.Anomaly
	lc, _ := a.eng.(lastCaller)
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
		if lc != nil {
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
		return a.SaveState(ctx)
	}
	return nil
}

func (a *Analysis) writeStats(ctx context.Context, stats []storage.EndpointMinute) error {
	sw, ok := a.store.(statsWriter)
	if !ok || len(stats) == 0 {
		return nil
	}
	if err := sw.WriteStats(ctx, stats); err != nil {
		return fmt.Errorf("store statistics: %w", err)
	}
	return nil
}

// Close ends the input: the minutes still open and the incidents the
// engine closes are stored, with the last endpoint states, and the state
// is saved.
func (a *Analysis) Close(ctx context.Context) error {
	if err := a.writeStats(ctx, a.minutes.Drain()); err != nil {
		return err
	}
	if c, ok := a.eng.(closer); ok {
		if anoms := c.Close(); len(anoms) > 0 {
			if err := a.store.WriteAnomalies(ctx, anoms); err != nil {
				return fmt.Errorf("store anomalies: %w", err)
			}
		}
	}
	if err := a.flushInventory(ctx); err != nil {
		return err
	}
	return a.SaveState(ctx)
}

// SaveState saves the checkpoints of what changed since the last save.
func (a *Analysis) SaveState(ctx context.Context) error {
	if a.keep == nil {
		return nil
	}
	if err := a.keep.Save(ctx); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// flushInventory writes the endpoints changed since the last flush and
// the services that hold them.
func (a *Analysis) flushInventory(ctx context.Context) error {
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

// state is what a checkpoint keeps of an analysis: the engine's services
// and baselines, and the open minutes of their statistics (under
// "minutes", beside the engine's own keys).
type state struct {
	eng     StateEngine
	minutes *minutes.Aggregator
}

func (s state) SnapshotServices(hosts []string) ([]byte, error) {
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

func (s state) Restore(b []byte) error {
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

func (s state) Forget(hosts []string) {
	s.eng.Forget(hosts)
	s.minutes.Forget(hosts)
}
