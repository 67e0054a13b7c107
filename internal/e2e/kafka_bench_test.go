package e2e

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/consume"
	"github.com/apiscout/apiscout/internal/kafkatest"
	"github.com/apiscout/apiscout/sensor/publish"
	"github.com/apiscout/apiscout/wire"
)

// counter is a Handler that only counts.
type counter struct{ n int }

func (c *counter) Handle(_ context.Context, b []consume.Record) error { c.n += len(b); return nil }

// BenchmarkKafkaEndToEnd sends b.N realistic transactions (about 1 KB
// encoded) from the sensor's producer through the real broker to the
// analyzer's consumer; records/s is the end-to-end rate.
func BenchmarkKafkaEndToEnd(b *testing.B) {
	addr := kafkatest.Broker(b)
	topic := kafkatest.Topic(b, addr, 8)
	cfg := kcfg(addr, topic)
	cfg.Compression = "lz4"
	p, err := publish.New(cfg, "bench", zap.NewNop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]*wire.Transaction, 4096)
	size := 0
	for i := range recs {
		t := tx("bench", uint64(i+1), fmt.Sprintf("svc%d.example", i%50))
		t.RequestHeaders = []wire.Header{{Name: "Host", Value: t.Host}, {Name: "User-Agent", Value: "okhttp/4.12"},
			{Name: "Authorization", Value: "Bearer fp:0123456789abcdef"}, {Name: "Accept", Value: "application/json"}}
		t.ResponseHeaders = []wire.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Cache-Control", Value: "no-store"}}
		t.ResponseBody = bytes.Repeat([]byte(`{"id":123,"name":"widget"},`), 28)
		size += len(wire.AppendTransaction(nil, t))
		recs[i] = t
	}
	b.SetBytes(int64(size / len(recs)))
	b.ResetTimer()
	start := time.Now()
	seq := uint64(0)
	for sent := 0; sent < b.N; sent += len(recs) {
		n := min(len(recs), b.N-sent)
		for _, r := range recs[:n] {
			seq++
			r.Seq = seq // unique, or the consumer rightly drops them as duplicates
		}
		if err := p.Write(context.Background(), recs[:n]); err != nil {
			b.Fatal(err)
		}
	}
	p.Close()
	produced := time.Since(start)
	c, _ := consume.New(cfg, consume.Options{MaxBatch: 10000, MaxWait: 50 * time.Millisecond}, zap.NewNop(), nil)
	defer c.Close()
	cnt := &counter{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	go func() {
		for cnt.n < b.N && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
	}()
	c.Run(ctx, cnt)
	b.StopTimer()
	if cnt.n < b.N {
		b.Fatalf("%d of %d records consumed", cnt.n, b.N)
	}
	total := time.Since(start)
	b.ReportMetric(float64(b.N)/produced.Seconds(), "produced/s")
	b.ReportMetric(float64(b.N)/total.Seconds(), "end-to-end/s")
}
