package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

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
	col := newCollector()
	consumeUntil(t, cfg, col, func() bool { return col.count() >= int(seq) })
	if col.count() != int(seq) {
		t.Fatalf("%d of %d records arrived", col.count(), seq)
	}
	for s, n := range col.seqsCopy() {
		if n != 1 {
			t.Fatalf("record %d handed over %d times", s, n)
		}
	}
	for host, parts := range col.byKey {
		if len(parts) != 1 {
			t.Errorf("service %s spread over partitions %v after the replay", host, parts)
		}
	}
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
