package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/consume"
	"github.com/apiscout/apiscout/internal/kafkatest"
	"github.com/apiscout/apiscout/sensor/publish"
	"github.com/apiscout/apiscout/wire"
)

// counter is a Handler that only counts.
type counter struct{ n atomic.Int64 }

func (c *counter) Handle(_ context.Context, b []consume.Record) error {
	c.n.Add(int64(len(b)))
	return nil
}

// realistic is a typical API call of about 1 KB encoded: browser-ish
// request headers, JSON request and response bodies, spread over 50
// services and many paths.
func realistic(seq uint64) *wire.Transaction {
	start := time.Unix(1_772_366_400, int64(seq)*1000).UTC()
	svc := seq % 50
	return &wire.Transaction{
		SensorID: "bench", Seq: seq, ConnID: seq / 4, Index: uint32(seq % 4),
		Client:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 12, byte(seq >> 8), byte(seq)}), uint16(30000+seq%30000)),
		Server:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 13, 0, byte(svc)}), 8443),
		Protocol: "http/1.1", RequestStart: start, RequestEnd: start.Add(120 * time.Microsecond),
		ResponseStart: start.Add(3 * time.Millisecond), ResponseEnd: start.Add(3200 * time.Microsecond),
		Method: "POST", Host: fmt.Sprintf("orders-%02d.internal.example.com", svc),
		Path: fmt.Sprintf("/api/v2/customers/%d/orders", 80000+seq%5000), Query: "expand=items&currency=EUR",
		Version: "HTTP/1.1", Status: 201, Reason: "Created",
		RequestHeaders: []wire.Header{
			{Name: "Host", Value: fmt.Sprintf("orders-%02d.internal.example.com", svc)}, {Name: "User-Agent", Value: "checkout-service/4.12.1"},
			{Name: "Accept", Value: "application/json"}, {Name: "Content-Type", Value: "application/json"},
			{Name: "Content-Length", Value: "212"}, {Name: "Authorization", Value: "Bearer [redacted]"},
			{Name: "X-Request-Id", Value: fmt.Sprintf("4f6c1f0e-8a7b-4c11-9d54-%012x", seq)},
			{Name: "Traceparent", Value: fmt.Sprintf("00-4bf92f3577b34da6a3ce929d%06x-00f067aa0ba902b7-01", seq&0xffffff)},
		},
		ResponseHeaders: []wire.Header{
			{Name: "Content-Type", Value: "application/json; charset=utf-8"}, {Name: "Content-Length", Value: "287"},
			{Name: "Date", Value: "Sun, 01 Mar 2026 12:00:00 GMT"}, {Name: "Cache-Control", Value: "no-store"},
		},
		RequestBody:        []byte(fmt.Sprintf(`{"items":[{"sku":"SKU-%03d-BLK","qty":2,"price":{"amount":"19.90","currency":"EUR"}},{"sku":"SKU-044-RED","qty":1,"price":{"amount":"7.50","currency":"EUR"}}],"shipping":{"method":"standard","country":"DE"}}`, seq%1000)),
		ResponseBody:       []byte(fmt.Sprintf(`{"id":%d,"customer":83421,"status":"created","total":{"amount":"47.30","currency":"EUR"},"items":[{"sku":"SKU-118-BLK","qty":2},{"sku":"SKU-044-RED","qty":1}],"created_at":"2026-03-01T12:00:00.003Z","links":{"self":"/api/v2/orders/%d"}}`, seq, seq)),
		RequestBodyWireLen: 212, RequestBodyLen: 212, ResponseBodyWireLen: 287, ResponseBodyLen: 287,
		RequestContentType: "application/json", ResponseContentType: "application/json",
	}
}

// BenchmarkKafkaEndToEnd streams b.N realistic transactions from the
// sensor's producer, in the sensor's 4096-record output batches, through
// the real broker (acks from all in-sync replicas) to an analyzer's
// consumer running at the same time; it ends when the consumer has handed
// every record to its handler. records/s and MB/s are end to end, on
// whatever cores the broker, producer and consumer share.
func BenchmarkKafkaEndToEnd(b *testing.B) {
	for _, codec := range []string{"lz4", "zstd", "snappy", "none"} {
		b.Run(codec, func(b *testing.B) { benchEndToEnd(b, codec) })
	}
}

func benchEndToEnd(b *testing.B, codec string) {
	addr := kafkatest.Broker(b)
	topic := kafkatest.Topic(b, addr, 8)
	cfg := kcfg(addr, topic)
	cfg.Compression = codec
	const batch = 4096
	// The records are built before the clock starts (the sensor's work of
	// making them is not the transport's), 4 batches of them, renumbered
	// and sent again in turn: Write has encoded a batch when it returns.
	// Holding b.N records instead would make the benchmark measure the
	// garbage collector scanning them.
	recs := make([]*wire.Transaction, 4*batch)
	size := 0
	for i := range recs {
		recs[i] = realistic(uint64(i + 1))
		size += len(wire.AppendTransaction(nil, recs[i]))
	}
	b.SetBytes(int64(size / len(recs)))

	c, err := consume.New(cfg, consume.Options{MaxBatch: 10000, MaxWait: 20 * time.Millisecond}, zap.NewNop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cnt := &counter{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx, cnt) }()
	p, err := publish.New(cfg, "bench", zap.NewNop(), nil)
	if err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	brokerPID := brokerPID()
	cpu0, broker0 := processCPU(), pidCPU(brokerPID)
	start := time.Now()
	for sent := 0; sent < b.N; sent += batch {
		off := sent % len(recs)
		out := recs[off : off+min(batch, b.N-sent)]
		for i, r := range out {
			r.Seq = uint64(sent + i + 1) // unique, or the consumer rightly drops them
		}
		if err := p.Write(ctx, out); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	produced := time.Since(start)
	for cnt.n.Load() < int64(b.N) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	total := time.Since(start)
	cpu, broker := processCPU()-cpu0, pidCPU(brokerPID)-broker0
	b.StopTimer()
	cancel()
	if err := <-ran; err != nil {
		b.Fatal(err)
	}
	p.Close()
	if n := cnt.n.Load(); n != int64(b.N) {
		b.Fatalf("%d of %d records consumed", n, b.N)
	}
	b.ReportMetric(float64(b.N)/produced.Seconds(), "acked/s")
	b.ReportMetric(float64(b.N)/total.Seconds(), "records/s")
	// CPU per record, ours and the broker's: on a machine shared with
	// other work the rates above count the waits for a core as well; this
	// does not, and 2 s of CPU per second is what 2 cores give.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "client-cpu-µs/rec")
	if brokerPID > 0 {
		b.ReportMetric(float64(broker.Microseconds())/float64(b.N), "broker-cpu-µs/rec")
		b.ReportMetric(2e6/(float64((cpu+broker).Microseconds())/float64(b.N)), "records/s-on-2-cores")
	}
}

// processCPU is this process's CPU time, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// brokerPID is the pid of the broker deploy/dev/kafka.sh started, 0 when
// its pid file is not where the script puts it by default.
func brokerPID() int {
	dir := os.Getenv("KAFKA_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "apiscout-kafka")
	}
	b, err := os.ReadFile(filepath.Join(dir, "kafka.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// pidCPU reads a process's CPU time from /proc (utime and stime, in
// clock ticks of 10 ms).
func pidCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}
