package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zaptest"

	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/storage/storagetest"
	"github.com/apiscout/apiscout/wire"
)

// testAddr is the server the tests use: APISCOUT_TEST_CLICKHOUSE, set by
// make test (deploy/dev/test.sh) or by hand after make clickhouse-up.
func testAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("APISCOUT_TEST_CLICKHOUSE")
	if addr == "" {
		t.Fatal("APISCOUT_TEST_CLICKHOUSE is not set: start a server with `make clickhouse-up` and " +
			"`eval $(deploy/dev/clickhouse.sh env)`, or run everything with `make test`")
	}
	return addr
}

var dbSeq atomic.Int64

// testDatabase names a database of this test process, dropped at cleanup.
func testDatabase(t testing.TB, addr string) string {
	t.Helper()
	db := fmt.Sprintf("apiscout_test_%d_%d", os.Getpid(), dbSeq.Add(1))
	t.Cleanup(func() {
		conn, err := ch.Open(&ch.Options{Addr: []string{addr}})
		if err != nil {
			return
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
	})
	return db
}

func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	if len(opts.Addr) == 0 {
		opts.Addr = []string{testAddr(t)}
	}
	if opts.Database == "" {
		opts.Database = testDatabase(t, opts.Addr[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, opts, true, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var testStart = time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)

func TestReadBack(t *testing.T) {
	s := openTest(t, Options{BatchSize: 700})
	t.Logf("server %s features %+v", s.Features().Version, s.Features())
	ctx := context.Background()
	d := storagetest.Generate(1, testStart, 20, 150)
	if err := storagetest.WriteAll(ctx, s, d); err != nil {
		t.Fatal(err)
	}
	storagetest.CheckReadBack(t, ctx, s, d)

	// Everything written a second time (a replay after a crash) changes
	// no answer.
	if err := storagetest.WriteAll(ctx, s, d); err != nil {
		t.Fatal(err)
	}
	storagetest.CheckReadBack(t, ctx, s, d)
}

func TestCheckpoints(t *testing.T) {
	s := openTest(t, Options{})
	storagetest.CheckCheckpoints(t, context.Background(), s)
}

func TestMigrateIdempotent(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("migrate again (%d): %v", i, err)
		}
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM (SELECT DISTINCT version FROM "+s.table("schema_migrations")+")").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if want := len(Migrations(s.features, s.opts.Database, 0)); int(n) != want {
		t.Errorf("schema_migrations holds %d versions, want %d", n, want)
	}
	var tables uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ?", s.opts.Database).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 10 {
		t.Errorf("database holds %d tables and views, want 10", tables)
	}
}

// TestLatestViews: the views give what the store's reads give.
func TestLatestViews(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	d := storagetest.Generate(13, testStart, 10, 80)
	if err := storagetest.WriteAll(ctx, s, d); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteEndpoints(ctx, d.Earlier); err != nil { // older states again, late
		t.Fatal(err)
	}
	var endpoints, shadow uint64
	if err := s.conn.QueryRow(ctx, "SELECT count(), countIf(classification_latest = 'shadow') FROM "+s.table("endpoints_latest")).Scan(&endpoints, &shadow); err != nil {
		t.Fatal(err)
	}
	_, wantShadow := storagetest.ExpectEndpoints(d, storage.EndpointQuery{Classification: "shadow"})
	if int(endpoints) != len(d.Endpoints) || int(shadow) != wantShadow {
		t.Errorf("endpoints_latest: %d endpoints, %d shadow; want %d, %d", endpoints, shadow, len(d.Endpoints), wantShadow)
	}
	var open uint64
	if err := s.conn.QueryRow(ctx, "SELECT countIf(state_latest = 'open') FROM "+s.table("anomalies_latest")).Scan(&open); err != nil {
		t.Fatal(err)
	}
	_, wantOpen := storagetest.ExpectAnomalies(d, storage.AnomalyQuery{State: "open"})
	if int(open) != wantOpen {
		t.Errorf("anomalies_latest: %d open, want %d", open, wantOpen)
	}
}

