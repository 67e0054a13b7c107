// Package publish sends the sensor's records to Kafka. It is a sensor.Sink:
// every record is keyed by its service (host) so one analyzer owns all of
// a service's traffic, carries the schema version, content type and its
// origin (producer epoch, partition, per-partition sequence) in its
// headers, and is acknowledged by all in-sync replicas (kafka-go's default
// is no acknowledgement at all, which would lose records silently).
//
// The transactions of one service in one Write travel packed into Kafka
// records of about kafka.pack_bytes (content type
// wire.ContentTypeTransactions): the cost of Kafka, in the client, the
// broker and the consumer, is mostly per Kafka record.
//
// Write never waits for Kafka: records are handed to kafka-go's
// asynchronous writer, which batches them per partition by size and time,
// and their acknowledgements come back later. A batch that fails after
// its retries goes to the on-disk spool, and so does every record written
// while the spool holds anything or while more than kafka.max_inflight_bytes
// wait for acknowledgement (Kafka slow): new records queue behind the
// spooled ones, which are replayed in order once Kafka is back. Records
// that were already in flight when Kafka failed may reach it before older
// spooled ones; consumers see them once each, ordered by packet time.
// Without a spool, records Kafka refused are counted and reported by the
// next Write or Flush, and a slow Kafka makes Write wait.
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
	kindPack        byte = 3
)

// Drop reasons (the label set of apiscout_kafka_records_dropped_total).
const (
	DropSpoolFull  = "spool_full"
	DropNoSpool    = "kafka_unreachable_no_spool"
	DropSpoolError = "spool_error"
	DropClosed     = "closed"
	DropTooLarge   = "too_large" // one record over kafka.batch_bytes: no broker would take it
)

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("publish: producer closed")

// Producer publishes records to one topic.
type Producer struct {
	cfg      config.KafkaConfig
	log      *zap.Logger
	sensorID string
	epoch    uint64
	w        *kafka.Writer // asynchronous: live records
	rw       *kafka.Writer // synchronous: spool replay
	spool    *spool.Spool
	m        *metrics
	bal      kafka.Murmur2Balancer // the Java client's partitioner: same key, same partition
	seq      atomic.Uint64         // for records that come without a sequence

	mu       sync.Mutex
	room     *sync.Cond // signalled when in-flight bytes drop, and on every tick
	parts    []int      // the topic's partitions; nil while unknown
	pseq     map[int]uint64
	divert   bool  // new records go to the spool
	inflight int64 // bytes handed to w, not yet acknowledged or failed
	lostN    int64 // records lost (no spool) since the last report
	lostErr  error
	closed   bool

	stop    chan struct{}
	done    chan struct{}
	closing sync.Once
}

type metrics struct {
	records, bytes *prometheus.CounterVec
	batch          prometheus.Histogram
	latency        prometheus.Histogram
	errors         prometheus.Counter
	dropped        *prometheus.CounterVec
}

