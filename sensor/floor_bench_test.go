package sensor

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/sensor/capture"
	"github.com/apiscout/apiscout/sensor/decode"
	"github.com/apiscout/apiscout/sensor/reassemble"
	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// The floors of make bench: what reading, decoding and reassembling the
// capture named by APISCOUT_BENCH_PCAP cost before any HTTP parsing, and
// the whole pipeline on the same file. Each run reads the whole file once.

func benchFile(b *testing.B) string {
	p := os.Getenv("APISCOUT_BENCH_PCAP")
	if p == "" {
		b.Fatal("APISCOUT_BENCH_PCAP names the capture to measure (make bench sets it)")
	}
	return p
}

// each reads every packet of the file and calls fn.
func each(b *testing.B, fn func(capture.Packet)) (packets, bytes int64) {
	src, err := capture.OpenFiles([]string{benchFile(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	for {
		p, err := src.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			b.Fatal(err)
		}
		packets++
		bytes += int64(p.CI.Length)
		fn(p)
	}
}

func report(b *testing.B, packets, bytes int64) {
	el := b.Elapsed().Seconds() / float64(b.N)
	b.SetBytes(bytes)
	b.ReportMetric(float64(bytes)*8/el/1e9, "Gbps")
	b.ReportMetric(float64(packets)/el, "packets/s")
}

func BenchmarkFloorRead(b *testing.B) {
	b.ReportAllocs()
	var n, sz int64
	for i := 0; i < b.N; i++ {
		n, sz = each(b, func(capture.Packet) {})
	}
	report(b, n, sz)
}

func BenchmarkFloorReadDecode(b *testing.B) {
	b.ReportAllocs()
	var n, sz int64
	for i := 0; i < b.N; i++ {
		d := decode.New(4096)
		var seg decode.Segment
		n, sz = each(b, func(p capture.Packet) { _ = d.Decode(p.Data, p.Link, p.CI.Timestamp, &seg) })
	}
	report(b, n, sz)
}

// nopParser takes the streams and does nothing with them.
type nopParser struct{}

func (nopParser) Data(stream.Dir, []byte, time.Time) {}
func (nopParser) Gap(stream.Dir, int, time.Time)     {}
func (nopParser) Tick(time.Time)                     {}
func (nopParser) Close(string, time.Time)            {}

func BenchmarkFloorReadDecodeReassemble(b *testing.B) {
	b.ReportAllocs()
	var n, sz int64
	for i := 0; i < b.N; i++ {
		d := decode.New(4096)
		r := reassemble.New(reassemble.Options{Midstream: true},
			func(stream.ConnInfo, stream.Emit) stream.Parser { return nopParser{} }, func(*wire.Transaction) {}, nil)
		var seg decode.Segment
		n, sz = each(b, func(p capture.Packet) {
			if d.Decode(p.Data, p.Link, p.CI.Timestamp, &seg) == nil {
				r.Packet(&seg, gopacket.CaptureInfo{Timestamp: p.CI.Timestamp, CaptureLength: p.CI.CaptureLength, Length: p.CI.Length})
			}
		})
		r.Close("shutdown")
	}
	report(b, n, sz)
}

// discard counts records and drops them.
type discard struct{ n int64 }

func (d *discard) Write(_ context.Context, recs []*wire.Transaction) error {
	d.n += int64(len(recs))
	return nil
}
func (d *discard) Close() error { return nil }

func BenchmarkPipeline(b *testing.B) {
	b.ReportAllocs()
	var st Stats
	var txs int64
	for i := 0; i < b.N; i++ {
		cfg := config.Default().Sensor
		cfg.Pcap, cfg.Progress, cfg.RedactKey = []string{benchFile(b)}, false, "bench-key-0123456789"
		d := &discard{}
		p, err := New(cfg, zap.NewNop(), nil, d)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		st, txs = p.Stats(), d.n
	}
	report(b, int64(st.Packets), int64(st.Bytes))
	b.ReportMetric(float64(txs)/(b.Elapsed().Seconds()/float64(b.N)), "tx/s")
}
