package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/consume"
	"github.com/apiscout/apiscout/internal/kafkatest"
	"github.com/apiscout/apiscout/sensor/publish"
	"github.com/apiscout/apiscout/wire"
)

// TestMain runs this test binary as an analyzer when
// TestAnalyzerKilledMidStream starts it as a child process to kill.
func TestMain(m *testing.M) {
	if log := os.Getenv("APISCOUT_E2E_APPLIED_LOG"); log != "" {
		os.Exit(childAnalyzer(log))
	}
	os.Exit(m.Run())
}

// childAnalyzer consumes like an analyzer whose storage is the file log:
// each batch is appended and synced (durably applied) before Run commits
// it, and each batch takes a while, so a kill lands mid-stream.
func childAnalyzer(log string) int {
	cfg := kcfg(os.Getenv("APISCOUT_TEST_KAFKA"), os.Getenv("APISCOUT_E2E_TOPIC"))
	// One Kafka record (a pack of one service's transactions) per batch.
	c, err := consume.New(cfg, consume.Options{MaxBatch: 1, MaxWait: 50 * time.Millisecond}, zap.NewNop(), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := c.Run(context.Background(), fileStore{f}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type fileStore struct{ f *os.File }

func (s fileStore) Handle(_ context.Context, batch []consume.Record) error {
	var b strings.Builder
	for _, r := range batch {
		if r.Tx != nil {
			b.WriteString(r.Tx.ID())
			b.WriteByte('\n')
		}
	}
	b.WriteString("--\n") // the end of a batch
	if _, err := s.f.WriteString(b.String()); err != nil {
		return err
	}
	time.Sleep(50 * time.Millisecond)
	return s.f.Sync()
}

// An analyzer process is killed with SIGKILL in the middle of a stream
// and another takes over its group: every record is applied, and the
// only records applied twice are those of the one batch the killed
// analyzer had applied but not committed; a store keyed by transaction
// id (as the analyzer's are) counts each once.
func TestAnalyzerKilledMidStream(t *testing.T) {
	addr := kafkatest.Broker(t)
	topic := kafkatest.Topic(t, addr, 4)
	cfg := kcfg(addr, topic)
	const n = 20000
	p, err := publish.New(cfg, "s7", zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]bool{}
	for i := 1; i <= n; i += 1000 {
		var recs []*wire.Transaction
		for j := i; j < i+1000; j++ {
			r := tx("s7", uint64(j), fmt.Sprintf("svc%d.test", j%9))
			all[r.ID()] = true
			recs = append(recs, r)
		}
		if err := p.Write(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	log := filepath.Join(t.TempDir(), "applied")
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "APISCOUT_E2E_APPLIED_LOG="+log, "APISCOUT_E2E_TOPIC="+topic)
	var stderr strings.Builder
	child.Stderr = &stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(readLines(t, log)) < n/3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	child.Process.Kill() // SIGKILL: no goodbye to the group, no last commit
	child.Wait()
	first, largest := []string{}, 0
	n0 := 0
	for _, line := range readLines(t, log) {
		if line == "--" {
			largest = max(largest, len(first)-n0)
			n0 = len(first)
			continue
		}
		first = append(first, line)
	}
	if len(first) < n/4 || len(first) >= n {
		t.Fatalf("the first analyzer applied %d records before the kill, want some but not all (stderr: %s)", len(first), stderr.String())
	}

	var mu sync.Mutex
	store := map[string]int{} // by transaction id, as the analyzer's stores
	for _, id := range first {
		store[id]++
	}
	twice := 0
	second := handlerFunc(func(batch []consume.Record) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range batch {
			if r.Tx == nil {
				continue
			}
			if store[r.Tx.ID()]++; store[r.Tx.ID()] == 2 {
				twice++
			}
		}
	})
	consumeUntil(t, cfg, second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(store) >= n
	})
	mu.Lock()
	defer mu.Unlock()
	for id := range all {
		if store[id] == 0 {
			t.Fatalf("record %s lost", id)
		}
	}
	if len(store) != n {
		t.Fatalf("%d distinct records applied, want %d", len(store), n)
	}
	// The killed analyzer handles one batch at a time: only that batch
	// can have been applied and not committed.
	if twice > largest {
		t.Fatalf("%d records applied twice; only the uncommitted batch (%d at most) may be", twice, largest)
	}
	t.Logf("first analyzer applied %d, then killed; %d re-delivered to the second and recognised by id", len(first), twice)
}

type handlerFunc func([]consume.Record)

func (f handlerFunc) Handle(_ context.Context, b []consume.Record) error { f(b); return nil }

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			out = append(out, line)
		}
	}
	return out
}