// New builds the producer; spooling is on when kafka.spool_dir is set.
// sensorID fills records that come without one.
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
	if cfg.MaxInflightBytes <= 0 {
		cfg.MaxInflightBytes = 64 << 20
	}
	p := &Producer{cfg: cfg, log: log, sensorID: sensorID, epoch: uint64(time.Now().UnixNano()),
		pseq: map[int]uint64{}, stop: make(chan struct{}), done: make(chan struct{})}
	p.room = sync.NewCond(&p.mu)
	writer := func(async bool) *kafka.Writer {
		return &kafka.Writer{
			Addr:                   kafka.TCP(cfg.Brokers...),
			Topic:                  cfg.Topic,
			Balancer:               chosen{&p.bal},
			RequiredAcks:           acks, // explicit: kafka-go's zero value is no acknowledgement
			Compression:            codec,
			BatchSize:              cfg.BatchSize,
			BatchBytes:             cfg.BatchBytes,
			BatchTimeout:           cfg.BatchTimeout,
			MaxAttempts:            cfg.MaxAttempts,
			WriteBackoffMin:        100 * time.Millisecond,
			WriteBackoffMax:        2 * time.Second,
			Transport:              tr,
			AllowAutoTopicCreation: true,
			Async:                  async,
		}
	}
	p.w = writer(true)
	p.w.Completion = p.completed
	p.rw = writer(false)
	p.rw.MaxAttempts = 2 // the replay loop retries with its own backoff

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := kafkaconf.EnsureTopic(ctx, cfg, cfg.Topic); err != nil {
		// Not fatal: the spool covers a broker that is not there yet.
		log.Warn("could not check or create the topic", zap.String("topic", cfg.Topic), zap.Error(err))
	} else if parts, err := kafkaconf.Partitions(ctx, cfg, cfg.Topic); err == nil {
		p.parts = parts
	}
	cancel()
	if cfg.SpoolDir != "" {
		if p.spool, err = spool.Open(cfg.SpoolDir, cfg.SpoolBytes, cfg.SpoolFsync); err != nil {
			return nil, err
		}
		if n, b := p.spool.Len(); n > 0 {
			log.Info("spool holds records from before the restart; replaying them first", zap.Int64("records", n), zap.Int64("bytes", b))
			p.divert = true
		}
	}
	if p.m, err = newMetrics(reg, p); err != nil {
		return nil, err
	}
	go p.loop()
	return p, nil
}

func newMetrics(reg prometheus.Registerer, p *Producer) (*metrics, error) {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_kafka_records_sent_total",
			Help: "Kafka records acknowledged by Kafka, by kind (a pack of transactions counts once)."}, []string{"kind"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_kafka_bytes_sent_total",
			Help: "Record bytes (key and value) acknowledged by Kafka, by kind."}, []string{"kind"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "apiscout_kafka_batch_records",
			Help: "Records per batch acknowledged by Kafka.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "apiscout_kafka_send_seconds",
			Help: "From Write to Kafka's acknowledgement, per batch (batching wait included).", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_kafka_send_errors_total",
			Help: "Batches Kafka did not take after retries (their records were spooled or dropped)."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_kafka_records_dropped_total",
			Help: "Records the producer dropped, by reason."}, []string{"reason"}),
	}
	for _, r := range []string{DropSpoolFull, DropNoSpool, DropSpoolError, DropClosed, DropTooLarge} {
		m.dropped.WithLabelValues(r)
	}
	for _, k := range []string{"transaction", "heartbeat"} {
		m.records.WithLabelValues(k)
		m.bytes.WithLabelValues(k)
	}
	spoolLen := func(bytes bool) func() float64 {
		return func() float64 {
			if p.spool == nil {
				return 0
			}
			n, b := p.spool.Len()
			if bytes {
				return float64(b)
			}
			return float64(n)
		}
	}
	cs := []prometheus.Collector{m.records, m.bytes, m.batch, m.latency, m.errors, m.dropped,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "apiscout_spool_records",
			Help: "Records waiting in the on-disk spool."}, spoolLen(false)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "apiscout_spool_bytes",
			Help: "Bytes in the on-disk spool."}, spoolLen(true)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "apiscout_spool_corrupt_records_total",
			Help: "Spooled records skipped on replay because their checksum or framing failed (lost)."}, func() float64 {
			if p.spool == nil {
				return 0
			}
			return float64(p.spool.CorruptRecords())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "apiscout_kafka_inflight_bytes",
			Help: "Record bytes handed to Kafka and not yet acknowledged."}, func() float64 {
			p.mu.Lock()
			defer p.mu.Unlock()
			return float64(p.inflight)
		}),
	}
	if reg != nil {
		for _, c := range cs {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("publish metrics: %w", err)
			}
		}
	}
	return m, nil
}

// RequiredAcks is the acknowledgement the writers ask for.
func (p *Producer) RequiredAcks() kafka.RequiredAcks { return p.w.RequiredAcks }

// chosen sends a record to the partition the producer chose (and numbered
// it for); when that partition no longer exists, it falls back to the
// key's hash.
type chosen struct{ hash *kafka.Murmur2Balancer }

func (c chosen) Balance(msg kafka.Message, partitions ...int) int {
	if msg.Partition >= 0 && msg.Partition < len(partitions) && partitions[msg.Partition] == msg.Partition {
		return msg.Partition
	}
	return c.hash.Balance(msg, partitions...)
}

