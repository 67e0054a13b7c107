package sensor

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/netns"
	"github.com/apiscout/apiscout/wire"
)

// liveSink collects records while the pipeline runs; the test reads it
// from another goroutine.
type liveSink struct {
	mu  sync.Mutex
	txs []*wire.Transaction
}

func (s *liveSink) Write(_ context.Context, recs []*wire.Transaction) error {
	s.mu.Lock()
	s.txs = append(s.txs, recs...)
	s.mu.Unlock()
	return nil
}
func (s *liveSink) Close() error { return nil }

func (s *liveSink) snapshot() []*wire.Transaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*wire.Transaction(nil), s.txs...)
}

// reset forgets the records collected so far (a long measurement would
// otherwise keep every sensor's records until the test ends).
func (s *liveSink) reset() {
	s.mu.Lock()
	s.txs = nil
	s.mu.Unlock()
}

// liveSensor is a pipeline capturing inside a namespace.
type liveSensor struct {
	p      *Pipeline
	sink   *liveSink
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// newPair builds namespaces for one test, or fails saying what is
// missing; they are removed when the test ends.
func newPair(t testing.TB, name string, x, y int) *netns.Pair {
	t.Helper()
	if err := netns.Check(); err != nil {
		t.Fatal(err)
	}
	p, err := netns.NewPair(name, x, y)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// startLive runs a pipeline in namespace ns (its capture sockets are
// opened there) until stop.
func startLive(t testing.TB, ns string, cfg config.SensorConfig) *liveSensor {
	t.Helper()
	cfg.Progress = false
	cfg.ID = "live"
	cfg.RedactKey = "live-capture-test-key"
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	s := &liveSensor{sink: &liveSink{}, done: make(chan error, 1), reg: prometheus.NewRegistry()}
	p, err := New(cfg, log, s.reg, s.sink)
	if err != nil {
		t.Fatal(err)
	}
	s.p = p
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		if ns == "" {
			s.done <- p.Run(ctx)
			return
		}
		s.done <- netns.Do(ns, func() error { return p.Run(ctx) })
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop ends capture and waits for the pipeline to drain; Stats then
// holds the kernel's final drop count.
func (s *liveSensor) stop(t testing.TB) Stats {
	t.Helper()
	if s.cancel == nil {
		return s.p.Stats()
	}
	s.cancel()
	s.cancel = nil
	if err := <-s.done; err != nil {
		t.Errorf("sensor: %v", err)
	}
	return s.p.Stats()
}

// waitFor polls the records until have says all expected ones are there
// or the deadline passes (slack for a loaded machine, not a speed claim).
func (s *liveSensor) waitFor(have func([]*wire.Transaction) bool) []*wire.Transaction {
	deadline := time.Now().Add(20 * time.Second)
	for {
		txs := s.sink.snapshot()
		if have(txs) || time.Now().After(deadline) {
			return txs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready sends probe requests until the sensor reports one, so that no
// traffic of the test proper is sent before capture has started.
func (s *liveSensor) ready(t testing.TB, get func(path string) error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		path := fmt.Sprintf("/ready/%d", i)
		if err := get(path); err != nil {
			// The sensor's listener may not be bound yet (a UDP probe is
			// then refused): try again until the deadline.
			if time.Now().After(deadline) {
				t.Fatalf("probe %s: %v", path, err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for j := 0; j < 10; j++ {
			for _, tx := range s.sink.snapshot() {
				if strings.HasPrefix(tx.Path, "/ready/") {
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("sensor reported no probe request in 15s (stats %+v)", s.p.Stats())
		}
	}
}

// nsClient is an HTTP client whose connections are made in namespace ns.
func nsClient(ns string, keepAlive bool) *http.Client {
	tr := &http.Transport{DialContext: netns.DialContext(ns), DisableKeepAlives: !keepAlive,
		MaxConnsPerHost: 1, ForceAttemptHTTP2: false}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// serveIn serves h on addr in namespace ns until the test ends.
func serveIn(t testing.TB, ns, addr string, srv *http.Server) net.Listener {
	t.Helper()
	ln, err := netns.Listen(ns, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln
}

// counters returns the sensor's non-zero counters, "name{labels}" → value,
// for failure messages.
func (s *liveSensor) counters() map[string]float64 {
	out := map[string]float64{}
	mfs, _ := s.reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetCounter() == nil || m.GetCounter().GetValue() == 0 {
				continue
			}
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			out[name] = m.GetCounter().GetValue()
		}
	}
	return out
}

func byPath(txs []*wire.Transaction, protocol string) map[string]*wire.Transaction {
	m := map[string]*wire.Transaction{}
	for _, tx := range txs {
		if protocol == "" || tx.Protocol == protocol {
			m[tx.Path] = tx
		}
	}
	return m
}

func extra(tx *wire.Transaction) map[string]string {
	m := map[string]string{}
	for _, h := range tx.Extra {
		m[h.Name] = h.Value
	}
	return m
}
