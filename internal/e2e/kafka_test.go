package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/consume"
	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/kafkatest"
	"github.com/apiscout/apiscout/sensor/publish"
	"github.com/apiscout/apiscout/wire"
)

func kcfg(addr, topic string) config.KafkaConfig {
	c := config.Default().Kafka
	c.Brokers = []string{addr}
	c.Topic = topic
	c.DeadLetterTopic = topic + "-dlq"
	c.Group = topic + "-group"
	c.BatchTimeout = time.Millisecond
	return c
}

func tx(sensor string, seq uint64, host string) *wire.Transaction {
	start := time.Unix(1700000000, int64(seq)).UTC()
	return &wire.Transaction{SensorID: sensor, Seq: seq, ConnID: seq, Host: host, Method: "GET",
		Path: fmt.Sprintf("/items/%d", seq), Version: "HTTP/1.1", Status: 200, RequestStart: start, RequestEnd: start,
		Client: netip.MustParseAddrPort("10.0.0.1:40000"), Server: netip.MustParseAddrPort("10.0.0.2:80"),
		ResponseBody: []byte(`{"id":1,"name":"widget","price":12.5}`), ResponseBodyLen: 37}
}

// collector is a Handler that keeps everything, optionally failing.
type collector struct {
	mu      sync.Mutex
	byKey   map[string]map[int]bool // host -> partitions seen
	seqs    map[uint64]int
	hbs     int
	applied int
	lost    uint64 // Record.Lost summed
}

func newCollector() *collector {
	return &collector{byKey: map[string]map[int]bool{}, seqs: map[uint64]int{}}
}

func (c *collector) Handle(_ context.Context, batch []consume.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range batch {
		c.lost += r.Lost
		if r.Heartbeat != nil {
			c.hbs++
			continue
		}
		c.applied++
		c.seqs[r.Tx.Seq]++
		if c.byKey[r.Tx.Host] == nil {
			c.byKey[r.Tx.Host] = map[int]bool{}
		}
		c.byKey[r.Tx.Host][r.Partition] = true
	}
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seqs)
}