var (
	schemaHeader = kafka.Header{Key: wire.HeaderSchema, Value: []byte(strconv.Itoa(wire.SchemaVersion))}
	txHeader     = kafka.Header{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeTransaction)}
	hbHeader     = kafka.Header{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeHeartbeat)}
	packHeader   = kafka.Header{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeTransactions)}
)

// contentHeader is the content-type header of a spool record kind.
func contentHeader(kind byte) kafka.Header {
	switch kind {
	case kindHeartbeat:
		return hbHeader
	case kindPack:
		return packHeader
	}
	return txHeader
}

// kindOf is the spool record kind of a message, from its content type.
func kindOf(m kafka.Message) byte {
	if len(m.Headers) > 1 {
		switch string(m.Headers[1].Value) {
		case wire.ContentTypeHeartbeat:
			return kindHeartbeat
		case wire.ContentTypeTransactions:
			return kindPack
		}
	}
	return kindTransaction
}

// Write implements sensor.Sink. It hands the records over and returns; it
// returns an error when records were lost: these (the spool is full, or
// one is larger than a batch may be) or earlier ones Kafka refused while
// there was no spool. The records are the producer's from then on: it
// fills SensorID and Seq where missing.
//
// With kafka.pack_bytes set, the records of one service in this call
// travel packed in Kafka records of about that size, in order: Kafka's
// cost (client, broker, consumer) is mostly per record.
func (p *Producer) Write(ctx context.Context, recs []*wire.Transaction) error {
	if len(recs) == 0 {
		return p.takeLoss()
	}
	for _, tx := range recs {
		if tx.SensorID == "" {
			tx.SensorID = p.sensorID
		}
		if tx.Seq == 0 {
			tx.Seq = p.seq.Add(1)
		}
	}
	// One buffer holds every value, key and origin of the call, and one
	// slice every header: a handful of allocations per call, not per record.
	est := 0
	for _, tx := range recs {
		est += 160 + len(tx.RequestBody) + len(tx.ResponseBody) + 40*(len(tx.RequestHeaders)+len(tx.ResponseHeaders))
	}
	ar := getArena(est)
	arena := ar.buf
	var spans []span
	if p.cfg.PackBytes > 0 {
		arena, spans = p.packed(arena, recs)
	} else {
		spans = make([]span, len(recs))
		for i, tx := range recs {
			spans[i].key = len(arena)
			arena = append(arena, tx.Key()...)
			spans[i].val = len(arena)
			arena = wire.AppendTransaction(arena, tx)
			spans[i].org = len(arena)
			arena = append(arena, make([]byte, wire.OriginLen)...)
		}
	}
	ct := txHeader
	if p.cfg.PackBytes > 0 {
		ct = packHeader
	}
	hdrs := make([]kafka.Header, 3*len(spans))
	msgs := make([]kafka.Message, 0, len(spans))
	now := time.Now()
	var size int64
	tooLarge := 0
	for i, s := range spans {
		end := s.org + wire.OriginLen
		if int64(end-s.key) > p.cfg.BatchBytes {
			tooLarge++
			continue
		}
		h := hdrs[3*i : 3*i+3 : 3*i+3]
		h[0], h[1] = schemaHeader, ct
		h[2] = kafka.Header{Key: wire.HeaderOrigin, Value: arena[s.org:end:end]}
		msgs = append(msgs, kafka.Message{Key: arena[s.key:s.val:s.val], Value: arena[s.val:s.org:s.org], Headers: h, Time: now, WriterData: ar})
		size += int64(s.org - s.key)
	}
	var lost error
	if tooLarge > 0 {
		p.m.dropped.WithLabelValues(DropTooLarge).Add(float64(tooLarge))
		lost = fmt.Errorf("kafka: %d records over kafka.batch_bytes (%d) dropped", tooLarge, p.cfg.BatchBytes)
	}
	ar.buf = arena
	ar.refs.Store(int32(len(msgs)))
	if len(msgs) == 0 {
		arenas.Put(ar)
		return lost
	}
	return errors.Join(lost, p.send(ctx, msgs, size))
}

