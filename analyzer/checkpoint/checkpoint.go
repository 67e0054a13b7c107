// Package checkpoint keeps the analyzer's in-memory state durable per
// Kafka partition, so that a restarted analyzer, or the analyzer a
// partition moved to, carries on from the saved state without counting a
// transaction twice or losing one.
//
// The sensors key records by service, so a partition carries whole
// services: its checkpoint is the inventory of the services seen on it,
// with the offset of the first record the inventory does not reflect.
// Three rules make that exact:
//
//   - Kafka offsets are committed only as far as a checkpoint covers
//     (Durable), so everything after the last checkpoint is read again
//     after a crash and applied to the restored state.
//   - A record before the checkpoint's offset is already in the state and
//     is skipped (Admit), however often Kafka hands it over again.
//   - A partition's checkpoint is consulted on its first record of each
//     consumer-group generation: kafka-go's group reader does not announce
//     assignments, and a record is the proof of ownership that matters.
//     When the stored checkpoint is ahead of this analyzer's, another
//     analyzer owned the partition meanwhile: the services it carries are
//     dropped here and restored from the store. A partition not seen in
//     the current generation may belong to another analyzer now, so it is
//     neither saved nor committed until its next record.
//
// Without Kafka (`apiscout run`) there is one partition, Local: its
// records carry no offsets, and its checkpoint is restored once at start
// and saved as often as a partition's.
package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/storage"
)

// Local is the partition of records that come without Kafka.
const Local = -1

// Engine is the state being kept: the analyzer's Engine.
type Engine interface {
	// SnapshotServices serialises the named services.
	SnapshotServices(hosts []string) ([]byte, error)
	// Restore loads services from a snapshot.
	Restore(b []byte) error
	// Forget drops the named services.
	Forget(hosts []string)
}

// Store keeps checkpoints: the result store.
type Store interface {
	SaveCheckpoint(ctx context.Context, key string, data []byte, offsets map[int]int64) error
	LoadCheckpoint(ctx context.Context, key string) (storage.Checkpoint, error)
}

// Options configure a Keeper.
type Options struct {
	// Topic names the checkpoints (one key per topic and partition).
	Topic string
	// Interval between two saves of a partition that changed.
	Interval time.Duration
	// Now is the wall clock: when to save is an operational matter, not
	// part of the analysis, which runs on packet time.
	Now func() time.Time
	Log *zap.Logger
	Reg prometheus.Registerer
}

// Keeper tracks, per partition, where the state stands and what is
// saved. It is used from the one goroutine that applies batches.
type Keeper struct {
	eng   Engine
	store Store
	opts  Options
	parts map[int]*partition
	gen   int64 // the latest consumer-group generation seen on a record
	saved time.Time
	m     metrics
}

// partition is one partition's place in the state.
type partition struct {
	gen     int64 // generation of its latest record; 0: never seen
	started bool  // a checkpoint was looked for
	// next is the first record not applied (offset, index in a pack);
	// durable the offset the saved checkpoint covers (-1: none).
	next    position
	durable int64
	hosts   map[string]struct{}
	dirty   bool
}

type position struct {
	offset int64
	index  int
}

func (p position) before(q position) bool {
	return p.offset < q.offset || (p.offset == q.offset && p.index < q.index)
}

type metrics struct {
	saves, restores, skipped prometheus.Counter
	failures                 *prometheus.CounterVec
	bytes                    prometheus.Gauge
}

// New returns a Keeper of eng's state in store.
func New(eng Engine, store Store, opts Options) (*Keeper, error) {
	if opts.Interval <= 0 {
		opts.Interval = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	k := &Keeper{eng: eng, store: store, opts: opts, parts: map[int]*partition{}, saved: opts.Now()}
	k.m = metrics{
		saves: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_checkpoint_saves_total",
			Help: "Partition checkpoints of the analyzer's state saved to the result store."}),
		restores: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_checkpoint_restores_total",
			Help: "Partition checkpoints restored (at start, or when a partition came from another analyzer)."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_checkpoint_skipped_records_total",
			Help: "Records read again that the restored state already reflects, and not applied twice."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_checkpoint_failures_total",
			Help: "Checkpoint operations that failed, by operation (the batch is retried; nothing is committed past the last checkpoint)."}, []string{"op"}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "apiscout_checkpoint_bytes",
			Help: "Size of the last checkpoint saved."}),
	}
	for _, op := range []string{"load", "restore", "save"} {
		k.m.failures.WithLabelValues(op)
	}
	if opts.Reg != nil {
		for _, c := range []prometheus.Collector{k.m.saves, k.m.restores, k.m.skipped, k.m.failures, k.m.bytes} {
			if err := opts.Reg.Register(c); err != nil {
				return nil, fmt.Errorf("checkpoint metrics: %w", err)
			}
		}
	}
	return k, nil
}

