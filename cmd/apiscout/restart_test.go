package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/kafkatest"
	"github.com/apiscout/apiscout/sensor/publish"
	"github.com/apiscout/apiscout/storage/clickhouse"
	"github.com/apiscout/apiscout/storage/embedded"
	"github.com/apiscout/apiscout/wire"
)

// TestMain lets a test start this binary as the apiscout command, as a
// process of its own that it can kill.
func TestMain(m *testing.M) {
	if args := os.Getenv("APISCOUT_TEST_CHILD_ARGS"); args != "" {
		root := newRootCmd()
		root.SetArgs(strings.Split(args, "\x1f"))
		if err := root.Execute(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child is a process started by startChild.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	err  error
}

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$"), done: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), "APISCOUT_TEST_CHILD_ARGS="+strings.Join(args, "\x1f"))
	c.cmd.Stderr = os.Stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(c.kill)
	return c
}

// kill sends SIGKILL (no last save, no last commit) and waits.
func (c *child) kill() {
	c.cmd.Process.Kill()
	<-c.done
}

// pipelineFixture streams transactions of a few services to a Kafka
// topic while analyzers, each a process of its own, consume them into a
// ClickHouse database; counted is the inventory's total of calls.
type pipelineFixture struct {
	t       *testing.T
	args    []string
	total   int64
	begin   chan struct{}
	sent    sync.WaitGroup
	chAddr  string
	db      string
	store   *clickhouse.Store
	started bool
	running []*child
	// mu guards the store's lazy opening: the stream reads counts too.
	mu sync.Mutex
	// throttled keeps the stream at most a few batches ahead of the
	// analyzers, so that a kill lands mid-stream however slowly they
	// start; it ends with the first kill.
	throttled atomic.Bool
}

func newPipelineFixture(t *testing.T, total int) *pipelineFixture {
	broker := kafkatest.Broker(t)
	chAddr := os.Getenv("APISCOUT_TEST_CLICKHOUSE")
	if chAddr == "" {
		t.Fatal("APISCOUT_TEST_CLICKHOUSE is not set: `make clickhouse-up` and `eval $(deploy/dev/clickhouse.sh env)`, or `make test`")
	}
	topic := kafkatest.Topic(t, broker, 4)
	f := &pipelineFixture{t: t, total: int64(total), begin: make(chan struct{}), chAddr: chAddr,
		db: fmt.Sprintf("apiscout_%s_%d", strings.ToLower(strings.NewReplacer("/", "_").Replace(t.Name())), os.Getpid())}
	t.Cleanup(func() { dropStorageTestDatabase(chAddr, f.db) })
	f.args = []string{"analyzer", "--log.level", "warn", "--metrics.listen", "", "--ui.listen", "127.0.0.1:0",
		"--kafka.brokers", broker, "--kafka.topic", topic, "--kafka.group", topic + "-analyzers",
		"--storage.kind", "clickhouse", "--storage.clickhouse_addr", chAddr, "--storage.clickhouse_database", f.db,
		"--storage.migrate", "--storage.flush_interval", "200ms", "--analyzer.checkpoint_interval", "1s"}
	kcfg := config.Default().Kafka
	kcfg.Brokers, kcfg.Topic = []string{broker}, topic
	pub, err := publish.New(kcfg, "s1", zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const services = 6
	f.throttled.Store(true)
	f.sent.Add(1)
	go func() { // a steady stream over several seconds, once an analyzer is up
		defer f.sent.Done()
		<-f.begin
		at := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
		for i := 0; i < total; i += 200 {
			for wait := time.Now().Add(20 * time.Second); f.throttled.Load() && f.counted() < int64(i-600) && time.Now().Before(wait); {
				time.Sleep(50 * time.Millisecond)
			}
			var batch []*wire.Transaction
			for j := i; j < i+200; j++ {
				host := fmt.Sprintf("svc%d.restart.test", j%services)
				ts := at.Add(time.Duration(j) * 10 * time.Millisecond)
				batch = append(batch, &wire.Transaction{SensorID: "s1", Seq: uint64(j + 1), Host: host, Method: "GET",
					Path: fmt.Sprintf("/orders/%d", 100000+j), Status: 200, RequestStart: ts, ResponseEnd: ts.Add(5 * time.Millisecond)})
			}
			if err := pub.Write(context.Background(), batch); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := pub.Close(); err != nil {
			t.Error(err)
		}
	}()
	return f
}

// analyzer starts an analyzer process; the first one starts the stream
// once it has created the database.
func (f *pipelineFixture) analyzer() *child {
	c := startChild(f.t, f.args...)
	f.running = append(f.running, c)
	if !f.started {
		f.started = true
		f.waitFor(0)
		close(f.begin)
	}
	return c
}

func (f *pipelineFixture) counted() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	ctx := context.Background()
	if f.store == nil {
		s, err := clickhouse.Open(ctx, clickhouse.Options{Addr: []string{f.chAddr}, Database: f.db}, false, nil, nil)
		if err != nil {
			return -1 // not migrated yet
		}
		f.store = s
		f.t.Cleanup(func() { s.Close() })
	}
	svcs, err := f.store.Services(ctx)
	if err != nil {
		return -1
	}
	var n int64
	for _, s := range svcs {
		n += s.Calls
	}
	return n
}

// waitFor waits until at least n calls are counted.
func (f *pipelineFixture) waitFor(n int64) int64 {
	deadline := time.Now().Add(90 * time.Second)
	got := f.counted()
	for got < n && time.Now().Before(deadline) {
		for _, c := range f.running {
			select {
			case <-c.done:
				f.t.Fatalf("an analyzer exited on its own (%v); its log is above", c.err)
			default:
			}
		}
		time.Sleep(100 * time.Millisecond)
		got = f.counted()
	}
	return got
}

// stop kills c with SIGKILL.
func (f *pipelineFixture) stop(c *child) {
	f.throttled.Store(false)
	for i, r := range f.running {
		if r == c {
			f.running = append(f.running[:i], f.running[i+1:]...)
			break
		}
	}
	c.kill()
}

// finish waits for the stream to end and checks every call is counted
// exactly once.
func (f *pipelineFixture) finish(what string) {
	f.sent.Wait()
	f.waitFor(f.total)
	time.Sleep(3 * time.Second) // let anything counted twice show up before judging
	if got := f.counted(); got != f.total {
		f.t.Fatalf("%s: the inventory counts %d calls; want exactly %d", what, got, f.total)
	}
}

// The analyzer is killed with SIGKILL while transactions stream in, and
// started again: it restores the inventory of its partitions from the
// checkpoints in ClickHouse, reads again what was not committed, skips
// what the checkpoints reflect, and ends with every transaction counted
// exactly once.
func TestAnalyzerKilledAndRestartedCountsOnce(t *testing.T) {
	f := newPipelineFixture(t, 12000)
	first := f.analyzer()
	before := f.waitFor(f.total / 3)
	f.stop(first)
	if before < f.total/3 || before >= f.total {
		t.Fatalf("the first analyzer counted %d calls before the kill; want some but not all of %d", before, f.total)
	}
	f.analyzer()
	f.finish(fmt.Sprintf("after a kill at %d calls and a restart", before))
}

// A second analyzer joins the group mid-stream (partitions move to it,
// restored from the first's checkpoints), then the first is killed (its
// partitions move back to the second): every call counted exactly once.
func TestPartitionsMoveBetweenAnalyzers(t *testing.T) {
	f := newPipelineFixture(t, 12000)
	first := f.analyzer()
	f.waitFor(f.total / 4)
	f.analyzer()
	at := f.waitFor(f.total * 2 / 3)
	f.stop(first)
	f.finish(fmt.Sprintf("after a second analyzer joined and the first was killed at %d calls", at))
}

// `apiscout run` keeps its inventory in the embedded store across
// restarts: a second run adds its traffic to what the first counted.
func TestRunCarriesOnAfterRestart(t *testing.T) {
	dir := t.TempDir()
	sim := newRootCmd()
	sim.SetArgs([]string{"simulate", "--scenario", "inventory", "--hours", "0.25", "--out", dir})
	sim.SetOut(&bytes.Buffer{})
	if err := sim.Execute(); err != nil {
		t.Fatalf("simulate: %v", err)
	}
	db := filepath.Join(dir, "apiscout.db")
	runOnce := func() int64 {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		out := &syncBuffer{}
		run := newRootCmd()
		run.SetArgs([]string{"run", "--pcap", filepath.Join(dir, "capture.pcap"), "--storage.path", db,
			"--ui.listen", "127.0.0.1:0", "--metrics.listen", "", "--log.level", "warn", "--sensor.progress=false"})
		run.SetOut(out)
		run.SetErr(&syncBuffer{})
		done := make(chan error, 1)
		go func() { done <- run.ExecuteContext(ctx) }()
		for !strings.Contains(out.String(), "serving the UI") {
			select {
			case err := <-done:
				t.Fatalf("run ended early: %v\n%s", err, out)
			case <-time.After(50 * time.Millisecond):
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run: %v", err)
		}
		s, err := embedded.Open(context.Background(), embedded.Options{Path: db}, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		svcs, err := s.Services(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, sv := range svcs {
			n += sv.Calls
		}
		return n
	}
	first := runOnce()
	if first == 0 {
		t.Fatal("the first run counted no calls")
	}
	if second := runOnce(); second != 2*first {
		t.Errorf("after a restart on the same capture the inventory counts %d calls; want %d (twice %d)", second, 2*first, first)
	}
}
