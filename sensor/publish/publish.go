// Package publish sends the sensor's records to Kafka. It is a sensor.Sink:
// every record is keyed by its service (host) so one analyzer owns all of
// a service's traffic, carries the schema version and content type in its
// headers, and is acknowledged by all in-sync replicas (kafka-go's default
// is no acknowledgement at all, which would lose records silently).
//
// When Kafka is unreachable or slow, records go to the on-disk spool and
// are replayed in order once Kafka is back; while the spool holds
// anything, new records queue behind it so order per service is kept.
package publish

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/kafkaconf"
	"github.com/apiscout/apiscout/sensor/spool"
	"github.com/apiscout/apiscout/wire"
)

// Record kinds in the spool.
const (
	kindTransaction byte = 1
	kindHeartbeat   byte = 2
)

// Drop reasons.
const (
	DropSpoolFull  = "spool_full"
	DropNoSpool    = "kafka_unreachable_no_spool"
	DropSpoolError = "spool_error"
)

// Producer publishes records to one topic.
type Producer struct {
	cfg   config.KafkaConfig
	log   *zap.Logger
	w     *kafka.Writer
	spool *spool.Spool
	m     *metrics

	mu sync.Mutex // serialises Writes
	// replaying is set while spooled records are being sent: new records
	// then queue in the spool behind them, and Write never waits on it.
	replaying atomic.Bool
	stop      chan struct{}
	done      chan struct{}
	closing   sync.Once
}

type metrics struct {
	records, bytes *prometheus.CounterVec
	batch          prometheus.Histogram
	latency        prometheus.Histogram
	errors         prometheus.Counter
	dropped        *prometheus.CounterVec
	spoolRecords   prometheus.GaugeFunc
	spoolBytes     prometheus.GaugeFunc
}

// New builds the producer; spooling is on when kafka.spool_dir is set.
func New(cfg config.KafkaConfig, sensorID string, log *zap.Logger, reg prometheus.Registerer) (*Producer, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka.brokers: empty")
	}
	tr, err := kafkaconf.Transport(cfg, "apiscout-sensor-"+sensorID)
	if err != nil {
		return nil, err
	}
	codec, err := kafkaconf.Compression(cfg.Compression)
	if err != nil {
		return nil, err
	}
	acks, err := kafkaconf.Acks(cfg.RequiredAcks)
	if err != nil {
		return nil, err
	}
	w := &kafka.Writer{
		Addr:                   kafka.TCP(cfg.Brokers...),
		Topic:                  cfg.Topic,
		Balancer:               &kafka.Murmur2Balancer{}, // the Java client's partitioner: same key, same partition
		RequiredAcks:           acks,
		Compression:            codec,
		BatchSize:              cfg.BatchSize,
		BatchBytes:             cfg.BatchBytes,
		BatchTimeout:           cfg.BatchTimeout,
		MaxAttempts:            cfg.MaxAttempts,
		WriteBackoffMin:        100 * time.Millisecond,
		WriteBackoffMax:        2 * time.Second,
		Transport:              tr,
		AllowAutoTopicCreation: true,
	}
	p := &Producer{cfg: cfg, log: log, w: w, stop: make(chan struct{}), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := kafkaconf.EnsureTopic(ctx, cfg, cfg.Topic); err != nil {
		// Not fatal: the spool covers a broker that is not there yet.
		log.Warn("could not check or create the topic", zap.String("topic", cfg.Topic), zap.Error(err))
	}
	cancel()
	if cfg.SpoolDir != "" {
		if p.spool, err = spool.Open(cfg.SpoolDir, cfg.SpoolBytes, cfg.SpoolFsync); err != nil {
			return nil, err
		}
		if n, b := p.spool.Len(); n > 0 {
			log.Info("spool holds records from before the restart; replaying them first", zap.Int64("records", n), zap.Int64("bytes", b))
		}
	}
	p.m = newMetrics(reg, p.spool)
	go p.replayLoop()
	return p, nil
}

func newMetrics(reg prometheus.Registerer, s *spool.Spool) *metrics {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_kafka_records_sent_total",
			Help: "Records acknowledged by Kafka, by kind."}, []string{"kind"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_kafka_bytes_sent_total",
			Help: "Record bytes acknowledged by Kafka, by kind."}, []string{"kind"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "apiscout_kafka_batch_records",
			Help: "Records per write to Kafka.", Buckets: prometheus.ExponentialBuckets(1, 4, 8)}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "apiscout_kafka_send_seconds",
			Help: "Time for Kafka to acknowledge a write.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_kafka_send_errors_total",
			Help: "Writes to Kafka that failed after retries (their records were spooled or dropped)."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_kafka_records_dropped_total",
			Help: "Records the producer dropped, by reason."}, []string{"reason"}),
	}
	m.spoolRecords = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "apiscout_spool_records",
		Help: "Records waiting in the on-disk spool."}, func() float64 {
		if s == nil {
			return 0
		}
		n, _ := s.Len()
		return float64(n)
	})
	m.spoolBytes = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "apiscout_spool_bytes",
		Help: "Bytes in the on-disk spool."}, func() float64 {
		if s == nil {
			return 0
		}
		_, b := s.Len()
		return float64(b)
	})
	if reg != nil {
		reg.MustRegister(m.records, m.bytes, m.batch, m.latency, m.errors, m.dropped, m.spoolRecords, m.spoolBytes)
	}
	return m
}

// RequiredAcks is the acknowledgement the writer asks for.
func (p *Producer) RequiredAcks() kafka.RequiredAcks { return p.w.RequiredAcks }