func TestOpenTwiceSharesMetrics(t *testing.T) {
	addr := testAddr(t)
	db := testDatabase(t, addr)
	reg := prometheus.NewRegistry()
	ctx := context.Background()
	var stores []*Store
	for i := 0; i < 2; i++ {
		s, err := Open(ctx, Options{Addr: []string{addr}, Database: db}, true, zaptest.NewLogger(t), reg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores = append(stores, s)
	}
	if stores[0].m.rows != stores[1].m.rows {
		t.Error("two stores on one registry count into different series")
	}
	if _, err := Open(ctx, Options{Addr: []string{addr}, Database: db, Compression: "snappy"}, false, nil, nil); err == nil ||
		!strings.Contains(err.Error(), "storage.clickhouse_compression") {
		t.Errorf("unknown compression: %v", err)
	}
}

// TestHostileFilterText: request text reaches ClickHouse only as bound
// values; quotes, backslashes, NULs, comment markers and non-ASCII change
// nothing but what matches.
func TestHostileFilterText(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	d := storagetest.Generate(17, testStart, 3, 50)
	if err := storagetest.WriteAll(ctx, s, d); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{
		"'", `\`, `\'`, "''", "'; DROP TABLE endpoints; --", "' OR '1'='1", "\x00", "%", "_", "?", "/*", "\u212a",
		"É", "users", "USERS", "{userId}", "\xff\xfe", "`", "\\N", "$__timeFilter(x)",
	} {
		for _, q := range []storage.EndpointQuery{{Search: text}, {Service: text}, {Sensitive: text}} {
			got, total, err := s.Endpoints(ctx, q)
			if err != nil {
				t.Fatalf("Endpoints(%#v): %v", q, err)
			}
			want, wantTotal := storagetest.ExpectEndpoints(d, q)
			if total != wantTotal || len(got) != len(want) {
				t.Errorf("Endpoints(%#v): %d of %d, want %d of %d", q, len(got), total, len(want), wantTotal)
			}
		}
		if _, _, err := s.Anomalies(ctx, storage.AnomalyQuery{Host: text, Type: text}); err != nil {
			t.Errorf("Anomalies(%q): %v", text, err)
		}
		if _, err := s.Transactions(ctx, storage.TransactionQuery{IDs: []string{text, "x"}, Service: text}); err != nil {
			t.Errorf("Transactions(%q): %v", text, err)
		}
		if _, err := s.LoadCheckpoint(ctx, text); err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("LoadCheckpoint(%q): %v", text, err)
		}
	}
}

func TestRetryReason(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&ch.Exception{Code: 252, Message: "Too many parts"}, reasonServer},
		{fmt.Errorf("insert: %w", &ch.Exception{Code: 241}), reasonServer},
		{&ch.Exception{Code: 60, Message: "Table doesn't exist"}, ""},
		{&ch.Exception{Code: 53, Message: "Type mismatch"}, ""},
		{io.EOF, reasonConnection},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), reasonConnection},
		{syscall.ECONNREFUSED, reasonConnection},
		{context.DeadlineExceeded, reasonTimeout},
		{errors.New("clickhouse: acquire conn timeout"), reasonConnection},
		{errors.New("column 3: converting string to UInt64"), ""},
	} {
		if got := retryReason(tc.err); got != tc.want {
			t.Errorf("retryReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestRejectedInsertIsNotResent: a statement the server refuses fails
// without being resent, counted as rejected.
func TestRejectedInsertIsNotResent(t *testing.T) {
	addr := testAddr(t)
	reg := prometheus.NewRegistry()
	ctx := context.Background()
	s, err := Open(ctx, Options{Addr: []string{addr}, Database: testDatabase(t, addr), RetryMaxElapsed: 5 * time.Second}, true, zaptest.NewLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.conn.Exec(ctx, "DROP TABLE "+s.table("sensor_heartbeats")); err != nil {
		t.Fatal(err)
	}
	d := storagetest.Generate(18, testStart, 1, 10)
	if err := s.WriteHeartbeats(ctx, d.Heartbeats); err == nil {
		t.Fatal("insert into a dropped table succeeded")
	}
	counter := func(c prometheus.Collector) float64 {
		ch := make(chan prometheus.Metric, 16)
		c.Collect(ch)
		close(ch)
		total := 0.0
		for m := range ch {
			var pb dto.Metric
			if err := m.Write(&pb); err != nil {
				t.Fatal(err)
			}
			total += pb.GetCounter().GetValue()
		}
		return total
	}
	if n := counter(s.m.retries); n != 0 {
		t.Errorf("a rejected insert was resent %v times", n)
	}
	if n := counter(s.m.failed.WithLabelValues("sensor_heartbeats", reasonRejected)); n != 1 {
		t.Errorf("rejected failures counted %v, want 1", n)
	}
	if n := counter(s.m.failed); n != 1 {
		t.Errorf("%v failures counted in all, want 1", n)
	}
}

// TestStoreBodiesAndSampling: bodies are kept only with StoreBodies, and
// 1 in N transactions is kept, the same ones on every write.
func TestStoreBodiesAndSampling(t *testing.T) {
	ctx := context.Background()
	d := storagetest.Generate(19, testStart, 4, 100)
	for _, bodies := range []bool{false, true} {
		s := openTest(t, Options{StoreBodies: bodies, SampleTransactions: 3})
		for i := 0; i < 2; i++ { // the second write is a replay: same sample
			if err := s.WriteTransactions(ctx, d.Transactions); err != nil {
				t.Fatal(err)
			}
		}
		want := map[string]*wire.Transaction{}
		for _, tx := range d.Transactions {
			if storage.Sampled(tx.ID(), 3) {
				want[tx.ID()] = tx
			}
		}
		got, err := s.Transactions(ctx, storage.TransactionQuery{Limit: storage.MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || len(want) == 0 || len(want) == len(d.Transactions) {
			t.Fatalf("bodies=%v: %d transactions back, %d sampled of %d", bodies, len(got), len(want), len(d.Transactions))
		}
		for i := range got {
			w := want[got[i].ID()]
			if w == nil {
				t.Fatalf("transaction %s was not in the sample", got[i].ID())
			}
			hasBody := got[i].ResponseBody != nil || got[i].RequestBody != nil
			if hasBody != bodies || (bodies && string(got[i].RequestBody) != string(w.RequestBody)) {
				t.Fatalf("bodies=%v: transaction %s came back with request body %q", bodies, got[i].ID(), got[i].RequestBody)
			}
		}
	}
}