// Key names a partition's checkpoint in the store.
func (k *Keeper) Key(part int) string {
	if part == Local {
		return "state/local"
	}
	return "state/" + k.opts.Topic + "/" + strconv.Itoa(part)
}

func (k *Keeper) part(n int) *partition {
	p := k.parts[n]
	if p == nil {
		p = &partition{durable: -1, hosts: map[string]struct{}{}}
		k.parts[n] = p
	}
	return p
}

// RestoreLocal restores the checkpoint of the Local partition, before
// any record arrives, so that a restarted process shows its inventory at
// once.
func (k *Keeper) RestoreLocal(ctx context.Context) error {
	p := k.part(Local)
	if p.started {
		return nil
	}
	return k.load(ctx, Local, p)
}

// Admit says whether the record at (offset, index) of partition part,
// read in consumer-group generation gen, is new to the state (apply it,
// then call Applied) or already reflected (skip it). On the partition's
// first record of a generation it consults the stored checkpoint and
// restores it when it is ahead of this analyzer's state. An error (the
// store cannot be read) means the batch must not be applied.
func (k *Keeper) Admit(ctx context.Context, part int, offset int64, index int, gen int64) (bool, error) {
	p := k.part(part)
	k.gen = max(k.gen, gen)
	if part == Local {
		if !p.started {
			if err := k.load(ctx, part, p); err != nil {
				return false, err
			}
		}
		p.gen = gen
		return true, nil
	}
	if !p.started || p.gen != gen {
		if err := k.load(ctx, part, p); err != nil {
			return false, err
		}
		p.gen = gen
	}
	if at := (position{offset, index}); at.before(p.next) {
		k.m.skipped.Inc()
		return false, nil
	}
	p.next = position{offset, index + 1}
	return true, nil
}

// Passed notes that the record at offset of part carried nothing to apply
// (it went to the dead letters, or was a duplicate): the state covers it
// as it stands. It must follow every earlier record of the partition.
// Records of a generation whose first record has not been admitted yet
// are left alone: whether a checkpoint must be restored is not known.
func (k *Keeper) Passed(part int, offset int64, gen int64) {
	p := k.part(part)
	if part == Local || !p.started || p.gen != gen {
		return
	}
	if at := (position{offset, 0}); !at.before(p.next) {
		p.next = position{offset: offset + 1}
	}
}

// Applied notes that a record of part was applied to host's state.
func (k *Keeper) Applied(part int, host string) {
	p := k.part(part)
	p.hosts[host] = struct{}{}
	p.dirty = true
}