// arena is the buffer of one Write's records, reused once Kafka has
// acknowledged every one of them (or they were spooled or counted lost):
// a fresh buffer of megabytes per call would be zeroed and faulted in each
// time. kafka-go carries it to the completion callback in WriterData.
type arena struct {
	buf  []byte
	refs atomic.Int32 // records not yet done with
}

var arenas sync.Pool

func getArena(size int) *arena {
	if a, ok := arenas.Get().(*arena); ok && cap(a.buf) >= size {
		a.buf = a.buf[:0]
		return a
	}
	return &arena{buf: make([]byte, 0, size)}
}

// release marks msgs done with: their bytes are acknowledged, spooled
// (copied) or lost; an arena goes back to the pool with its last record.
func release(msgs []kafka.Message) {
	for i := range msgs {
		if a, ok := msgs[i].WriterData.(*arena); ok {
			msgs[i].WriterData = nil
			if a.refs.Add(-1) == 0 {
				arenas.Put(a)
			}
		}
	}
}

// span locates one Kafka record's key, value and origin in the arena.
type span struct{ key, val, org int }

// packed encodes recs as packs, one or more per service in the order the
// services first appear, each service's records in their order.
func (p *Producer) packed(arena []byte, recs []*wire.Transaction) ([]byte, []span) {
	type group struct{ first, last int32 }
	byKey := make(map[string]int, 16)
	var groups []group
	next := make([]int32, len(recs)) // the service's next record, -1 at its end
	for i, tx := range recs {
		next[i] = -1
		k := tx.Key()
		g, ok := byKey[k]
		if !ok {
			byKey[k] = len(groups)
			groups = append(groups, group{int32(i), int32(i)})
			continue
		}
		next[groups[g].last] = int32(i)
		groups[g].last = int32(i)
	}
	spans := make([]span, 0, len(groups))
	for _, g := range groups {
		key := recs[g.first].Key()
		for i := g.first; i >= 0; {
			var s span
			s.key = len(arena)
			arena = append(arena, key...)
			s.val = len(arena)
			for i >= 0 {
				arena = wire.AppendPacked(arena, recs[i])
				i = next[i]
				if len(arena)-s.val >= p.cfg.PackBytes {
					break
				}
			}
			s.org = len(arena)
			arena = append(arena, make([]byte, wire.OriginLen)...)
			spans = append(spans, s)
		}
	}
	return arena, spans
}

// WriteHeartbeat implements sensor.HeartbeatSink. A heartbeat is keyed by
// its sensor, so one analyzer sees all of a sensor's heartbeats in order.
func (p *Producer) WriteHeartbeat(ctx context.Context, hb *wire.Heartbeat) error {
	if hb.SensorID == "" {
		hb.SensorID = p.sensorID
	}
	key := []byte("sensor:" + hb.SensorID)
	val := wire.AppendHeartbeat(nil, hb)
	msg := kafka.Message{Key: key, Value: val, Time: time.Now(),
		Headers: []kafka.Header{schemaHeader, hbHeader, {Key: wire.HeaderOrigin, Value: make([]byte, wire.OriginLen)}}}
	return p.send(ctx, []kafka.Message{msg}, int64(len(key)+len(val)))
}

