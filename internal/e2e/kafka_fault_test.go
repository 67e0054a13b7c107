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
// again: the sensor spools meanwhile, replays in order, and nothing is
// lost. A producer without a spool reports the loss instead of hiding it.
func TestBrokerKilledMidStream(t *testing.T) {
	kafkatest.Broker(t) // the suite's broker must be up too; this test runs its own
	b := kafkatest.StartPrivate(t, 19192)
	topic := kafkatest.Topic(t, b.Addr, 4)
	cfg := kcfg(b.Addr, topic)
	cfg.SpoolDir = filepath.Join(t.TempDir(), "spool")
	cfg.MaxAttempts = 2
	p, err := publish.New(cfg, "s4", zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	noSpoolCfg := cfg
	noSpoolCfg.SpoolDir = ""
	reg := prometheus.NewRegistry()
	bare, err := publish.New(noSpoolCfg, "bare", zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}

	const perBatch, batches = 200, 10
	seq := uint64(0)
	write := func() {
		var recs []*wire.Transaction
		for i := 0; i < perBatch; i++ {
			seq++
			recs = append(recs, tx("s4", seq, fmt.Sprintf("svc%d", seq%6)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := p.Write(ctx, recs); err != nil {
			t.Fatalf("write with a spool must not lose records: %v", err)
		}
	}
	for i := 0; i < batches/2; i++ {
		write()
	}
	b.Kill()
	for i := 0; i < batches/2; i++ {
		write()
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
	if got := counterValue(t, reg, "apiscout_kafka_records_dropped_total", "reason", publish.DropNoSpool); got != 1 {
		t.Errorf("%v records counted as dropped, want 1", got)
	}
	bare.Close()
	b.Start()
	fctx, fcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer fcancel()
	if err := p.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	p.Close()
	col := newCollector()
	consumeUntil(t, cfg, col, func() bool { return col.count() >= int(seq) })
	if col.count() != int(seq) {
		t.Fatalf("%d of %d records arrived", col.count(), seq)
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
