// Package consume reads the sensors' records from Kafka for an analyzer,
// as one member of a consumer group, at least once: offsets are committed
// only after the Handler has durably applied a batch. Records re-delivered
// after a crash are recognised by (sensor id, sequence) and not applied
// twice. A record that cannot be
// decoded goes to the dead-letter topic with the reason in a header, and
// consumption goes on.
package consume

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/kafkaconf"
	"github.com/apiscout/apiscout/wire"
)

// Record is one decoded message: a transaction or a heartbeat.
type Record struct {
	Tx        *wire.Transaction
	Heartbeat *wire.Heartbeat
	Partition int
	Offset    int64
	Key       string
}

// Handler applies a batch. Returning nil means the batch is durably
// applied (stored, checkpointed): its offsets are then committed. On an
// error the consumer stops, so a restart re-reads the batch; the handler
// must tolerate seeing records again.
type Handler interface {
	Handle(ctx context.Context, batch []Record) error
}

// HeaderDeadLetterReason names why a record was dead-lettered.
const HeaderDeadLetterReason = "apiscout-dead-letter-reason"

// Options size the batches.
type Options struct {
	// MaxBatch records per Handle call (default 5000).
	MaxBatch int
	// MaxWait before a partial batch is handed over (default 500 ms).
	MaxWait time.Duration
	// DedupeWindow is how many recent (sensor, sequence) pairs are
	// remembered to drop re-delivered records (default 1<<18, ~10 MiB).
	DedupeWindow int
}

// Consumer is one analyzer's member of the group.
type Consumer struct {
	cfg  config.KafkaConfig
	opts Options
	log  *zap.Logger
	r    *kafka.Reader
	dlq  *kafka.Writer
	m    *metrics
	seen recent
}

type metrics struct {
	records    *prometheus.CounterVec
	duplicates prometheus.Counter
	dead       *prometheus.CounterVec
	lag        prometheus.Gauge
	commits    prometheus.Counter
}

// New joins the consumer group (kafka.group) on kafka.topic. A new group
// starts at the earliest offset unless kafka.start_offset says latest: a
// group that started at the latest offset after a crash before its first
// commit would silently skip data.
func New(cfg config.KafkaConfig, opts Options, log *zap.Logger, reg prometheus.Registerer) (*Consumer, error) {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 5000
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 500 * time.Millisecond
	}
	if opts.DedupeWindow <= 0 {
		opts.DedupeWindow = 1 << 18
	}
	dialer, err := kafkaconf.Dialer(cfg, "apiscout-analyzer")
	if err != nil {
		return nil, err
	}
	tr, err := kafkaconf.Transport(cfg, "apiscout-analyzer")
	if err != nil {
		return nil, err
	}
	ectx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := kafkaconf.EnsureTopic(ectx, cfg, cfg.DeadLetterTopic); err != nil {
		log.Warn("could not check or create the dead-letter topic", zap.String("topic", cfg.DeadLetterTopic), zap.Error(err))
	}
	cancel()
	start := kafka.FirstOffset
	if cfg.StartOffset == "latest" {
		start = kafka.LastOffset
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           cfg.Brokers,
		GroupID:           cfg.Group,
		Topic:             cfg.Topic,
		Dialer:            dialer,
		StartOffset:       start,
		MinBytes:          1,
		MaxBytes:          16 << 20,
		MaxWait:           200 * time.Millisecond,
		CommitInterval:    0, // synchronous commits, only of what was applied
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		ReadBackoffMin:    50 * time.Millisecond,
		ReadBackoffMax:    time.Second,
	})
	c := &Consumer{cfg: cfg, opts: opts, log: log, r: r,
		dlq: &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Topic: cfg.DeadLetterTopic, RequiredAcks: kafka.RequireAll,
			Transport: tr, AllowAutoTopicCreation: true, BatchTimeout: 10 * time.Millisecond},
		m: newMetrics(reg)}
	return c, nil
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_consumer_records_total",
			Help: "Records read from Kafka, by kind."}, []string{"kind"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_consumer_duplicates_total",
			Help: "Records seen again (same sensor and sequence) and not applied twice."}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_consumer_dead_letters_total",
			Help: "Records sent to the dead-letter topic, by reason."}, []string{"reason"}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "apiscout_consumer_lag",
			Help: "Records behind the end of the partitions this consumer reads."}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_consumer_commits_total",
			Help: "Offset commits after batches were applied."}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.duplicates, m.dead, m.lag, m.commits)
	}
	return m
}

// Run reads, hands batches to h and commits, until ctx ends or h fails.
func (c *Consumer) Run(ctx context.Context, h Handler) error {
	for ctx.Err() == nil {
		msgs, err := c.fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(msgs) == 0 {
			continue
		}
		batch, dead := c.decode(msgs)
		if len(dead) > 0 {
			if err := c.dlq.WriteMessages(ctx, dead...); err != nil {
				return fmt.Errorf("dead-letter topic %s: %w", c.cfg.DeadLetterTopic, err)
			}
		}
		if len(batch) > 0 {
			if err := h.Handle(ctx, batch); err != nil {
				return fmt.Errorf("applying a batch (its offsets stay uncommitted): %w", err)
			}
		}
		if err := c.r.CommitMessages(ctx, msgs...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("commit: %w", err)
		}
		c.m.commits.Inc()
		c.m.lag.Set(float64(c.r.Stats().Lag))
	}
	return nil
}