// send numbers the records in their partitions and hands them to Kafka
// or, when it must, to the spool.
func (p *Producer) send(ctx context.Context, msgs []kafka.Message, size int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.m.dropped.WithLabelValues(DropClosed).Add(float64(len(msgs)))
		return ErrClosed
	}
	for i := range msgs {
		m := &msgs[i]
		o := wire.Origin{Epoch: p.epoch, Partition: -1}
		m.Partition = -1
		if p.parts != nil {
			m.Partition = p.bal.Balance(*m, p.parts...)
			p.pseq[m.Partition]++
			o.Partition, o.PartitionSeq = int32(m.Partition), p.pseq[m.Partition]
		}
		wire.PutOrigin(m.Headers[2].Value, o)
	}
	lost := p.takeLossLocked()
	if p.spool != nil {
		if !p.divert && p.inflight+size > p.cfg.MaxInflightBytes && p.inflight > 0 {
			p.log.Warn("Kafka is slow: spooling records to disk until it catches up",
				zap.Int64("inflight_bytes", p.inflight))
			p.divert = true
		}
		if p.divert {
			err := p.toSpool(msgs)
			release(msgs)
			return errors.Join(lost, err)
		}
	} else {
		for p.inflight+size > p.cfg.MaxInflightBytes && p.inflight > 0 && ctx.Err() == nil {
			p.room.Wait() // backpressure: the sensor's queue absorbs it
		}
	}
	p.inflight += size
	// The hand-over outlives a cancelled caller: a sensor shutting down
	// writes its last batch with the context that told it to stop.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	err := p.w.WriteMessages(wctx, msgs...) // asynchronous: fails only before batching
	cancel()
	if err != nil {
		p.inflight -= size
		p.m.errors.Inc()
		err = p.failed(msgs, err)
		release(msgs)
		return errors.Join(lost, err)
	}
	return lost
}

