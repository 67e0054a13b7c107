// Package consume reads the sensors' records from Kafka for an analyzer,
// as one member of a consumer group, at least once: offsets are committed
// only after the Handler has durably applied a batch. Records re-delivered
// within a bounded window are recognised by (sensor, producer epoch,
// sequence) and not handed over twice; the handler's own idempotence (by
// transaction id) covers re-delivery after a crash. Gaps in each producer's
// per-partition numbering are counted, so loss between sensor and analyzer
// is visible. A record that cannot be decoded goes to the dead-letter
// topic with the reason in a header, and consumption goes on.
package consume

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
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
	// Index is the transaction's place in its Kafka record when the
	// sensor packed several into one (0 otherwise).
	Index int
	Key   string
	// Origin is where the producer put the record (zero when the record
	// came without an origin header).
	Origin wire.Origin
	// Generation counts the consumer-group generations this consumer has
	// joined, as of the batch the record came in: when it changes,
	// partitions may have moved between analyzers.
	Generation int64
	// Lost is how many Kafka records of this producer's partition
	// sequence never arrived just before this one (a pack counts once):
	// the loss travels with the data, so the analyzer can tell "quiet"
	// from "blind". Set on the first record of the Kafka record only.
	Lost uint64
}

// Handler applies a batch. Run calls Handle from one goroutine, one batch
// at a time, in partition order. Returning nil means the batch is durably
// applied (stored, checkpointed): its offsets are then committed. On an
// error Run stops, so a restart reads the batch again; the handler must
// tolerate seeing records again (the transaction id is stable).
type Handler interface {
	Handle(ctx context.Context, batch []Record) error
}

// Durable is implemented by a Handler whose applied state becomes
// durable later than Handle returns (an analyzer that checkpoints its
// in-memory state every so often). Run then commits each partition no
// further than the offset Durable reports for it (the first record the
// durable state does not reflect), and commits nothing for a partition
// Durable leaves out.
type Durable interface {
	Durable() map[int]int64
}

// Passer is implemented by a Durable handler that lets records which
// carried nothing to apply count as covered: a record that went to the
// dead letters, or a re-delivery dropped as a duplicate. Run calls Passed
// for each, in order, after the batch is handled; without it a partition
// that carries only such records is never committed, and a restart reads
// (and dead-letters) them again.
type Passer interface {
	Passed(partition int, offset int64, generation int64)
}

// Header names the consumer adds to dead letters.
const (
	HeaderDeadLetterReason = "apiscout-dead-letter-reason"
	HeaderDeadLetterSource = "apiscout-source" // topic/partition/offset it came from
)

// Dead-letter reasons (the label set of apiscout_consumer_dead_letters_total).
const (
	ReasonBadSchemaHeader        = "bad_schema_header"
	ReasonUndecodableTransaction = "undecodable_transaction"
	ReasonEmptyTransaction       = "empty_transaction"
	ReasonUndecodablePack        = "undecodable_pack"
	ReasonUndecodableHeartbeat   = "undecodable_heartbeat"
	ReasonUnknownContentType     = "unknown_content_type"
)

// Options size the batches and the memory of the consumer.
type Options struct {
	// MaxBatch Kafka records per Handle call (default 5000); a pack of
	// transactions counts once.
	MaxBatch int
	// MaxWait before a partial batch is handed over (default 500 ms).
	MaxWait time.Duration
	// DedupeWindow is how many recent (sensor, epoch, sequence) keys are
	// remembered to drop re-delivered records (default 1<<18: about
	// 20 MiB, a few seconds of a busy analyzer).
	DedupeWindow int
	// MaxStreams bounds the producer partitions tracked for gaps (default
	// 65536: sensors x restarts x partitions).
	MaxStreams int
}

// Consumer is one analyzer's member of the group.
type Consumer struct {
	cfg     config.KafkaConfig
	opts    Options
	log     *zap.Logger
	r       *kafka.Reader
	dlq     *kafka.Writer
	m       *metrics
	seen    recent
	seed    maphash.Seed
	streams map[streamKey]uint64 // next expected per-partition sequence
	lag     map[int]int64
	// generation counts group generations (kafka-go's rebalance counter
	// resets on each read, so it is summed here); committed is the
	// offset last committed per partition for a Durable handler.
	generation int64
	committed  map[int]int64
}