func consumeUntil(t *testing.T, cfg config.KafkaConfig, h consume.Handler, done func() bool) {
	t.Helper()
	c, err := consume.New(cfg, consume.Options{MaxWait: 100 * time.Millisecond}, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil && !done() {
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
	}()
	if err := c.Run(ctx, h); err != nil {
		t.Fatal(err)
	}
	if !done() {
		t.Fatal("timed out waiting for records")
	}
}

func TestEveryRecordArrivesKeyedByService(t *testing.T) {
	addr := kafkatest.Broker(t)
	topic := kafkatest.Topic(t, addr, 8)
	cfg := kcfg(addr, topic)
	p, err := publish.New(cfg, "s1", zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.RequiredAcks() != kafka.RequireAll {
		t.Fatalf("producer must wait for all in-sync replicas, asks for %v", p.RequiredAcks())
	}
	const n = 3000
	var batch []*wire.Transaction
	for i := 1; i <= n; i++ {
		batch = append(batch, tx("s1", uint64(i), fmt.Sprintf("svc%d.test", i%7)))
		if len(batch) == 500 {
			if err := p.Write(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
	p.WriteHeartbeat(context.Background(), &wire.Heartbeat{SensorID: "s1", Seq: 1, Transactions: n})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	col := newCollector()
	consumeUntil(t, cfg, col, func() bool { return col.count() == n })
	for host, parts := range col.byKey {
		if len(parts) != 1 {
			t.Errorf("service %s spread over partitions %v: one analyzer must own a service", host, parts)
		}
	}
	if col.hbs != 1 {
		t.Errorf("%d heartbeats", col.hbs)
	}
}

// deadLetterSetup makes a one-partition topic with its dead-letter topic
// and a writer that puts records on it as they are (the tests write
// records no sensor would).
func deadLetterSetup(t *testing.T) (string, config.KafkaConfig, *kafka.Writer) {
	t.Helper()
	addr := kafkatest.Broker(t)
	topic := kafkatest.Topic(t, addr, 1)
	cfg := kcfg(addr, topic)
	kafkatest.CreateTopic(t, addr, cfg.DeadLetterTopic, 1)
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, RequiredAcks: kafka.RequireAll}
	t.Cleanup(func() { w.Close() })
	return addr, cfg, w
}

// contentType is the header that says what a record holds.
func contentType(v string) []kafka.Header {
	return []kafka.Header{{Key: wire.HeaderContentType, Value: []byte(v)}}
}

func TestCorruptRecordGoesToDeadLetters(t *testing.T) {
	addr, cfg, w := deadLetterSetup(t)
	good := wire.AppendTransaction(nil, tx("s", 1, "a.test"))
	// A pack with a good transaction, a bad one and another good one: the
	// bad one alone is dead. A pack cut in the middle is dead whole.
	pack := wire.AppendPacked(nil, tx("s", 2, "a.test"))
	pack = append(pack, 1<<3|2, 3, 0xff, 0xff, 0xff)
	pack = wire.AppendPacked(pack, tx("s", 3, "a.test"))
	cut := wire.AppendPacked(nil, tx("s", 4, "a.test"))
	cut = cut[:len(cut)-4]
	writeRetry(t, w,
		kafka.Message{Key: []byte("a.test"), Value: []byte{0xff, 0xff, 0xff}, Headers: contentType(wire.ContentTypeTransaction)},
		kafka.Message{Key: []byte("a.test"), Value: good, Headers: contentType(wire.ContentTypeTransaction)},
		kafka.Message{Key: []byte("a.test"), Value: good, Headers: contentType("text/x-mystery")},
		kafka.Message{Key: []byte("a.test"), Value: pack, Headers: contentType(wire.ContentTypeTransactions)},
		kafka.Message{Key: []byte("a.test"), Value: cut, Headers: contentType(wire.ContentTypeTransactions)},
	)
	col := newCollector()
	consumeUntil(t, cfg, col, func() bool { return col.count() == 3 })
	if seqs := col.seqsCopy(); seqs[1] != 1 || seqs[2] != 1 || seqs[3] != 1 || len(seqs) != 3 {
		t.Fatalf("applied %v, want sequences 1, 2 and 3 once each", seqs)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: cfg.DeadLetterTopic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	reasons := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(reasons) < 3 {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("dead letters: %v (got %v)", err, reasons)
		}
		for _, h := range m.Headers {
			if h.Key == consume.HeaderDeadLetterReason {
				reasons[string(h.Value)] = true
			}
		}
	}
	if !reasons[consume.ReasonUndecodableTransaction] || !reasons[consume.ReasonUnknownContentType] || !reasons[consume.ReasonUndecodablePack] {
		t.Fatalf("reasons %v", reasons)
	}
}

// An analyzer that stops without committing a batch gets it again; the
// records it had applied are recognised by their ids.
func TestConsumerRestartLosesNothing(t *testing.T) {
	addr := kafkatest.Broker(t)
	topic := kafkatest.Topic(t, addr, 4)
	cfg := kcfg(addr, topic)
	p, _ := publish.New(cfg, "s2", zap.NewNop(), nil)
	var all []*wire.Transaction
	for i := 1; i <= 2000; i++ {
		all = append(all, tx("s2", uint64(i), fmt.Sprintf("h%d", i%5)))
	}
	if err := p.Write(context.Background(), all); err != nil {
		t.Fatal(err)
	}
	p.Close()
	// First analyzer: applies some batches, then "crashes" on one.
	first := &failing{collector: newCollector(), failAfter: 2}
	c1, _ := consume.New(cfg, consume.Options{MaxBatch: 1, MaxWait: 100 * time.Millisecond}, zap.NewNop(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := c1.Run(ctx, first)
	cancel()
	c1.Close()
	if err == nil {
		t.Fatal("the failing handler's error was lost")
	}
	// Second analyzer in the same group: everything not committed comes again.
	second := newCollector()
	consumeUntil(t, cfg, second, func() bool {
		first.mu.Lock()
		defer first.mu.Unlock()
		union := map[uint64]bool{}
		for s := range first.committed {
			union[s] = true
		}
		for s := range second.seqsCopy() {
			union[s] = true
		}
		return len(union) == 2000
	})
	// Nothing the first one committed is delivered again.
	for s := range second.seqsCopy() {
		if first.committed[s] {
			t.Fatalf("record %d was committed by the first analyzer and delivered again", s)
		}
	}
}

func (c *collector) seqsCopy() map[uint64]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[uint64]int, len(c.seqs))
	for k, v := range c.seqs {
		out[k] = v
	}
	return out
}

// failing applies failAfter batches, then fails every later one.
type failing struct {
	*collector
	failAfter int
	batches   int
	committed map[uint64]bool
}

func (f *failing) Handle(ctx context.Context, batch []consume.Record) error {
	f.batches++
	if f.batches > f.failAfter {
		return fmt.Errorf("storage down")
	}
	f.mu.Lock()
	if f.committed == nil {
		f.committed = map[uint64]bool{}
	}
	for _, r := range batch {
		if r.Tx != nil {
			f.committed[r.Tx.Seq] = true
		}
	}
	f.mu.Unlock()
	return f.collector.Handle(ctx, batch)
}

func TestTwoAnalyzersSplitPartitions(t *testing.T) {
	addr := kafkatest.Broker(t)
	topic := kafkatest.Topic(t, addr, 8)
	cfg := kcfg(addr, topic)
	a, b := newCollector(), newCollector()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, h := range []*collector{a, b} {
		c, err := consume.New(cfg, consume.Options{MaxWait: 100 * time.Millisecond}, zap.NewNop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func(h *collector) {
			defer wg.Done()
			defer c.Close()
			c.Run(ctx, h)
		}(h)
	}
	time.Sleep(3 * time.Second) // let the group settle with both members
	p, _ := publish.New(cfg, "s3", zap.NewNop(), nil)
	var recs []*wire.Transaction
	for i := 1; i <= 4000; i++ {
		recs = append(recs, tx("s3", uint64(i), fmt.Sprintf("svc%02d.test", i%40)))
	}
	p.Write(context.Background(), recs)
	p.Close()
	deadline := time.Now().Add(45 * time.Second)
	for a.count()+b.count() < 4000 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if a.count()+b.count() != 4000 {
		t.Fatalf("%d + %d records, want 4000", a.count(), b.count())
	}
	if a.count() == 0 || b.count() == 0 {
		t.Fatalf("partitions not split: %d / %d", a.count(), b.count())
	}
	for host := range a.byKey {
		if _, both := b.byKey[host]; both {
			t.Errorf("service %s reached both analyzers", host)
		}
	}
}

// A restarted sensor numbers its records from 1 again: its new producer's
// epoch keeps them apart from the old run's, so none is taken for a
// duplicate. Within one run, a re-sent record is.
func TestRestartedSensorIsNotDeduplicated(t *testing.T) {
	addr := kafkatest.Broker(t)
	topic := kafkatest.Topic(t, addr, 2)
	cfg := kcfg(addr, topic)
	for run := 0; run < 2; run++ {
		p, err := publish.New(cfg, "s5", zap.NewNop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var recs []*wire.Transaction
		for i := 1; i <= 100; i++ {
			r := tx("s5", uint64(i), "svc.test")
			r.Path = fmt.Sprintf("/run%d/%d", run, i)
			recs = append(recs, r)
		}
		recs = append(recs, recs[99]) // the same record twice in one run
		if err := p.Write(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // a distinct epoch even on a coarse clock
	}
	paths := map[string]int{}
	col := &pathCollector{paths: paths}
	consumeUntil(t, cfg, col, func() bool { return col.len() >= 200 })
	time.Sleep(300 * time.Millisecond)
	if col.len() != 200 || col.total() != 200 {
		t.Fatalf("%d distinct, %d applied; want 200 and 200 (two runs of 100, one duplicate each dropped)", col.len(), col.total())
	}
}

type pathCollector struct {
	mu    sync.Mutex
	paths map[string]int
	n     int
}

func (c *pathCollector) Handle(_ context.Context, batch []consume.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range batch {
		if r.Tx != nil {
			c.paths[r.Tx.Path]++
			c.n++
		}
	}
	return nil
}

func (c *pathCollector) len() int   { c.mu.Lock(); defer c.mu.Unlock(); return len(c.paths) }
func (c *pathCollector) total() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// Gaps in a producer's per-partition numbering are counted as missing
// records, and a record that arrives after a later one as late.
func TestSequenceGapsCounted(t *testing.T) {
	addr := kafkatest.Broker(t)
	topic := kafkatest.Topic(t, addr, 1)
	cfg := kcfg(addr, topic)
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	var msgs []kafka.Message
	// Sequences 1, 2, 6 (3 to 5 missing), 4 (late), 7; and another
	// producer (epoch) starting at 10, which is no gap.
	for i, o := range []wire.Origin{{Epoch: 5, PartitionSeq: 1}, {Epoch: 5, PartitionSeq: 2}, {Epoch: 5, PartitionSeq: 6},
		{Epoch: 5, PartitionSeq: 4}, {Epoch: 5, PartitionSeq: 7}, {Epoch: 9, PartitionSeq: 10}} {
		msgs = append(msgs, kafka.Message{Key: []byte("g.test"), Value: wire.AppendTransaction(nil, tx("s6", uint64(i+1), "g.test")),
			Headers: []kafka.Header{{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeTransaction)},
				{Key: wire.HeaderOrigin, Value: wire.AppendOrigin(nil, o)}}})
	}
	writeRetry(t, w, msgs...)
	reg := prometheus.NewRegistry()
	c, err := consume.New(cfg, consume.Options{MaxWait: 100 * time.Millisecond}, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	col := newCollector()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil && col.count() < len(msgs) {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
	}()
	if err := c.Run(ctx, col); err != nil {
		t.Fatal(err)
	}
	if col.count() != len(msgs) {
		t.Fatalf("%d of %d records", col.count(), len(msgs))
	}
	if g := gauge(t, reg, "apiscout_consumer_sequence_gaps_total"); g != 3 {
		t.Errorf("%v records counted missing, want 3", g)
	}
	if l := gauge(t, reg, "apiscout_consumer_sequence_late_total"); l != 1 {
		t.Errorf("%v records counted late, want 1", l)
	}
	if col.lost != 3 {
		t.Errorf("the handler was told of %d lost records, want 3", col.lost)
	}
	if l := c.Lag(); l != 0 {
		t.Errorf("lag %d after reading everything", l)
	}
}

// gauge reads an unlabelled counter or gauge from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// writeRetry writes with a plain kafka-go writer, retrying while the
// broker's metadata for a topic just created catches up.
func writeRetry(t *testing.T, w *kafka.Writer, msgs ...kafka.Message) {
	t.Helper()
	var err error
	for i := 0; i < 50; i++ {
		if err = w.WriteMessages(context.Background(), msgs...); err == nil || !errors.Is(err, kafka.UnknownTopicOrPartition) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// A new group starts at the earliest offset (every other test here reads
// what was written before its consumer existed); with
// kafka.start_offset=latest it reads only what comes after it joined.
func TestStartOffsetLatest(t *testing.T) {
	addr := kafkatest.Broker(t)
	topic := kafkatest.Topic(t, addr, 2)
	cfg := kcfg(addr, topic)
	cfg.StartOffset = "latest"
	write := func(from, to int) {
		p, err := publish.New(cfg, "s8", zap.NewNop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var recs []*wire.Transaction
		for i := from; i <= to; i++ {
			recs = append(recs, tx("s8", uint64(i), fmt.Sprintf("svc%d.test", i%2)))
		}
		if err := p.Write(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write(1, 100)
	c, err := consume.New(cfg, consume.Options{MaxWait: 100 * time.Millisecond}, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	col := newCollector()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, col) }()
	// Joining takes a moment; records written before the group has its
	// offsets are still "before" it. Write in rounds until one arrives.
	next := 101
	for col.count() == 0 && ctx.Err() == nil {
		write(next, next+9)
		next += 10
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	seqs := col.seqsCopy()
	if len(seqs) == 0 {
		t.Fatal("nothing read")
	}
	for s := range seqs {
		if s <= 100 {
			t.Fatalf("record %d, written before the group existed, was read with start_offset=latest", s)
		}
	}
}