// completed is kafka-go's callback for every batch of the async writer.
func (p *Producer) completed(msgs []kafka.Message, err error) {
	var size int64
	for i := range msgs {
		size += int64(len(msgs[i].Key) + len(msgs[i].Value))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight -= size
	p.room.Broadcast()
	defer release(msgs)
	if err != nil {
		p.m.errors.Inc()
		p.failed(msgs, err) // its error is counted and kept in lostErr
		return
	}
	p.sent(msgs)
}

func (p *Producer) sent(msgs []kafka.Message) {
	var nt, nh, bt, bh int
	for i := range msgs {
		b := len(msgs[i].Key) + len(msgs[i].Value)
		if kindOf(msgs[i]) == kindHeartbeat {
			nh++
			bh += b
		} else {
			nt++ // a pack counts once: these are Kafka records
			bt += b
		}
	}
	p.m.latency.Observe(time.Since(msgs[0].Time).Seconds())
	p.m.batch.Observe(float64(len(msgs)))
	p.m.records.WithLabelValues("transaction").Add(float64(nt))
	p.m.bytes.WithLabelValues("transaction").Add(float64(bt))
	if nh > 0 {
		p.m.records.WithLabelValues("heartbeat").Add(float64(nh))
		p.m.bytes.WithLabelValues("heartbeat").Add(float64(bh))
	}
}

// failed takes records Kafka did not: to the spool, or counted as lost.
// p.mu is held.
func (p *Producer) failed(msgs []kafka.Message, err error) error {
	if p.spool == nil {
		p.m.dropped.WithLabelValues(DropNoSpool).Add(float64(len(msgs)))
		if p.lostErr == nil {
			p.log.Error("Kafka did not take records and there is no spool: they are lost", zap.Int("records", len(msgs)), zap.Error(err))
			p.lostErr = err
		}
		p.lostN += int64(len(msgs))
		return nil
	}
	if !p.divert {
		p.log.Warn("Kafka unreachable: spooling records to disk", zap.Int("records", len(msgs)), zap.Error(err))
		p.divert = true
	}
	return p.toSpool(msgs)
}

func (p *Producer) toSpool(msgs []kafka.Message) error {
	recs := make([]spool.Record, len(msgs))
	for i := range msgs {
		recs[i] = spool.Record{Kind: kindOf(msgs[i]), Key: msgs[i].Key, Value: msgs[i].Value}
		if len(msgs[i].Headers) > 2 {
			recs[i].Meta = msgs[i].Headers[2].Value
		}
	}
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

func (p *Producer) takeLoss() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.takeLossLocked()
}

// takeLossLocked reports records lost since the last report, once.
func (p *Producer) takeLossLocked() error {
	if p.lostN == 0 {
		return nil
	}
	err := fmt.Errorf("kafka: %d records lost (no spool configured): %w", p.lostN, p.lostErr)
	p.lostN, p.lostErr = 0, nil
	return err
}

// replay sends one segment's records synchronously, to the partitions
// they were numbered for.
func (p *Producer) replay(recs []spool.Record) error {
	msgs := make([]kafka.Message, len(recs))
	now := time.Now()
	for i, r := range recs {
		msgs[i] = kafka.Message{Key: r.Key, Value: r.Value, Time: now, Partition: -1,
			Headers: []kafka.Header{schemaHeader, contentHeader(r.Kind), {Key: wire.HeaderOrigin, Value: r.Meta}}}
		if o, err := wire.DecodeOrigin(r.Meta); err == nil {
			msgs[i].Partition = int(o.Partition)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.rw.WriteMessages(ctx, msgs...); err != nil {
		return err
	}
	p.mu.Lock()
	p.sent(msgs)
	p.mu.Unlock()
	return nil
}

// loop replays the spool when it holds records and refreshes the topic's
// partitions. It is the producer's only goroutine.
func (p *Producer) loop() {
	defer close(p.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	backoff, nextTry := 200*time.Millisecond, time.Time{}
	nextParts := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		p.mu.Lock()
		p.room.Broadcast() // lets a waiting Write see its context end
		known := p.parts != nil
		p.mu.Unlock()
		if now := time.Now(); !known || now.After(nextParts) {
			nextParts = now.Add(30 * time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if parts, err := kafkaconf.Partitions(ctx, p.cfg, p.cfg.Topic); err == nil && len(parts) > 0 {
				p.mu.Lock()
				p.parts = parts
				p.mu.Unlock()
			}
			cancel()
		}
		if p.spool == nil || time.Now().Before(nextTry) {
			continue
		}
		p.mu.Lock()
		divert, inflight := p.divert, p.inflight
		p.mu.Unlock()
		// Wait for what is in flight first: it is older than what was
		// diverted to the spool, and may yet fail into it.
		if !divert || inflight > 0 {
			continue
		}
		for {
			n, err := p.spool.Replay(p.replay)
			if err != nil {
				p.log.Debug("spool replay failed; retrying", zap.Duration("backoff", backoff), zap.Error(err))
				nextTry = time.Now().Add(backoff)
				backoff = min(backoff*2, 5*time.Second)
				break
			}
			backoff = 200 * time.Millisecond
			if n > 0 {
				p.log.Debug("spooled records delivered", zap.Int("records", n))
				continue
			}
			// Stop diverting only once the spool is empty, under the write
			// lock, so no record slips in between.
			p.mu.Lock()
			if n, _ := p.spool.Len(); n == 0 {
				p.divert = false
				p.log.Info("Kafka takes records again; spool drained")
			}
			p.mu.Unlock()
			break
		}
	}
}

// Flush waits until every record handed over is acknowledged by Kafka (or
// lost, which it reports) and the spool is empty, or ctx ends.
func (p *Producer) Flush(ctx context.Context) error {
	for {
		p.mu.Lock()
		idle := p.inflight == 0 && !p.divert
		p.mu.Unlock()
		if idle {
			return p.takeLoss()
		}
		select {
		case <-ctx.Done():
			p.mu.Lock()
			inflight := p.inflight
			p.mu.Unlock()
			var n int64
			if p.spool != nil {
				n, _ = p.spool.Len()
			}
			return errors.Join(p.takeLoss(), fmt.Errorf("%d bytes unacknowledged, %d records spooled: %w", inflight, n, ctx.Err()))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Close implements sensor.Sink: it gives Kafka a few seconds to take what
// is in flight and in the spool, then leaves the rest in the spool for
// the next start. It reports records lost since the last Write.
func (p *Producer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ferr := p.Flush(ctx)
	p.closing.Do(func() { close(p.stop) })
	<-p.done
	p.mu.Lock()
	p.closed = true
	p.room.Broadcast()
	p.mu.Unlock()
	// Closing the async writer sends what it holds; what fails lands in
	// the spool through completed, so the spool closes last.
	err := errors.Join(p.w.Close(), p.rw.Close())
	if p.spool != nil {
		if n, _ := p.spool.Len(); n > 0 {
			p.log.Warn("records left in the spool for the next start", zap.Int64("records", n))
		}
		err = errors.Join(err, p.spool.Close())
		ferr = nil // nothing was lost: it waits on disk
	}
	return errors.Join(err, ferr, p.takeLoss())
}