func headers(contentType string) []kafka.Header {
	return []kafka.Header{
		{Key: wire.HeaderSchema, Value: []byte(strconv.Itoa(wire.SchemaVersion))},
		{Key: wire.HeaderContentType, Value: []byte(contentType)},
	}
}

func message(r spool.Record) kafka.Message {
	ct := wire.ContentTypeTransaction
	if r.Kind == kindHeartbeat {
		ct = wire.ContentTypeHeartbeat
	}
	return kafka.Message{Key: r.Key, Value: r.Value, Headers: headers(ct)}
}

// Write implements sensor.Sink. It returns an error only when records
// were lost (no spool, or the spool is full); they are also counted.
func (p *Producer) Write(ctx context.Context, recs []*wire.Transaction) error {
	out := make([]spool.Record, len(recs))
	for i, tx := range recs {
		out[i] = spool.Record{Kind: kindTransaction, Key: []byte(tx.Key()), Value: wire.AppendTransaction(nil, tx)}
	}
	return p.send(ctx, out)
}

// WriteHeartbeat implements sensor.HeartbeatSink. Heartbeats are keyed by
// sensor id; every analyzer reads every partition's heartbeats it owns.
func (p *Producer) WriteHeartbeat(ctx context.Context, hb *wire.Heartbeat) error {
	return p.send(ctx, []spool.Record{{Kind: kindHeartbeat, Key: []byte("sensor:" + hb.SensorID), Value: wire.AppendHeartbeat(nil, hb)}})
}

func (p *Producer) send(ctx context.Context, recs []spool.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.spool != nil {
		if n, _ := p.spool.Len(); n > 0 || p.replaying.Load() {
			return p.toSpool(recs) // keep order behind what waits
		}
	}
	err := p.kafka(ctx, recs)
	if err == nil {
		return nil
	}
	p.m.errors.Inc()
	if p.spool == nil {
		p.m.dropped.WithLabelValues(DropNoSpool).Add(float64(len(recs)))
		return fmt.Errorf("kafka: %d records lost (no spool configured): %w", len(recs), err)
	}
	p.log.Warn("kafka unreachable; spooling records to disk", zap.Error(err), zap.Int("records", len(recs)))
	return p.toSpool(recs)
}

func (p *Producer) toSpool(recs []spool.Record) error {
	n, err := p.spool.Append(recs)
	if err == nil {
		return nil
	}
	lost := len(recs) - n
	reason := DropSpoolError
	if errors.Is(err, spool.ErrFull) {
		reason = DropSpoolFull
	}
	p.m.dropped.WithLabelValues(reason).Add(float64(lost))
	p.log.Error("records dropped: the spool cannot take them", zap.String("reason", reason), zap.Int("records", lost), zap.Error(err))
	return fmt.Errorf("spool: %d records lost: %w", lost, err)
}

// kafka writes synchronously; kafka-go retries MaxAttempts times with
// backoff before returning an error.
func (p *Producer) kafka(ctx context.Context, recs []spool.Record) error {
	msgs := make([]kafka.Message, len(recs))
	var tb, hb int
	for i, r := range recs {
		msgs[i] = message(r)
		if r.Kind == kindHeartbeat {
			hb += len(r.Value)
		} else {
			tb += len(r.Value)
		}
	}
	start := time.Now()
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		return err
	}
	p.m.latency.Observe(time.Since(start).Seconds())
	p.m.batch.Observe(float64(len(msgs)))
	var nt, nh int
	for _, r := range recs {
		if r.Kind == kindHeartbeat {
			nh++
		} else {
			nt++
		}
	}
	p.m.records.WithLabelValues("transaction").Add(float64(nt))
	p.m.records.WithLabelValues("heartbeat").Add(float64(nh))
	p.m.bytes.WithLabelValues("transaction").Add(float64(tb))
	p.m.bytes.WithLabelValues("heartbeat").Add(float64(hb))
	return nil
}

// replayLoop drains the spool into Kafka whenever it holds records.
func (p *Producer) replayLoop() {
	defer close(p.done)
	if p.spool == nil {
		return
	}
	backoff := 200 * time.Millisecond
	for {
		select {
		case <-p.stop:
			return
		case <-time.After(backoff):
		}
		if n, _ := p.spool.Len(); n == 0 {
			continue
		}
		p.replaying.Store(true)
		for {
			n, err := p.spool.Replay(func(recs []spool.Record) error {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				return p.kafka(ctx, recs)
			})
			if err != nil {
				backoff = min(backoff*2, 5*time.Second)
				break
			}
			backoff = 200 * time.Millisecond
			if n == 0 {
				break
			}
			p.log.Info("spooled records delivered", zap.Int("records", n))
		}
		// Stop diverting new records only once the spool is empty, under
		// the write lock, so none can slip in between.
		p.mu.Lock()
		if n, _ := p.spool.Len(); n == 0 {
			p.replaying.Store(false)
		}
		p.mu.Unlock()
	}
}

// Flush waits until the spool is empty or ctx ends.
func (p *Producer) Flush(ctx context.Context) error {
	for {
		if p.spool == nil {
			return nil
		}
		if n, _ := p.spool.Len(); n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			n, _ := p.spool.Len()
			return fmt.Errorf("%d records still spooled: %w", n, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close implements sensor.Sink: it gives the spool a few seconds to
// drain, then leaves the rest on disk for the next start.
func (p *Producer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = p.Flush(ctx)
	p.closing.Do(func() { close(p.stop) })
	<-p.done
	err := p.w.Close()
	if p.spool != nil {
		if n, _ := p.spool.Len(); n > 0 {
			p.log.Warn("records left in the spool for the next start", zap.Int64("records", n))
		}
		err = errors.Join(err, p.spool.Close())
	}
	return err
}
