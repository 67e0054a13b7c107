package embedded

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/storage/storagetest"
)

var testStart = time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)

func openTest(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Path: path}, true, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReadBackAndReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "apiscout.db")
	s := openTest(t, path)
	d := storagetest.Generate(1, testStart, 20, 150)
	if err := storagetest.WriteAll(ctx, s, d); err != nil {
		t.Fatal(err)
	}
	storagetest.CheckReadBack(t, ctx, s, d)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart: the same file, migrated again, answers the same, and a
	// replay of everything changes nothing.
	s = openTest(t, path)
	defer s.Close()
	storagetest.CheckReadBack(t, ctx, s, d)
	if err := storagetest.WriteAll(ctx, s, d); err != nil {
		t.Fatal(err)
	}
	storagetest.CheckReadBack(t, ctx, s, d)
}

func TestCheckpointsSurviveReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "apiscout.db")
	s := openTest(t, path)
	storagetest.CheckCheckpoints(t, ctx, s)
	s.Close()
	s = openTest(t, path)
	defer s.Close()
	cp, err := s.LoadCheckpoint(ctx, "svc/b")
	if err != nil || string(cp.Data) != "other" {
		t.Fatalf("after reopen: %q %v", cp.Data, err)
	}
}

func TestSampling(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "a.db"), SampleTransactions: 4}, true, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d := storagetest.Generate(2, testStart, 5, 200)
	want := 0
	for _, tx := range d.Transactions {
		if storage.Sampled(tx.ID(), 4) {
			want++
		}
	}
	if want == 0 || want == len(d.Transactions) {
		t.Fatalf("sampling 1 in 4 of %d kept %d", len(d.Transactions), want)
	}
	if err := s.WriteTransactions(ctx, d.Transactions); err != nil {
		t.Fatal(err)
	}
	got, err := s.Transactions(ctx, storage.TransactionQuery{Limit: storage.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != want {
		t.Errorf("stored %d transactions, want %d", len(got), want)
	}
}

func TestRetentionByPacketTime(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "r.db"), RetentionDays: 1}, true, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := storagetest.Generate(3, testStart, 3, 20)
	recent := storagetest.Generate(4, testStart.Add(48*time.Hour), 3, 20)
	for _, d := range []*storagetest.Data{old, recent} {
		if err := storagetest.WriteAll(ctx, s, d); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Transactions(ctx, storage.TransactionQuery{Limit: storage.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recent.Transactions) {
		t.Errorf("%d transactions kept, want the %d of the last day", len(got), len(recent.Transactions))
	}
	e := old.Endpoints[0]
	if st, err := s.EndpointStats(ctx, e.Service, e.Method, e.Path, time.Time{}, testStart.Add(24*time.Hour)); err != nil || len(st) != 0 {
		t.Errorf("statistics two days old: %d minutes kept (%v)", len(st), err)
	}
	// The inventory is not data to expire.
	if _, total, err := s.Endpoints(ctx, storage.EndpointQuery{}); err != nil || total < len(old.Endpoints) {
		t.Errorf("endpoints after expiry: %d (%v)", total, err)
	}
}

// BenchmarkWriteTransactions is the embedded store's insert rate, for
// apiscout run (one process, no server).
func BenchmarkWriteTransactions(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Path: filepath.Join(b.TempDir(), "b.db")}, true, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	d := storagetest.Generate(9, testStart, 10, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, tx := range d.Transactions {
			tx.ConnID = uint64(i)<<32 | uint64(j)
		}
		if err := s.WriteTransactions(ctx, d.Transactions); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(d.Transactions))/b.Elapsed().Seconds(), "rows/s")
}

// TestConcurrentWritersAndReaders: the analyzer writes while the UI reads;
// nothing fails with "database is locked" and nothing is lost.
func TestConcurrentWritersAndReaders(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "c.db"))
	defer s.Close()
	d := storagetest.Generate(14, testStart, 12, 100)
	const writers = 4
	errs := make(chan error, 2*writers)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			lo, hi := w*len(d.Transactions)/writers, (w+1)*len(d.Transactions)/writers
			for i := lo; i < hi; i += 50 {
				if err := s.WriteTransactions(ctx, d.Transactions[i:min(i+50, hi)]); err != nil {
					errs <- err
					return
				}
			}
			errs <- s.WriteEndpoints(ctx, d.Endpoints)
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, _, err := s.Endpoints(ctx, storage.EndpointQuery{}); err != nil {
					errs <- err
					return
				}
				if _, err := s.Transactions(ctx, storage.TransactionQuery{Limit: 10}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Transactions(ctx, storage.TransactionQuery{Limit: storage.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(d.Transactions) {
		t.Errorf("%d transactions stored, want %d", len(got), len(d.Transactions))
	}
}

// FuzzEndpointQuery sends arbitrary filter text to a real database: the
// values are bound, so no input is an SQL error, and every endpoint
// returned matches the filter.
func FuzzEndpointQuery(f *testing.F) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Path: filepath.Join(f.TempDir(), "f.db")}, true, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	d := storagetest.Generate(16, testStart, 3, 50)
	if err := storagetest.WriteAll(ctx, s, d); err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][3]string{
		{"api.shop.example", "users", "email"}, {"'; DROP TABLE endpoints; --", "%", "any"},
		{"", "_", "\x00"}, {"\"", "charges' OR '1'='1", "card"}, {"", "\u212a", ""}, {"", "É", ""},
	} {
		f.Add(seed[0], seed[1], seed[2], 0)
	}
	f.Fuzz(func(t *testing.T, service, search, sensitive string, offset int) {
		q := storage.EndpointQuery{Service: service, Search: search, Sensitive: sensitive, Offset: offset % 1000}
		got, total, err := s.Endpoints(ctx, q)
		if err != nil {
			t.Fatalf("Endpoints(%+v): %v", q, err)
		}
		want, wantTotal := storagetest.ExpectEndpoints(d, q)
		if total != wantTotal || len(got) != len(want) {
			t.Fatalf("Endpoints(%+v): %d of %d, want %d of %d", q, len(got), total, len(want), wantTotal)
		}
	})
}
