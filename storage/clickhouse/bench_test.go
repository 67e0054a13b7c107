package clickhouse

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/storage/storagetest"
	"github.com/apiscout/apiscout/wire"
)

// benchTransactions returns n generated transactions, each with a distinct
// id per round so a benchmark never resends the same rows.
func benchTransactions(b *testing.B, n int) []*wire.Transaction {
	b.Helper()
	d := storagetest.Generate(7, testStart, max(1, n/1000), 1000)
	for len(d.Transactions) < n {
		d.Transactions = append(d.Transactions, d.Transactions...)
	}
	return d.Transactions[:n]
}

func shift(txs []*wire.Transaction, round int) {
	for i, t := range txs {
		t.ConnID = uint64(round)<<32 | uint64(i)
	}
}

// BenchmarkWriteTransactions inserts 100,000 transactions a write into
// the real server (two inserts of 50,000 at once) and reports rows/s end
// to end: rows built, wire-encoded records, compression, the server's
// insert. With lz4 (the default) and without compression.
func BenchmarkWriteTransactions(b *testing.B) {
	for _, comp := range []string{"lz4", "none"} {
		b.Run(comp, func(b *testing.B) {
			const batch = 100000
			s := openTest(b, Options{BatchSize: 50000, Compression: comp})
			txs := benchTransactions(b, batch)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				shift(txs, i)
				b.StartTimer()
				if err := s.WriteTransactions(ctx, txs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "rows/s")
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*batch), "ns/row")
		})
	}
}

// BenchmarkWriteStats inserts per-minute statistics rows.
func BenchmarkWriteStats(b *testing.B) {
	const batch = 50000
	s := openTest(b, Options{BatchSize: batch})
	d := storagetest.Generate(8, testStart, 10, 100)
	// One day of minutes for many endpoints: one partition per insert,
	// as in production, where a minute's rows are written together.
	rows := make([]storage.EndpointMinute, 0, batch)
	for k := 0; len(rows) < batch; k++ {
		for _, m := range d.Stats {
			m.Path = fmt.Sprintf("%s/%d", m.Path, k)
			rows = append(rows, m)
		}
	}
	rows = rows[:batch]
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := s.WriteStats(ctx, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "rows/s")
}

// BenchmarkBuildTransactionRows is the CPU cost per transaction of the
// storage path in the analyzer's process, without the server: id, JSON
// record, column slices.
func BenchmarkBuildTransactionRows(b *testing.B) {
	txs := benchTransactions(b, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := buildTxRows(txs, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(txs)), "ns/tx")
}