type metrics struct {
	transactions, heartbeats prometheus.Counter
	duplicates               prometheus.Counter
	gaps, late               prometheus.Counter
	dead                     *prometheus.CounterVec
	lag                      *prometheus.GaugeVec
	commits                  prometheus.Counter
	batch                    prometheus.Histogram
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
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = 1 << 16
	}
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka.brokers: empty")
	}
	dialer, err := kafkaconf.Dialer(cfg, "apiscout-analyzer")
	if err != nil {
		return nil, err
	}
	tr, err := kafkaconf.Transport(cfg, "apiscout-analyzer")
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
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
		QueueCapacity:     opts.MaxBatch, // kafka-go's 100 starves a batch of thousands
		CommitInterval:    0,             // synchronous commits, only of what was applied
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		ReadBackoffMin:    50 * time.Millisecond,
		ReadBackoffMax:    time.Second,
	})
	c := &Consumer{cfg: cfg, opts: opts, log: log, r: r, m: m,
		dlq: &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Topic: cfg.DeadLetterTopic, RequiredAcks: kafka.RequireAll,
			Transport: tr, AllowAutoTopicCreation: true, BatchTimeout: 10 * time.Millisecond},
		streams: map[streamKey]uint64{}, lag: map[int]int64{}, committed: map[int]int64{}, seed: maphash.MakeSeed()}
	return c, nil
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	records := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_consumer_records_total",
		Help: "Records read from Kafka and decoded, by kind."}, []string{"kind"})
	m := &metrics{
		transactions: records.WithLabelValues("transaction"),
		heartbeats:   records.WithLabelValues("heartbeat"),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_consumer_duplicates_total",
			Help: "Records seen again (same sensor, producer epoch and sequence) and not handed over twice."}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_consumer_sequence_gaps_total",
			Help: "Records missing from a producer's per-partition sequence when a later one arrived (lost, or late: see apiscout_consumer_sequence_late_total)."}),
		late: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_consumer_sequence_late_total",
			Help: "Records that arrived after a later one of their partition sequence (counted in gaps before; gaps minus late is the loss)."}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_consumer_dead_letters_total",
			Help: "Records sent to the dead-letter topic, by reason."}, []string{"reason"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "apiscout_consumer_lag",
			Help: "Records behind the end of each partition this consumer read last."}, []string{"partition"}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_consumer_commits_total",
			Help: "Offset commits after batches were applied."}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "apiscout_consumer_batch_records",
			Help: "Records per batch handed to the analyzer.", Buckets: prometheus.ExponentialBuckets(1, 4, 8)}),
	}
	for _, r := range []string{ReasonBadSchemaHeader, ReasonUndecodableTransaction, ReasonEmptyTransaction, ReasonUndecodablePack, ReasonUndecodableHeartbeat, ReasonUnknownContentType} {
		m.dead.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{records, m.duplicates, m.gaps, m.late, m.dead, m.lag, m.commits, m.batch} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("consume metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Run reads, hands batches to h and commits, until ctx ends (nil) or h,
// the dead-letter topic or a commit fails (the error).
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
		// After the fetch: a rebalance is counted before the new
		// generation's first message can be fetched.
		c.generation += c.r.Stats().Rebalances
		batch, dead := c.decode(msgs)
		if len(dead) > 0 {
			if err := c.dlq.WriteMessages(ctx, dead...); err != nil {
				return fmt.Errorf("dead-letter topic %s: %w", c.cfg.DeadLetterTopic, err)
			}
		}
		if len(batch) > 0 {
			c.m.batch.Observe(float64(len(batch)))
			if err := h.Handle(ctx, batch); err != nil {
				return fmt.Errorf("applying a batch (its offsets stay uncommitted): %w", err)
			}
		}
		if p, ok := h.(Passer); ok {
			c.pass(p, msgs, batch)
		}
		if err := c.commit(ctx, h, msgs); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("commit: %w", err)
		}
		c.updateLag(msgs)
	}
	return nil
}

// pass tells p of the messages that gave the batch no record. decode
// appends records in message order, so one walk over both finds them.
func (c *Consumer) pass(p Passer, msgs []kafka.Message, batch []Record) {
	j := 0
	for _, m := range msgs {
		handed := false
		for j < len(batch) && batch[j].Partition == m.Partition && batch[j].Offset == m.Offset {
			handed = true
			j++
		}
		if !handed {
			p.Passed(m.Partition, m.Offset, c.generation)
		}
	}
}

// commit commits the batch's offsets, or for a Durable handler those its
// durable state covers.
func (c *Consumer) commit(ctx context.Context, h Handler, msgs []kafka.Message) error {
	d, ok := h.(Durable)
	if !ok {
		if err := c.r.CommitMessages(ctx, msgs...); err != nil {
			return err
		}
		c.m.commits.Inc()
		return nil
	}
	var commits []kafka.Message
	for p, off := range d.Durable() {
		if prev, ok := c.committed[p]; ok && off <= prev {
			continue
		}
		// kafka-go commits a message's offset plus one.
		commits = append(commits, kafka.Message{Topic: c.cfg.Topic, Partition: p, Offset: off - 1})
	}
	if len(commits) == 0 {
		return nil
	}
	if err := c.r.CommitMessages(ctx, commits...); err != nil {
		return err
	}
	for _, m := range commits {
		c.committed[m.Partition] = m.Offset + 1
	}
	c.m.commits.Inc()
	return nil
}