// fetch gathers up to MaxBatch messages or what came within MaxWait.
func (c *Consumer) fetch(ctx context.Context) ([]kafka.Message, error) {
	var msgs []kafka.Message
	deadline := time.Now().Add(c.opts.MaxWait)
	for len(msgs) < c.opts.MaxBatch {
		wait := time.Until(deadline)
		if len(msgs) == 0 {
			wait = time.Second // block longer for the first one
		}
		if wait <= 0 {
			break
		}
		fctx, cancel := context.WithTimeout(ctx, wait)
		m, err := c.r.FetchMessage(fctx)
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				if len(msgs) == 0 {
					deadline = time.Now().Add(c.opts.MaxWait)
					return nil, nil
				}
				break
			}
			return msgs, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// decode turns messages into records, drops duplicates, and collects
// what cannot be decoded for the dead-letter topic.
func (c *Consumer) decode(msgs []kafka.Message) ([]Record, []kafka.Message) {
	batch := make([]Record, 0, len(msgs))
	var dead []kafka.Message
	for _, m := range msgs {
		rec, reason := c.one(m)
		if reason != "" {
			c.m.dead.WithLabelValues(reason).Inc()
			hs := append(append([]kafka.Header(nil), m.Headers...),
				kafka.Header{Key: HeaderDeadLetterReason, Value: []byte(reason)},
				kafka.Header{Key: "apiscout-source", Value: []byte(fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.Offset))})
			dead = append(dead, kafka.Message{Key: m.Key, Value: m.Value, Headers: hs})
			continue
		}
		if rec.Tx != nil && !c.fresh(rec.Tx.SensorID, rec.Tx.Seq) {
			c.m.duplicates.Inc()
			continue
		}
		batch = append(batch, rec)
	}
	return batch, dead
}

func header(m kafka.Message, k string) string {
	for _, h := range m.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// one decodes a message; reason is not empty when it cannot be used.
func (c *Consumer) one(m kafka.Message) (Record, string) {
	rec := Record{Partition: m.Partition, Offset: m.Offset, Key: string(m.Key)}
	if v := header(m, wire.HeaderSchema); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 {
			return rec, "bad_schema_header"
		}
	}
	switch ct := header(m, wire.HeaderContentType); ct {
	case wire.ContentTypeTransaction, "":
		var tx wire.Transaction
		if err := wire.DecodeTransaction(m.Value, &tx); err != nil {
			return rec, "undecodable_transaction"
		}
		if tx.RequestStart.IsZero() && tx.Method == "" && tx.Host == "" {
			return rec, "empty_transaction"
		}
		rec.Tx = &tx
		c.m.records.WithLabelValues("transaction").Inc()
	case wire.ContentTypeHeartbeat:
		var hb wire.Heartbeat
		if err := wire.DecodeHeartbeat(m.Value, &hb); err != nil {
			return rec, "undecodable_heartbeat"
		}
		rec.Heartbeat = &hb
		c.m.records.WithLabelValues("heartbeat").Inc()
	default:
		return rec, "unknown_content_type"
	}
	return rec, ""
}

// recent remembers the last (sensor, sequence) pairs applied, in a ring:
// a batch re-delivered after a crash is within that window. One sensor's
// records spread over partitions (they are keyed by service), so a
// consumer sees only part of each sensor's sequence: gaps are judged from
// the sensors' heartbeats, not here.
type recent struct {
	set  map[seqKey]struct{}
	ring []seqKey
	next int
}

type seqKey struct {
	sensor string
	seq    uint64
}

// fresh reports whether (sensor, seq) was not applied before, and records
// it. Records without a sequence (seq 0) are always fresh.
func (c *Consumer) fresh(sensor string, seq uint64) bool {
	if seq == 0 {
		return true
	}
	r := &c.seen
	if r.set == nil {
		r.set = make(map[seqKey]struct{}, c.opts.DedupeWindow)
		r.ring = make([]seqKey, c.opts.DedupeWindow)
	}
	k := seqKey{sensor, seq}
	if _, ok := r.set[k]; ok {
		return false
	}
	if old := r.ring[r.next]; old.seq != 0 {
		delete(r.set, old)
	}
	r.ring[r.next] = k
	r.next = (r.next + 1) % len(r.ring)
	r.set[k] = struct{}{}
	return true
}

// Lag is the consumer's current lag.
func (c *Consumer) Lag() int64 { return c.r.Stats().Lag }

// Close leaves the group.
func (c *Consumer) Close() error {
	return errors.Join(c.r.Close(), c.dlq.Close())
}
