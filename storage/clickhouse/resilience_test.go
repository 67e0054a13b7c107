package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zaptest"

	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/storage/storagetest"
)

// cutProxy forwards loopback TCP to a ClickHouse server and, when armed,
// breaks the next connection that sends more than after bytes: either in
// the middle of the client's data (cutRequest: the server sees half an
// insert) or by swallowing the server's answer to a complete insert
// (loseResponse: the rows are stored, the client is never told).
type cutProxy struct {
	ln     net.Listener
	target string
	after  int64
	mode   string
	armed  atomic.Bool
	bytes  atomic.Int64 // client bytes forwarded since armed
	cuts   atomic.Int32
	wg     sync.WaitGroup
}

const (
	cutRequest   = "cut-request"
	loseResponse = "lose-response"
)

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) arm(mode string, after int64) {
	p.mode, p.after = mode, after
	p.bytes.Store(0)
	p.armed.Store(true)
}

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.serve(c) }()
	}
}

func (p *cutProxy) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	var (
		swallow atomic.Bool
		done    = make(chan struct{}, 2)
	)
	// client -> server
	go func() {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				// Connections are pooled: count what any of them sends
				// once armed.
				if p.armed.Load() && p.bytes.Add(int64(n)) > p.after {
					if p.armed.CompareAndSwap(true, false) {
						p.cuts.Add(1)
						if p.mode == cutRequest {
							// Half of what crosses the threshold, then nothing.
							server.Write(buf[:n/2])
							client.Close()
							server.Close()
							return
						}
						swallow.Store(true)
						// Let the server finish the insert, then drop the
						// connection before the client hears back.
						go func() {
							time.Sleep(500 * time.Millisecond)
							client.Close()
							server.Close()
						}()
					}
				}
				if _, werr := server.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	// server -> client
	go func() {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 && !swallow.Load() {
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	<-done
}

// distinctTx counts distinct and raw transaction rows.
func distinctTx(t *testing.T, s *Store) (distinct, raw uint64) {
	t.Helper()
	ctx := context.Background()
	if err := s.conn.QueryRow(ctx, "SELECT uniqExact(id), count() FROM "+s.table("transactions")).Scan(&distinct, &raw); err != nil {
		t.Fatal(err)
	}
	return distinct, raw
}

func TestRetryAfterCutConnection(t *testing.T) {
	for _, mode := range []string{cutRequest, loseResponse} {
		t.Run(mode, func(t *testing.T) {
			target := testAddr(t)
			p := newCutProxy(t, target)
			reg := prometheus.NewRegistry()
			db := testDatabase(t, target)
			ctx := context.Background()
			s, err := Open(ctx, Options{Addr: []string{p.addr()}, Database: db, RetryInitial: 50 * time.Millisecond}, true, zaptest.NewLogger(t), reg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			d := storagetest.Generate(3, testStart, 10, 200)
			p.arm(mode, 4096) // inside the first INSERT's data
			if err := s.WriteTransactions(ctx, d.Transactions); err != nil {
				t.Fatalf("write through a cut connection: %v", err)
			}
			if p.cuts.Load() != 1 {
				t.Fatalf("the proxy cut %d connections, want 1", p.cuts.Load())
			}
			var m dto.Metric
			if err := s.m.retries.WithLabelValues("transactions", reasonConnection).Write(&m); err != nil {
				t.Fatal(err)
			}
			retries := m.GetCounter().GetValue()
			if retries < 1 {
				t.Fatalf("no insert was resent (retries %v)", retries)
			}
			distinct, raw := distinctTx(t, s)
			t.Logf("%s: %d transactions, %d distinct rows, %d raw rows (server dedup token: %v)", mode, len(d.Transactions), distinct, raw, s.features.DedupToken)
			if distinct != uint64(len(d.Transactions)) {
				t.Errorf("%d distinct transactions stored, want %d", distinct, len(d.Transactions))
			}
			if err := storagetest.WriteAll(ctx, s, withoutTransactions(d)); err != nil {
				t.Fatal(err)
			}
			storagetest.CheckReadBack(t, ctx, s, d)
		})
	}
}

// withoutTransactions is d with its transactions already written.
func withoutTransactions(d *storagetest.Data) *storagetest.Data {
	c := *d
	c.Transactions = nil
	return &c
}

// repoRoot finds the repository root from the package directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root not found")
		}
		dir = parent
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ownServer is a ClickHouse instance of this test alone, started with the
// project's script in a folder and on ports of its own, so the test can
// stop it without touching the shared one.
type ownServer struct {
	t      *testing.T
	script string
	env    []string
	addr   string
}

func startOwnServer(t *testing.T) *ownServer {
	t.Helper()
	if _, err := exec.LookPath("clickhouse-server"); err != nil {
		if _, err2 := os.Stat("/usr/sbin/clickhouse-server"); err2 != nil {
			t.Fatal("clickhouse-server is not installed: apt-get install clickhouse-server clickhouse-client (or run .ci/run)")
		}
	}
	parent, err := os.MkdirTemp("", "apiscout-ch-restart-")
	if err != nil {
		t.Fatal(err)
	}
	// The server may run as the clickhouse user: it must reach its folder.
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	tcp, http := freePort(t), freePort(t)
	o := &ownServer{
		t:      t,
		script: filepath.Join(repoRoot(t), "deploy", "dev", "clickhouse.sh"),
		env: append(os.Environ(), "CLICKHOUSE_DIR="+filepath.Join(parent, "ch"),
			fmt.Sprintf("CLICKHOUSE_TCP_PORT=%d", tcp), fmt.Sprintf("CLICKHOUSE_HTTP_PORT=%d", http)),
		addr: fmt.Sprintf("127.0.0.1:%d", tcp),
	}
	t.Cleanup(func() {
		o.run("down")
		os.RemoveAll(parent)
	})
	o.run("up")
	return o
}

func (o *ownServer) run(cmd string) {
	o.t.Helper()
	if err := o.try(cmd); err != nil {
		o.t.Fatal(err)
	}
}

func (o *ownServer) try(cmd string) error {
	c := exec.Command(o.script, cmd)
	c.Env = o.env
	out, err := c.CombinedOutput()
	o.t.Logf("clickhouse.sh %s: %s", cmd, out)
	if err != nil {
		return fmt.Errorf("clickhouse.sh %s: %w", cmd, err)
	}
	return nil
}

// upAfter starts the server again after a pause, in the background, while
// the test goes on writing. The test must not end, nor its cleanup stop
// the server, before the start is over: the returned channel tells its
// outcome, and a cleanup waits for it in case the test fails first.
func (o *ownServer) upAfter(pause time.Duration) <-chan error {
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		time.Sleep(pause)
		done <- o.try("up")
	}()
	o.t.Cleanup(func() { <-finished })
	return done
}

func TestServerRestartMidRun(t *testing.T) {
	srv := startOwnServer(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	s, err := Open(ctx, Options{Addr: []string{srv.addr}, Database: "apiscout", BatchSize: 400,
		RetryMaxElapsed: time.Second, RetryInitial: 50 * time.Millisecond}, true, zaptest.NewLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d := storagetest.Generate(4, testStart, 30, 100)

	// The analyzer's loop: a batch that fails is kept and written again
	// later (backpressure: it does not consume further meanwhile).
	const parts = 30
	var failures int
	stopped := false
	var restarted <-chan error
	for i := 0; i < parts; i++ {
		lo, hi := i*len(d.Transactions)/parts, (i+1)*len(d.Transactions)/parts
		if i == parts/3 && !stopped {
			srv.run("stop")
			stopped = true
			restarted = srv.upAfter(3 * time.Second)
		}
		for attempt := 0; ; attempt++ {
			err := s.WriteTransactions(ctx, d.Transactions[lo:hi])
			if err == nil {
				break
			}
			failures++
			if attempt > 60 {
				t.Fatalf("part %d still failing after the restart: %v", i, err)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	// Writes may succeed again before the script sees the server answer.
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	if failures == 0 {
		t.Fatal("no write failed while the server was down: the test did not exercise the outage")
	}
	t.Logf("%d writes failed during the outage and were retried", failures)
	if err := storagetest.WriteAll(ctx, s, withoutTransactions(d)); err != nil {
		t.Fatal(err)
	}
	distinct, raw := distinctTx(t, s)
	if distinct != uint64(len(d.Transactions)) {
		t.Errorf("%d distinct transactions after the restart, want %d (raw rows %d)", distinct, len(d.Transactions), raw)
	}
	storagetest.CheckReadBack(t, ctx, s, d)
}

func TestCheckpointRestoreAfterRestart(t *testing.T) {
	addr := testAddr(t)
	db := testDatabase(t, addr)
	ctx := context.Background()
	open := func() *Store {
		s, err := Open(ctx, Options{Addr: []string{addr}, Database: db}, true, zaptest.NewLogger(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	d := storagetest.Generate(5, testStart, 10, 50)
	if err := s.WriteEndpoints(ctx, d.Endpoints); err != nil {
		t.Fatal(err)
	}
	state := []byte(fmt.Sprintf("inventory of %d endpoints", len(d.Endpoints)))
	if err := s.SaveCheckpoint(ctx, "api.shop.example", state, map[int]int64{2: 1234}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// The new owner of the partition.
	s = open()
	defer s.Close()
	cp, err := s.LoadCheckpoint(ctx, "api.shop.example")
	if err != nil {
		t.Fatal(err)
	}
	if string(cp.Data) != string(state) || cp.Offsets[2] != 1234 {
		t.Fatalf("restored %q offsets %v", cp.Data, cp.Offsets)
	}
	// It carries on from offset 1234: replaying what the old owner wrote
	// after its checkpoint changes no count.
	if err := s.WriteEndpoints(ctx, d.Endpoints); err != nil {
		t.Fatal(err)
	}
	_, total, err := s.Endpoints(ctx, storage.EndpointQuery{})
	if err != nil || total != len(d.Endpoints) {
		t.Fatalf("endpoints after restore and replay: %d (%v), want %d", total, err, len(d.Endpoints))
	}
	if _, err := s.LoadCheckpoint(ctx, "other"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing checkpoint: %v", err)
	}
}

// TestBatcherBackpressureAcrossRestart is the analyzer's write path end to
// end: fetched records go through storage.Batcher into the store; while
// the server is down the buffer fills to its bound and refuses more
// (ErrFull), the consumer pauses and offers the same records again, and
// after the restart everything is stored exactly once.
func TestBatcherBackpressureAcrossRestart(t *testing.T) {
	srv := startOwnServer(t)
	ctx := context.Background()
	s, err := Open(ctx, Options{Addr: []string{srv.addr}, Database: "apiscout", BatchSize: 500,
		RetryMaxElapsed: 100 * time.Millisecond, RetryInitial: 20 * time.Millisecond}, true, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d := storagetest.Generate(15, testStart, 20, 100)
	b := storage.NewBatcher(s.WriteTransactions, 500, 50*time.Millisecond, 1000)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go b.Run(runCtx, nil)

	const fetch = 100 // records per Kafka fetch
	full := 0
	var restarted <-chan error
	for i := 0; i < len(d.Transactions); i += fetch {
		if i == len(d.Transactions)/3 {
			srv.run("stop")
			restarted = srv.upAfter(3 * time.Second)
		}
		recs := d.Transactions[i:min(i+fetch, len(d.Transactions))]
		for attempt := 0; ; attempt++ {
			err := b.Add(ctx, recs...)
			if err == nil {
				break
			}
			if !errors.Is(err, storage.ErrFull) {
				t.Fatalf("Add: %v, want nil or ErrFull", err)
			}
			full++
			if attempt > 100 {
				t.Fatalf("still refused after the restart: %v", err)
			}
			time.Sleep(100 * time.Millisecond) // the consumer pauses
		}
		if b.Pending() > 1000 {
			t.Fatalf("%d rows buffered, more than the bound", b.Pending())
		}
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		if err := b.Flush(ctx); err == nil {
			break
		} else if attempt > 60 {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if full == 0 {
		t.Fatal("the buffer never refused rows during the outage: backpressure was not exercised")
	}
	t.Logf("outage: %d refusals (buffer full)", full)
	distinct, raw := distinctTx(t, s)
	if distinct != uint64(len(d.Transactions)) {
		t.Errorf("%d distinct transactions, want %d (raw %d)", distinct, len(d.Transactions), raw)
	}
}
