package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/apiscout/apiscout/analyzer"
	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/checkpoint"
	"github.com/apiscout/apiscout/analyzer/consume"
	"github.com/apiscout/apiscout/analyzer/detect"
	"github.com/apiscout/apiscout/analyzer/ingest"
	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/kafkatest"
	"github.com/apiscout/apiscout/internal/simulate"
	"github.com/apiscout/apiscout/sensor"
	"github.com/apiscout/apiscout/sensor/publish"
	"github.com/apiscout/apiscout/storage/clickhouse"
	"github.com/apiscout/apiscout/wire"
)

// Soak limits: what the last quarter of a run may hold above the second
// quarter (the first 20% is warm-up: pools fill, the inventory forms).
// A leak of one goroutine or descriptor per connection, batch or minute,
// or of a few hundred bytes per transaction over a long run, passes them.
// The heap is judged live (what the last GC kept): heap in use also
// holds the garbage of the GC cycle under way, up to as much again.
const (
	soakGoroutineSlack = 10
	soakFDSlack        = 10
	soakHeapGrowth     = 1.5
)

// TestSoak replays simulated traffic through the whole distributed
// pipeline in one process: the simulator writes a capture into a FIFO
// that one long-lived sensor reads, the sensor's producer sends to the
// real broker, an analyzer (consumer, engine with its detectors, ClickHouse
// store) stores everything in the real server. It samples the process
// (heap in use, goroutines, open descriptors, RSS) every few seconds,
// writes the curve (soak.csv, soak.md) and a heap profile at the end
// (heap.pprof) to $APISCOUT_SOAK_REPORT (default: a new temporary
// folder), and checks that the curve is flat after warm-up and that every
// transaction sent is stored.
//
// APISCOUT_SOAK=15m sets the length (default 20s, a smoke run that keeps
// the test from rotting); APISCOUT_SOAK_RATE the exchanges per second
// (default 500).
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: not under -short")
	}
	dur, rate := 20*time.Second, 500.0
	if v := os.Getenv("APISCOUT_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Second {
			t.Fatalf("APISCOUT_SOAK=%q: want a duration of at least 10s (e.g. 15m)", v)
		}
		dur = d
	}
	if v := os.Getenv("APISCOUT_SOAK_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			t.Fatalf("APISCOUT_SOAK_RATE=%q: want exchanges per second", v)
		}
		rate = r
	}
	every := min(max(dur/150, time.Second), 5*time.Second)
	report := os.Getenv("APISCOUT_SOAK_REPORT")
	if report == "" {
		var err error
		if report, err = os.MkdirTemp("", "apiscout-soak-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(report, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("soak: %s at %.0f exchanges/s, sampled every %s; report in %s", dur, rate, every, report)
	log := fileLogger(t, filepath.Join(report, "soak.log"))

	kaddr := kafkatest.Broker(t)
	kc := kcfg(kaddr, kafkatest.Topic(t, kaddr, 4))
	kafkatest.CreateTopic(t, kaddr, kc.DeadLetterTopic, 1)
	chAddr := os.Getenv("APISCOUT_TEST_CLICKHOUSE")
	if chAddr == "" {
		t.Fatal("APISCOUT_TEST_CLICKHOUSE is not set: start a server with `make clickhouse-up` and " +
			"`eval $(deploy/dev/clickhouse.sh env)`, or run everything with `make test`")
	}
	db := fmt.Sprintf("apiscout_soak_%d_%d", os.Getpid(), time.Now().Unix())
	t.Cleanup(func() { dropDatabase(chAddr, db) })

	// The analyzer, built completely before anything runs.
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, err := clickhouse.Open(ctx, clickhouse.Options{Addr: []string{chAddr}, Database: db}, true, log.Named("storage"), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := config.Default()
	det, err := detect.New(cfg.Detect, cfg.Analyzer, log.Named("detect"), reg)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := analyzer.New(analyzer.Options{Config: cfg.Analyzer, Log: log.Named("analyzer"), Reg: reg, Detectors: det})
	if err != nil {
		t.Fatal(err)
	}
	an := &soakAnalysis{}
	ing := ingest.New(eng, countingStore{Store: store, an: an}, log.Named("ingest"))
	if err := ing.Keep(eng, store, checkpoint.Options{Topic: kc.Topic, Interval: cfg.Analyzer.CheckpointInterval, Log: log.Named("checkpoint"), Reg: reg}); err != nil {
		t.Fatal(err)
	}
	an.h = ing.Durable()
	cons, err := consume.New(kc, consume.Options{MaxWait: 200 * time.Millisecond}, log.Named("consume"), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()

	// The sensor: one pipeline reading the capture as it is written.
	fifo := filepath.Join(t.TempDir(), "capture.pcap")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	prod, err := publish.New(kc, "soak", log.Named("publish"), reg)
	if err != nil {
		t.Fatal(err)
	}
	scfg := cfg.Sensor
	scfg.ID, scfg.Pcap, scfg.Progress, scfg.RedactKey = "soak", []string{fifo}, false, simulate.RedactKey
	sens, err := sensor.New(scfg, log.Named("sensor"), reg, prod) // Run closes the producer
	if err != nil {
		t.Fatal(err)
	}

	consumed := make(chan error, 1)
	go func() { consumed <- cons.Run(ctx, an) }()
	sensed := make(chan error, 1)
	go func() { sensed <- sens.Run(context.Background()) }()

	var sent atomic.Int64
	wrote := make(chan error, 1)
	start, cpu0 := time.Now(), processCPU()
	go func() { wrote <- replay(fifo, dur, rate, &sent) }()

	// Sample until the replay ends.
	csv, err := os.Create(filepath.Join(report, "soak.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer csv.Close()
	fmt.Fprintln(csv, "seconds,heap_inuse_bytes,heap_live_bytes,goroutines,fds,rss_bytes,sent,sensed,stored")
	var samples []soakSample
	tick := time.NewTicker(every)
	var replayErr error
	lastLog := time.Now()
sampling:
	for {
		select {
		case replayErr = <-wrote:
			break sampling
		case <-tick.C:
			s := sampleProcess(time.Since(start))
			s.sent, s.sensed, s.stored = sent.Load(), int64(sens.Stats().Transactions), an.stored.Load()
			samples = append(samples, s)
			fmt.Fprintf(csv, "%.1f,%d,%d,%d,%d,%d,%d,%d,%d\n", s.at.Seconds(), s.heap, s.live, s.goroutines, s.fds, s.rss, s.sent, s.sensed, s.stored)
			if time.Since(lastLog) >= time.Minute {
				t.Logf("soak %s: heap %s (live %s), %d goroutines, %d fds, rss %s; sent %d, stored %d",
					s.at.Round(time.Second), mib(s.heap), mib(s.live), s.goroutines, s.fds, mib(s.rss), s.sent, s.stored)
				lastLog = time.Now()
			}
		}
	}
	tick.Stop()
	elapsed := time.Since(start)
	// What the heap holds at the end, for when the curve is not flat:
	// go tool pprof -sample_index=inuse_space heap.pprof
	if f, err := os.Create(filepath.Join(report, "heap.pprof")); err == nil {
		runtime.GC()
		_ = pprof.WriteHeapProfile(f)
		f.Close()
	}
	if replayErr != nil {
		t.Fatalf("replay: %v", replayErr)
	}
	if err := <-sensed; err != nil {
		t.Fatalf("sensor: %v", err)
	}

	// Drain: everything the sensor emitted reaches the store.
	want := int64(sens.Stats().Transactions)
	for deadline := time.Now().Add(5 * time.Minute); an.stored.Load() < want && time.Now().Before(deadline); {
		select {
		case err := <-consumed:
			t.Fatalf("analyzer stopped: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	drained, cpu := time.Since(start), processCPU()-cpu0
	cancel()
	if err := <-consumed; err != nil {
		t.Fatalf("analyzer: %v", err)
	}
	if err := an.err(); err != nil {
		t.Fatalf("analyzer: %v", err)
	}
	stored, err := countTransactions(chAddr, db)
	if err != nil {
		t.Fatal(err)
	}
	st := sens.Stats()
	counters := gatherCounters(t, reg,
		"apiscout_sensor_records_dropped_total", "apiscout_kafka_records_dropped_total", "apiscout_kafka_send_errors_total",
		"apiscout_consumer_sequence_gaps_total", "apiscout_consumer_dead_letters_total", "apiscout_consumer_duplicates_total",
		"apiscout_storage_insert_failures_total", "apiscout_storage_insert_retries_total")

	sum := summarize(samples)
	md := soakMarkdown(dur, rate, every, elapsed, drained, cpu, sent.Load(), st, stored, an, sum, counters)
	if err := os.WriteFile(filepath.Join(report, "soak.md"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("soak report %s:\n%s", filepath.Join(report, "soak.md"), md)

	// Nothing lost: every exchange simulated is a transaction the sensor
	// sent, stored once (the store counts distinct transaction ids).
	if n := sent.Load(); n == 0 || int64(st.Transactions) != n || st.Dropped != 0 {
		t.Errorf("sensor: %d exchanges replayed, %d transactions emitted, %d dropped", n, st.Transactions, st.Dropped)
	}
	if stored != sent.Load() {
		t.Errorf("ClickHouse holds %d distinct transactions, %d were sent", stored, sent.Load())
	}
	for _, name := range []string{"apiscout_sensor_records_dropped_total", "apiscout_kafka_records_dropped_total",
		"apiscout_consumer_sequence_gaps_total", "apiscout_consumer_dead_letters_total", "apiscout_storage_insert_failures_total"} {
		if counters[name] != 0 {
			t.Errorf("%s = %g, want 0", name, counters[name])
		}
	}
	// Flat after warm-up.
	if len(samples) < 8 {
		t.Fatalf("%d samples: too few to judge the curve", len(samples))
	}
	if sum.q4.goroutines > sum.q2.goroutines+soakGoroutineSlack {
		t.Errorf("goroutines grew: median %d in the second quarter, %d in the last", sum.q2.goroutines, sum.q4.goroutines)
	}
	if sum.q4.fds > sum.q2.fds+soakFDSlack {
		t.Errorf("open descriptors grew: median %d in the second quarter, %d in the last", sum.q2.fds, sum.q4.fds)
	}
	if float64(sum.q4.live) > soakHeapGrowth*float64(sum.q2.live) {
		t.Errorf("live heap grew: median %s in the second quarter, %s in the last (heap.pprof in the report shows what holds it)",
			mib(sum.q2.live), mib(sum.q4.live))
	}
}

// replay writes the demo scenario's capture into the FIFO at rate
// exchanges per second for dur, then closes it (the sensor sees the end of
// the capture). Packet time runs ahead of the clock: the pace is in
// exchanges, not simulated seconds. The scenario is run in rounds of two
// hours of packet time (each with its four attacks and new clients), a
// minute apart so that every connection of a round has ended before the
// next begins. A full FIFO makes it wait: a sensor reading files never
// drops.
func replay(fifo string, dur time.Duration, rate float64, sent *atomic.Int64) error {
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 64<<10)
	pw, err := simulate.NewPcapWriter(bw)
	if err != nil {
		return err
	}
	errDone := errors.New("done")
	emit := func(ex *simulate.Exchange) error {
		if err := pw.Add(ex); err != nil {
			return err
		}
		sent.Add(1)
		return nil
	}
	start := time.Now()
	pace := func(ex *simulate.Exchange) error {
		if n := sent.Load(); n%64 == 0 {
			el := time.Since(start)
			if el >= dur {
				return errDone
			}
			if ahead := time.Duration(float64(n)/rate*float64(time.Second)) - el; ahead > 0 {
				// Hand the sensor what is written before waiting.
				if err := bw.Flush(); err != nil {
					return err
				}
				time.Sleep(ahead)
			}
		}
		return emit(ex)
	}
	const round = 2 * time.Hour
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for seed := uint64(1); ; seed++ {
		_, err := simulate.Run(simulate.Options{Scenario: "demo", Seed: seed, Start: at, Duration: round}, pace)
		if errors.Is(err, errDone) {
			break
		}
		if err != nil {
			return err
		}
		at = at.Add(round + time.Minute)
	}
	if err := pw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// soakAnalysis is the distributed analyzer's batch handler (package
// ingest, checkpoints included) over a store that counts what it wrote;
// it remembers the first failure.
type soakAnalysis struct {
	h         consume.Handler
	stored    atomic.Int64
	anomalies atomic.Int64
	mu        sync.Mutex
	failed    error
}

// countingStore counts the transactions and incident updates stored.
type countingStore struct {
	*clickhouse.Store
	an *soakAnalysis
}

func (s countingStore) WriteTransactions(ctx context.Context, txs []*wire.Transaction) error {
	err := s.Store.WriteTransactions(ctx, txs)
	if err == nil {
		s.an.stored.Add(int64(len(txs)))
	}
	return err
}

func (s countingStore) WriteAnomalies(ctx context.Context, as []anomaly.Anomaly) error {
	err := s.Store.WriteAnomalies(ctx, as)
	if err == nil {
		s.an.anomalies.Add(int64(len(as)))
	}
	return err
}

func (a *soakAnalysis) Handle(ctx context.Context, batch []consume.Record) error {
	if err := a.h.Handle(ctx, batch); err != nil {
		if ctx.Err() == nil {
			a.mu.Lock()
			a.failed = err
			a.mu.Unlock()
		}
		return err
	}
	return nil
}

// Durable passes the checkpoints' offsets on to the consumer.
func (a *soakAnalysis) Durable() map[int]int64 { return a.h.(consume.Durable).Durable() }

func (a *soakAnalysis) err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failed
}

// soakSample is one point of the curve.
type soakSample struct {
	at                   time.Duration
	heap, live, rss      uint64
	goroutines, fds      int
	sent, sensed, stored int64
}

func sampleProcess(at time.Duration) soakSample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	s := soakSample{at: at, heap: ms.HeapInuse, live: live[0].Value.Uint64(), goroutines: runtime.NumGoroutine()}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.fds = len(ents) - 1 // the descriptor ReadDir itself holds
	}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseUint(f[1], 10, 64)
			s.rss = pages * uint64(os.Getpagesize())
		}
	}
	return s
}

// soakWindow holds the medians of one stretch of the run.
type soakWindow struct {
	heap, live, rss uint64
	goroutines, fds int
}

type soakSummary struct {
	first, last soakSample
	q2, q4      soakWindow
	max         soakWindow
}

// summarize takes the medians of the second quarter (25-50% of the
// samples, after the 20% warm-up) and of the last quarter.
func summarize(s []soakSample) soakSummary {
	var sum soakSummary
	if len(s) == 0 {
		return sum
	}
	sum.first, sum.last = s[0], s[len(s)-1]
	n := len(s)
	sum.q2, sum.q4 = medians(s[n/4:n/2]), medians(s[n*3/4:])
	for _, x := range s[n/5:] {
		sum.max.heap, sum.max.live, sum.max.rss = max(sum.max.heap, x.heap), max(sum.max.live, x.live), max(sum.max.rss, x.rss)
		sum.max.goroutines, sum.max.fds = max(sum.max.goroutines, x.goroutines), max(sum.max.fds, x.fds)
	}
	return sum
}

func medians(s []soakSample) soakWindow {
	if len(s) == 0 {
		return soakWindow{}
	}
	med := func(v func(soakSample) uint64) uint64 {
		xs := make([]uint64, len(s))
		for i, x := range s {
			xs[i] = v(x)
		}
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	return soakWindow{
		heap:       med(func(x soakSample) uint64 { return x.heap }),
		live:       med(func(x soakSample) uint64 { return x.live }),
		rss:        med(func(x soakSample) uint64 { return x.rss }),
		goroutines: int(med(func(x soakSample) uint64 { return uint64(x.goroutines) })),
		fds:        int(med(func(x soakSample) uint64 { return uint64(x.fds) })),
	}
}

func soakMarkdown(dur time.Duration, rate float64, every, elapsed, drained, cpu time.Duration, sent int64, st sensor.Stats,
	stored int64, an *soakAnalysis, sum soakSummary, counters map[string]float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Soak: %s at %.0f exchanges/s (sampled every %s, %s)\n\n", dur, rate, every, time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "| | first sample | second quarter (median) | last quarter (median) | max after warm-up | last sample |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| heap in use | %s | %s | %s | %s | %s |\n", mib(sum.first.heap), mib(sum.q2.heap), mib(sum.q4.heap), mib(sum.max.heap), mib(sum.last.heap))
	fmt.Fprintf(&b, "| live heap (kept by the last GC) | %s | %s | %s | %s | %s |\n", mib(sum.first.live), mib(sum.q2.live), mib(sum.q4.live), mib(sum.max.live), mib(sum.last.live))
	fmt.Fprintf(&b, "| RSS | %s | %s | %s | %s | %s |\n", mib(sum.first.rss), mib(sum.q2.rss), mib(sum.q4.rss), mib(sum.max.rss), mib(sum.last.rss))
	fmt.Fprintf(&b, "| goroutines | %d | %d | %d | %d | %d |\n", sum.first.goroutines, sum.q2.goroutines, sum.q4.goroutines, sum.max.goroutines, sum.last.goroutines)
	fmt.Fprintf(&b, "| open fds | %d | %d | %d | %d | %d |\n\n", sum.first.fds, sum.q2.fds, sum.q4.fds, sum.max.fds, sum.last.fds)
	fmt.Fprintf(&b, "- replayed %d exchanges in %s: %.0f/s; stored all by %s: %.0f/s end to end\n",
		sent, elapsed.Round(time.Second), float64(sent)/elapsed.Seconds(), drained.Round(time.Second), float64(stored)/drained.Seconds())
	fmt.Fprintf(&b, "- CPU of this process (simulator, sensor, producer, consumer, engine, store client): %s, %.0f µs per transaction\n",
		cpu.Round(100*time.Millisecond), float64(cpu.Microseconds())/float64(max(sent, 1)))
	fmt.Fprintf(&b, "- sensor: %d packets, %d transactions, %d dropped; ClickHouse: %d distinct transactions; %d incident updates\n",
		st.Packets, st.Transactions, st.Dropped, stored, an.anomalies.Load())
	names := make([]string, 0, len(counters))
	for k := range counters {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		fmt.Fprintf(&b, "- %s %g\n", k, counters[k])
	}
	return b.String()
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// gatherCounters sums each named metric over its labels.
func gatherCounters(t *testing.T, reg *prometheus.Registry, names ...string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, n := range names {
		out[n] = 0
	}
	for _, mf := range mfs {
		if _, ok := out[mf.GetName()]; !ok {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[mf.GetName()] += m.GetCounter().GetValue()
		}
	}
	return out
}

// fileLogger logs warnings and errors to path: t.Log would hold a long
// run's lines in memory.
func fileLogger(t *testing.T, path string) *zap.Logger {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(f), zap.WarnLevel)
	return zap.New(core)
}

func countTransactions(addr, db string) (int64, error) {
	conn, err := ch.Open(&ch.Options{Addr: []string{addr}})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT uniqExact(id) FROM "+db+".transactions").Scan(&n); err != nil {
		return 0, fmt.Errorf("count stored transactions: %w", err)
	}
	return int64(n), nil
}

func dropDatabase(addr, db string) {
	conn, err := ch.Open(&ch.Options{Addr: []string{addr}})
	if err != nil {
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
}
