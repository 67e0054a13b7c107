package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

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
}

func newCollector() *collector {
	return &collector{byKey: map[string]map[int]bool{}, seqs: map[uint64]int{}}
}

func (c *collector) Handle(_ context.Context, batch []consume.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range batch {
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

func TestCorruptRecordGoesToDeadLetters(t *testing.T) {
	addr := kafkatest.Broker(t)
	topic := kafkatest.Topic(t, addr, 1)
	cfg := kcfg(addr, topic)
	kafkatest.CreateTopic(t, addr, cfg.DeadLetterTopic, 1)
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	good := wire.AppendTransaction(nil, tx("s", 1, "a.test"))
	err := w.WriteMessages(context.Background(),
		kafka.Message{Key: []byte("a.test"), Value: []byte{0xff, 0xff, 0xff}, Headers: []kafka.Header{{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeTransaction)}}},
		kafka.Message{Key: []byte("a.test"), Value: good, Headers: []kafka.Header{{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeTransaction)}}},
		kafka.Message{Key: []byte("a.test"), Value: good, Headers: []kafka.Header{{Key: wire.HeaderContentType, Value: []byte("text/x-mystery")}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	col := newCollector()
	consumeUntil(t, cfg, col, func() bool { return col.count() == 1 })
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: cfg.DeadLetterTopic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	reasons := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(reasons) < 2 {
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
	if !reasons["undecodable_transaction"] || !reasons["unknown_content_type"] {
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
	c1, _ := consume.New(cfg, consume.Options{MaxBatch: 300, MaxWait: 100 * time.Millisecond}, zap.NewNop(), nil)
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