// fetch gathers up to MaxBatch messages or what came within MaxWait of
// the first (which it waits up to a second for). Two contexts per batch,
// not one per message: a timer per record costs more than its decoding.
func (c *Consumer) fetch(ctx context.Context) ([]kafka.Message, error) {
	first, cancel := context.WithTimeout(ctx, time.Second)
	m, err := c.r.FetchMessage(first)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, nil
		}
		return nil, err
	}
	msgs := make([]kafka.Message, 1, min(c.opts.MaxBatch, 1024))
	msgs[0] = m
	rest, cancel := context.WithTimeout(ctx, c.opts.MaxWait)
	defer cancel()
	for len(msgs) < c.opts.MaxBatch {
		m, err := c.r.FetchMessage(rest)
		if err != nil {
			if rest.Err() != nil && ctx.Err() == nil {
				break // MaxWait is over: hand over what came
			}
			return msgs, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// updateLag sets each partition's lag from the high-water mark of its
// last message in the batch. A partition that moved to another analyzer
// keeps its last value here.
func (c *Consumer) updateLag(msgs []kafka.Message) {
	touched := make(map[int]struct{}, 8)
	for i := range msgs {
		m := &msgs[i]
		c.lag[m.Partition] = max(0, m.HighWaterMark-m.Offset-1)
		touched[m.Partition] = struct{}{}
	}
	for p := range touched {
		c.m.lag.WithLabelValues(strconv.Itoa(p)).Set(float64(c.lag[p]))
	}
}

// decode turns messages into records, drops duplicates, checks each
// producer's numbering, and collects what cannot be decoded for the
// dead-letter topic.
func (c *Consumer) decode(msgs []kafka.Message) ([]Record, []kafka.Message) {
	batch := make([]Record, 0, len(msgs))
	var dead []kafka.Message
	var nt, nh int
	for i := range msgs {
		m := &msgs[i]
		base := Record{Partition: m.Partition, Offset: m.Offset, Key: string(m.Key), Generation: c.generation}
		if v := header(m, wire.HeaderOrigin); v != nil {
			base.Origin, _ = wire.DecodeOrigin(v) // a bad origin only loses gap checking
		}
		behind, lost := c.sequence(m, base.Origin)
		base.Lost = lost
		keep := func(rec Record, k seqKey) {
			if !c.fresh(k) {
				c.m.duplicates.Inc()
				return
			}
			if behind {
				c.m.late.Inc() // not a re-delivery: it was counted missing before
			}
			batch = append(batch, rec)
			base.Lost = 0 // told once, with the first record
		}
		kill := func(value []byte, contentType, reason string) {
			c.m.dead.WithLabelValues(reason).Inc()
			hs := make([]kafka.Header, 0, len(m.Headers)+2)
			for _, h := range m.Headers {
				if h.Key == wire.HeaderContentType {
					h.Value = []byte(contentType)
				}
				hs = append(hs, h)
			}
			hs = append(hs,
				kafka.Header{Key: HeaderDeadLetterReason, Value: []byte(reason)},
				kafka.Header{Key: HeaderDeadLetterSource, Value: []byte(fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.Offset))})
			dead = append(dead, kafka.Message{Key: m.Key, Value: value, Headers: hs})
		}
		if v := header(m, wire.HeaderSchema); v != nil {
			if n, err := strconv.Atoi(string(v)); err != nil || n < 1 {
				kill(m.Value, string(header(m, wire.HeaderContentType)), ReasonBadSchemaHeader)
				continue
			}
		}
		// The reader gave each message's bytes to us alone: transactions
		// are decoded in place. Each is its own allocation, so a handler
		// that keeps one keeps only its own record's bytes alive.
		switch ct := string(header(m, wire.HeaderContentType)); ct {
		case wire.ContentTypeTransaction, "":
			tx, reason := transaction(m.Value)
			if reason != "" {
				kill(m.Value, ct, reason)
				continue
			}
			rec := base
			rec.Tx = tx
			nt++
			keep(rec, c.txKey(tx, base.Origin))
		case wire.ContentTypeTransactions:
			index := 0
			err := wire.WalkPack(m.Value, func(raw []byte) error {
				tx, reason := transaction(raw)
				if reason != "" {
					// One bad transaction of a pack: it alone is dead.
					kill(raw, wire.ContentTypeTransaction, reason)
					return nil
				}
				rec := base
				rec.Tx, rec.Index = tx, index
				index++
				nt++
				keep(rec, c.txKey(tx, base.Origin))
				return nil
			})
			if err != nil {
				// The pack's framing is broken: what came before the break
				// was handed over; the whole pack goes to the dead letters.
				kill(m.Value, ct, ReasonUndecodablePack)
			}
		case wire.ContentTypeHeartbeat:
			var hb wire.Heartbeat
			if err := wire.DecodeHeartbeat(m.Value, &hb); err != nil {
				kill(m.Value, ct, ReasonUndecodableHeartbeat)
				continue
			}
			rec := base
			rec.Heartbeat = &hb
			nh++
			keep(rec, seqKey{sensor: maphash.String(c.seed, hb.SensorID), epoch: base.Origin.Epoch, seq: hb.Seq, heartbeat: true})
		default:
			kill(m.Value, ct, ReasonUnknownContentType)
		}
	}
	c.m.transactions.Add(float64(nt))
	c.m.heartbeats.Add(float64(nh))
	return batch, dead
}

func (c *Consumer) txKey(tx *wire.Transaction, o wire.Origin) seqKey {
	return seqKey{sensor: maphash.String(c.seed, tx.SensorID), epoch: o.Epoch, seq: tx.Seq}
}

// transaction decodes one transaction in place; reason is not empty when
// it cannot be used.
func transaction(b []byte) (*wire.Transaction, string) {
	tx := new(wire.Transaction)
	if err := wire.DecodeTransactionAliasing(b, tx); err != nil {
		return nil, ReasonUndecodableTransaction
	}
	if tx.RequestStart.IsZero() && tx.Method == "" && tx.Host == "" {
		return nil, ReasonEmptyTransaction
	}
	return tx, ""
}

func header(m *kafka.Message, k string) []byte {
	for i := range m.Headers {
		if m.Headers[i].Key == k {
			return m.Headers[i].Value
		}
	}
	return nil
}

// streamKey is one producer run's numbering of one partition. The epoch
// (the producer's start time in nanoseconds) tells producers apart; the
// sensor id is not known before decoding, and a record that does not
// decode still has its number.
type streamKey struct {
	epoch     uint64
	partition int32
}

// sequence checks a message against its producer's numbering of the
// partition it was read from, counting the records skipped; it reports
// whether the message is behind the numbering (re-delivered, or late).
// The first message seen of a stream only sets the mark: this consumer
// may have joined mid-stream.
func (c *Consumer) sequence(m *kafka.Message, o wire.Origin) (behind bool, lost uint64) {
	if o.PartitionSeq == 0 || int(o.Partition) != m.Partition {
		return false, 0 // no numbering, or the producer's partition choice was overruled
	}
	k := streamKey{epoch: o.Epoch, partition: o.Partition}
	next, ok := c.streams[k]
	switch {
	case !ok:
		if len(c.streams) >= c.opts.MaxStreams {
			c.log.Warn("too many producer streams to track for gaps; starting over", zap.Int("streams", len(c.streams)))
			clear(c.streams)
		}
	case o.PartitionSeq > next:
		lost = o.PartitionSeq - next
		c.m.gaps.Add(float64(lost))
	case o.PartitionSeq < next:
		return true, 0
	}
	c.streams[k] = o.PartitionSeq + 1
	return false, lost
}

// recent remembers the last keys handed over, in a ring: a batch
// re-delivered after a rebalance is within that window.
type recent struct {
	set  map[seqKey]struct{}
	ring []seqKey
	next int
}

// seqKey identifies a record: its sensor (hashed, so the key is small,
// fixed-size and cheap to hash again in the map), its producer's epoch
// and its sequence. Two sensors whose ids collide in 64 bits would also
// need the same epoch (start time in ns) and sequence to be confused.
type seqKey struct {
	sensor    uint64
	epoch     uint64
	seq       uint64
	heartbeat bool
}

// fresh reports whether k was not handed over before, and records it.
// Records without a sequence (seq 0) are always fresh.
func (c *Consumer) fresh(k seqKey) bool {
	if k.seq == 0 {
		return true
	}
	r := &c.seen
	if r.set == nil {
		r.set = make(map[seqKey]struct{}, c.opts.DedupeWindow)
		r.ring = make([]seqKey, c.opts.DedupeWindow)
	}
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

// Lag is the sum of the partitions' lags after the last commit. Not safe
// to call while Run runs.
func (c *Consumer) Lag() int64 {
	var n int64
	for _, l := range c.lag {
		n += l
	}
	return n
}

// Close leaves the group.
func (c *Consumer) Close() error {
	return errors.Join(c.r.Close(), c.dlq.Close())
}