// load restores part's checkpoint when it is ahead of the state here.
func (k *Keeper) load(ctx context.Context, n int, p *partition) error {
	cp, err := k.store.LoadCheckpoint(ctx, k.Key(n))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		if !p.started {
			p.next = position{offset: -1}
		}
		p.started = true
		return nil
	case err != nil:
		k.m.failures.WithLabelValues("load").Inc()
		return fmt.Errorf("checkpoint of partition %d: %w", n, err)
	}
	off, ok := cp.Offsets[n]
	if n == Local {
		off, ok = 0, true
	}
	if !ok {
		k.m.failures.WithLabelValues("load").Inc()
		return fmt.Errorf("checkpoint %s has no offset for partition %d", cp.Key, n)
	}
	if p.started && off <= p.durable {
		return nil // nobody saved beyond this analyzer: its state is current
	}
	hosts, err := Hosts(cp.Data)
	if err != nil {
		k.m.failures.WithLabelValues("restore").Inc()
		return fmt.Errorf("checkpoint %s: %w", cp.Key, err)
	}
	stale := make([]string, 0, len(p.hosts)+len(hosts))
	for h := range p.hosts {
		stale = append(stale, h)
	}
	stale = append(stale, hosts...)
	k.eng.Forget(stale)
	if err := k.eng.Restore(cp.Data); err != nil {
		k.m.failures.WithLabelValues("restore").Inc()
		return fmt.Errorf("checkpoint %s: %w", cp.Key, err)
	}
	clear(p.hosts)
	for _, h := range hosts {
		p.hosts[h] = struct{}{}
	}
	p.started, p.dirty = true, false
	p.next, p.durable = position{offset: off}, off
	if n == Local {
		p.next = position{offset: -1}
	}
	k.m.restores.Inc()
	k.opts.Log.Info("state restored from checkpoint", zap.String("key", cp.Key), zap.Int64("offset", off),
		zap.Int("services", len(hosts)), zap.Time("saved_at", cp.SavedAt))
	return nil
}

// Due reports whether Interval has passed since the last save.
func (k *Keeper) Due() bool { return k.opts.Now().Sub(k.saved) >= k.opts.Interval }

// Save writes the checkpoint of every partition that changed and is
// owned in the latest generation. Call it only after the results of the
// records applied so far are stored: a checkpoint claims them.
func (k *Keeper) Save(ctx context.Context) error {
	k.saved = k.opts.Now()
	parts := make([]int, 0, len(k.parts))
	for n, p := range k.parts {
		if p.dirty && (n == Local || p.gen == k.gen) {
			parts = append(parts, n)
		}
	}
	sort.Ints(parts)
	for _, n := range parts {
		p := k.parts[n]
		hosts := make([]string, 0, len(p.hosts))
		for h := range p.hosts {
			hosts = append(hosts, h)
		}
		data, err := k.eng.SnapshotServices(hosts)
		if err != nil {
			k.m.failures.WithLabelValues("save").Inc()
			return fmt.Errorf("checkpoint of partition %d: %w", n, err)
		}
		off := p.next.offset
		if p.next.index > 0 {
			off++ // the Kafka record of the last applied pack is whole
		}
		offsets := map[int]int64{n: max(off, 0)}
		if err := k.store.SaveCheckpoint(ctx, k.Key(n), data, offsets); err != nil {
			k.m.failures.WithLabelValues("save").Inc()
			return fmt.Errorf("checkpoint of partition %d: %w", n, err)
		}
		p.durable, p.dirty = offsets[n], false
		k.m.saves.Inc()
		k.m.bytes.Set(float64(len(data)))
	}
	return nil
}

// Durable returns, per partition owned in the latest generation, the
// offset its checkpoint covers: how far Kafka offsets may be committed.
// A partition to which nothing was applied since its last save (records
// that were heartbeats, dead letters, duplicates, or refused by the caps)
// is covered up to its latest record without saving again: its state is
// the saved one. Otherwise a partition that carries only heartbeats would
// never be committed, its lag growing for ever.
func (k *Keeper) Durable() map[int]int64 {
	out := make(map[int]int64, len(k.parts))
	for n, p := range k.parts {
		if n == Local || p.gen != k.gen {
			continue
		}
		if !p.dirty && p.started {
			off := p.next.offset
			if p.next.index > 0 {
				off++
			}
			p.durable = max(p.durable, off)
		}
		if p.durable >= 0 {
			out[n] = p.durable
		}
	}
	return out
}

// Hosts lists the services in a snapshot: a list of services, or an
// object with one under "services".
func Hosts(data []byte) ([]string, error) {
	type host struct {
		Host string `json:"host"`
	}
	var svcs []host
	if data = bytes.TrimSpace(data); len(data) > 0 && data[0] == '{' {
		var cp struct {
			Services []host `json:"services"`
		}
		if err := json.Unmarshal(data, &cp); err != nil {
			return nil, err
		}
		svcs = cp.Services
	} else if err := json.Unmarshal(data, &svcs); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(svcs))
	for _, s := range svcs {
		out = append(out, s.Host)
	}
	return slices.Compact(out), nil
}
