package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/kafkatest"
	"github.com/apiscout/apiscout/sensor/publish"
	"github.com/apiscout/apiscout/storage/clickhouse"
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

func startChild(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	c := exec.Command(os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), "APISCOUT_TEST_CHILD_ARGS="+strings.Join(args, "\x1f"))
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	return c
}

// The analyzer is killed with SIGKILL while transactions stream in, and
// started again: it restores the inventory of its partitions from the
// checkpoints in ClickHouse, reads again what was not committed, skips
// what the checkpoints reflect, and ends with every transaction counted
// exactly once.
func TestAnalyzerKilledAndRestartedCountsOnce(t *testing.T) {
	broker := kafkatest.Broker(t)
	chAddr := os.Getenv("APISCOUT_TEST_CLICKHOUSE")
	if chAddr == "" {
		t.Fatal("APISCOUT_TEST_CLICKHOUSE is not set: `make clickhouse-up` and `eval $(deploy/dev/clickhouse.sh env)`, or `make test`")
	}
	topic := kafkatest.Topic(t, broker, 4)
	db := fmt.Sprintf("apiscout_restart_%d", os.Getpid())
	t.Cleanup(func() { dropStorageTestDatabase(chAddr, db) })
	args := []string{"analyzer", "--log.level", "warn", "--metrics.listen", "", "--ui.listen", "127.0.0.1:0",
		"--kafka.brokers", broker, "--kafka.topic", topic, "--kafka.group", topic + "-analyzers",
		"--storage.kind", "clickhouse", "--storage.clickhouse_addr", chAddr, "--storage.clickhouse_database", db,
		"--storage.migrate", "--storage.flush_interval", "200ms", "--analyzer.checkpoint_interval", "1s"}

	kcfg := config.Default().Kafka
	kcfg.Brokers, kcfg.Topic = []string{broker}, topic
	pub, err := publish.New(kcfg, "s1", zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const total, services = 12000, 6
	var sent sync.WaitGroup
	sent.Add(1)
	begin := make(chan struct{})
	go func() { // a steady stream over several seconds, once the analyzer is up
		defer sent.Done()
		<-begin
		at := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
		for i := 0; i < total; i += 200 {
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

	ctx := context.Background()
	var store *clickhouse.Store
	counted := func() int64 {
		if store == nil {
			s, err := clickhouse.Open(ctx, clickhouse.Options{Addr: []string{chAddr}, Database: db}, false, nil, nil)
			if err != nil {
				return -1 // not migrated yet
			}
			store = s
			t.Cleanup(func() { store.Close() })
		}
		svcs, err := store.Services(ctx)
		if err != nil {
			return -1
		}
		var n int64
		for _, s := range svcs {
			n += s.Calls
		}
		return n
	}

	first := startChild(t, args...)
	deadline := time.Now().Add(90 * time.Second)
	for counted() < 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	close(begin)
	for counted() < total/3 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	before := counted()
	if err := first.Process.Kill(); err != nil { // SIGKILL: no last save, no last commit
		t.Fatal(err)
	}
	first.Wait()
	if before < total/3 || before >= total {
		t.Fatalf("the first analyzer counted %d calls before the kill; want some but not all of %d", before, total)
	}

	startChild(t, args...)
	sent.Wait()
	var got int64
	deadline = time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		if got = counted(); got >= total {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Let anything counted twice show up before judging.
	time.Sleep(3 * time.Second)
	got = counted()
	if got != total {
		t.Fatalf("after a kill at %d calls and a restart, the inventory counts %d calls; want exactly %d", before, got, total)
	}
	t.Logf("killed at %d calls of %d; restarted, restored and ended at %d", before, total, got)
}
