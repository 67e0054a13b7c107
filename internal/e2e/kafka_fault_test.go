package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/kafkatest"
	"github.com/apiscout/apiscout/sensor/publish"
	"github.com/apiscout/apiscout/wire"
)

// The broker is killed with SIGKILL in the middle of a stream and started
// again later: the sensor keeps writing and spools meanwhile, the sensor
// itself restarts during the outage and resumes its spool, everything is
// replayed once the broker is back, and every record arrives. A producer
// without a spool reports the loss instead of hiding it.
func TestBrokerKilledMidStream(t *testing.T) {
	kafkatest.Broker(t) // the suite's broker must be up too; this test runs its own
	b := kafkatest.StartPrivate(t, 19192)
	topic := kafkatest.Topic(t, b.Addr, 8)
	cfg := kcfg(b.Addr, topic)
	cfg.SpoolDir = filepath.Join(t.TempDir(), "spool")
	cfg.MaxAttempts = 2
	reg := prometheus.NewRegistry()
	p, err := publish.New(cfg, "s4", zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	noSpoolCfg := cfg
	noSpoolCfg.SpoolDir = ""
	bareReg := prometheus.NewRegistry()
	bare, err := publish.New(noSpoolCfg, "bare", zap.NewNop(), bareReg)
	if err != nil {
		t.Fatal(err)
	}

	const perBatch = 500
	seq := uint64(0)
	write := func(p *publish.Producer, batches int) {
		for i := 0; i < batches; i++ {
			var recs []*wire.Transaction
			for j := 0; j < perBatch; j++ {
				seq++
				recs = append(recs, tx("s4", seq, fmt.Sprintf("svc%d", seq%6)))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			if err := p.Write(ctx, recs); err != nil {
				t.Fatalf("write with a spool must not lose records: %v", err)
			}
			cancel()
		}
	}
	write(p, 10)
	b.Kill() // records of the last writes are still in flight
	write(p, 10)
	if err := p.Close(); err != nil { // the sensor stops during the outage
		t.Fatalf("close with a spool: %v", err)
	}
	if got := counterValue(t, reg, "apiscout_kafka_records_dropped_total", "reason", publish.DropSpoolFull); got != 0 {
		t.Fatalf("%v records dropped", got)
	}
	t.Logf("%v Kafka records spooled", gauge(t, reg, "apiscout_spool_records"))
	if n := gauge(t, reg, "apiscout_spool_records"); n < 10*6 { // 10 writes of 6 services during the outage
		t.Fatalf("%v Kafka records in the spool after the outage: the writes during it were not spooled", n)
	}

	// Without a spool the loss is reported: by Flush, and counted.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = bare.Write(ctx, []*wire.Transaction{tx("bare", 1, "x")})
	if err == nil {
		err = bare.Flush(ctx)
	}
	cancel()
	if err == nil {
		t.Error("a producer without spool wrote to a dead broker without error")
	}
	if got := counterValue(t, bareReg, "apiscout_kafka_records_dropped_total", "reason", publish.DropNoSpool); got != 1 {
		t.Errorf("%v records counted as dropped, want 1", got)
	}
	bare.Close()

	// The restarted sensor finds the spool, queues behind it, and replays
	// it when the broker is back.
	p, err = publish.New(cfg, "s4", zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	write(p, 4)
	b.Start()
	fctx, fcancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer fcancel()
	if err := p.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	col := arriveOnce(t, cfg, seq)
	for host, parts := range col.byKey {
		if len(parts) != 1 {
			t.Errorf("service %s spread over partitions %v after the replay", host, parts)
		}
	}
}

// arriveOnce consumes the topic until transactions 1 to n have arrived and
// fails unless each arrived exactly once.
func arriveOnce(t *testing.T, cfg config.KafkaConfig, n uint64) *collector {
	t.Helper()
	col := newCollector()
	consumeUntil(t, cfg, col, func() bool { return col.count() >= int(n) })
	if col.count() != int(n) {
		t.Fatalf("%d of %d transactions arrived", col.count(), n)
	}
	for s, k := range col.seqsCopy() {
		if k != 1 {
			t.Fatalf("transaction %d handed over %d times", s, k)
		}
	}
	return col
}

// counterValue reads a counter from reg by its name and one label.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestBrokerUnreachable freezes the broker (SIGSTOP: connections stay open
// and go unanswered, as across a network partition, where a killed broker
// refuses them at once) while the sensor goes on writing at a steady 500
// transactions/s for APISCOUT_OUTAGE (default 20s; README "Faults" has a
// 10-minute run), then thaws it. Writes never wait for Kafka, the spool
// takes what Kafka does not acknowledge, and after the outage every record
// arrives, once. The short default run bounds the bytes in flight to
// 1 MiB so that the spool takes over within seconds; with APISCOUT_OUTAGE
// the producer runs on its defaults (64 MiB in flight).
func TestBrokerUnreachable(t *testing.T) {
	outage, inflight := 20*time.Second, int64(1<<20)
	if v := os.Getenv("APISCOUT_OUTAGE"); v != "" {
		inflight = 0
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("APISCOUT_OUTAGE=%q: want a duration such as 10m", v)
		}
		outage = d
	}
	kafkatest.Broker(t) // the suite's broker must be up too; this test runs its own
	b := kafkatest.StartPrivate(t, 19196)
	topic := kafkatest.Topic(t, b.Addr, 8)
	cfg := kcfg(b.Addr, topic)
	cfg.SpoolDir = filepath.Join(t.TempDir(), "spool")
	if inflight > 0 {
		cfg.MaxInflightBytes = inflight
	}
	reg := prometheus.NewRegistry()
	p, err := publish.New(cfg, "s5", zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	const perWrite, every = 50, 100 * time.Millisecond
	seq := uint64(0)
	// write goes on for d and returns the longest a Write took.
	write := func(d time.Duration) (longest time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(every) {
			recs := make([]*wire.Transaction, 0, perWrite)
			for j := 0; j < perWrite; j++ {
				seq++
				recs = append(recs, tx("s5", seq, fmt.Sprintf("svc%d", seq%6)))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			start := time.Now()
			err := p.Write(ctx, recs)
			cancel()
			if err != nil {
				t.Fatalf("write with a spool must not lose records: %v", err)
			}
			longest = max(longest, time.Since(start))
		}
		return longest
	}
	write(2 * time.Second)
	b.Freeze()
	frozenAt := seq
	longest := write(outage)
	spooled := gauge(t, reg, "apiscout_spool_records")
	b.Thaw()
	thawed := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	drained := time.Since(thawed)
	write(2 * time.Second) // and the sensor carries on
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{publish.DropSpoolFull, publish.DropSpoolError, publish.DropClosed} {
		if n := counterValue(t, reg, "apiscout_kafka_records_dropped_total", "reason", reason); n != 0 {
			t.Errorf("%v records dropped (%s)", n, reason)
		}
	}
	if spooled == 0 {
		t.Errorf("nothing in the spool after a %v outage: the test did not exercise it", outage)
	}
	arriveOnce(t, cfg, seq)
	t.Logf("max_inflight_bytes %d, outage %v: %d transactions written during it (%d in all), %v Kafka records in the spool at its end, longest Write %v, spool drained %v after the thaw; all %d arrived once",
		cfg.MaxInflightBytes, outage, seq-frozenAt, seq, spooled, longest.Round(time.Millisecond), drained.Round(time.Millisecond), seq)
}
