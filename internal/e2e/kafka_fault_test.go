package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

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
	bare, _ := publish.New(noSpoolCfg, "bare", zap.NewNop(), nil)

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
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	err = bare.Write(ctx, []*wire.Transaction{tx("bare", 1, "x")})
	cancel()
	if err == nil {
		t.Error("a producer without spool wrote to a dead broker without error")
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
