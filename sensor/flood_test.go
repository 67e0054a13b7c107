//go:build unix

package sensor

import (
	"container/heap"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/pcapgen"
	"github.com/apiscout/apiscout/wire"
)

// Floods: a SYN flood from spoofed sources, a churn of short connections,
// many concurrent idle connections (each holding half a request head) and
// one endless response, each with legitimate transactions (distinct paths)
// interleaved in packet time. The traffic is generated as it is read: a
// goroutine writes pcap into a FIFO that the sensor opens as its capture
// file, so the whole pipeline runs and nothing lands on disk.
//
// go test runs scaled-down floods under the default caps and under small
// ones and checks what can fail: the Go heap stays within what the caps
// allow (tracked connections times a per-connection budget, plus the
// buffers and the queue, plus slack), no worker tracks more connections
// than sensor.max_connections, evictions are counted in the metrics, the
// endless response is reported cut at the body limit, and every
// legitimate transaction is reported complete. APISCOUT_FLOOD=full runs
// the full sizes (make flood) and logs the README's figures table.

type floodKind int

const (
	floodSYN floodKind = iota
	floodShort
	floodIdle
	floodEndless
)

func (k floodKind) String() string {
	return [...]string{"SYN flood, spoofed sources", "short connections", "idle connections", "endless response"}[k]
}

// floodChunk is the body of the endless response sent per flood unit.
const floodChunk = 64 << 10

// floodSpec is one flood.
type floodSpec struct {
	kind floodKind
	// units are SYNs, connections, or floodChunk pieces of the endless
	// body; rate is units per second of packet time.
	units int
	rate  float64
	legit int
	// small runs under floodSmallCaps instead of the defaults.
	small bool
}

// name is the subtest's: syn, short, idle or endless, then the caps.
func (s floodSpec) name() string {
	caps := "default_caps"
	if s.small {
		caps = "small_caps"
	}
	return [...]string{"syn", "short", "idle", "endless"}[s.kind] + "/" + caps
}

// duration is the packet time the flood spans; legitimate transactions
// start evenly over it.
func (s floodSpec) duration() time.Duration {
	return time.Duration(float64(s.units) / s.rate * float64(time.Second))
}

// floodSmallCaps are caps far below the floods, so that they are what
// holds memory down.
func floodSmallCaps(cfg *config.SensorConfig) {
	cfg.MaxConnections = 4096
	cfg.MaxBufferedBytes = 8 << 20
	cfg.MaxBufferedPerConn = 256 << 10
	cfg.QueueSize = 1024
}

// Memory budget of a run: floodPerConn bytes per connection tracked at
// the peak, never counting more than the cap (gopacket's connection and
// its pool, the parsers, a 1 KiB overlap ring for a direction that carried
// bytes, map entries: measured 1.3 to 1.6 KiB for a bare SYN, as
// gopacket's pool grows by doublings, and 4.6 to 5 KiB for an idle
// connection holding half a request head), floodPerRecord per
// record the queue may hold, the configured reassembly buffer, and
// floodSlack for the runtime, pools, the generator and the registry.
const (
	floodPerConn   = 6 << 10
	floodPerRecord = 2 << 10
	floodSlack     = 32 << 20
)

var floodServer = netip.MustParseAddrPort("10.2.0.1:8080")

// floodAddr is the n-th address of 172.16.0.0/12 (the flood's sources),
// with a port that varies too.
func floodAddr(n int) netip.AddrPort {
	a := [4]byte{172, 16 + byte(n>>16&0x0f), byte(n >> 8), byte(n)}
	return netip.AddrPortFrom(netip.AddrFrom4(a), uint16(1024+n*7919%60000))
}

// legitAddr is the j-th legitimate client, in 10.1.0.0/16.
func legitAddr(j int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(j >> 8), byte(j)}), uint16(20000+j%40000))
}

func legitPath(j int) string { return "/legit/" + strconv.Itoa(j) }

var (
	floodResp   = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
	floodChurn  = []byte("GET /churn HTTP/1.1\r\nHost: shop.test\r\n\r\n")
	floodNoBody = []byte("HTTP/1.1 204 No Content\r\n\r\n")
	// floodHalfHead never ends: a slow client holding a connection open.
	floodHalfHead = []byte("GET /idle HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: slow\r\n")
	endlessHead   = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
)

// pktHeap orders pending frames by time, then by when they were built.
type pktHeap []pktItem

type pktItem struct {
	p   pcapgen.Packet
	seq uint64
}

func (h pktHeap) Len() int { return len(h) }
func (h pktHeap) Less(i, j int) bool {
	if !h[i].p.Time.Equal(h[j].p.Time) {
		return h[i].p.Time.Before(h[j].p.Time)
	}
	return h[i].seq < h[j].seq
}
func (h pktHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pktHeap) Push(x any)   { *h = append(*h, x.(pktItem)) }
func (h *pktHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = pktItem{}
	*h = old[:len(old)-1]
	return x
}

// floodGen writes the flood and the legitimate transactions as one
// capture in packet-time order.
type floodGen struct {
	spec    floodSpec
	w       *pcapgen.Writer
	pending pktHeap
	seq     uint64
	packets int
	endless *pcapgen.Conn
	body    []byte
}

func (g *floodGen) push(pkts []pcapgen.Packet) {
	for _, p := range pkts {
		g.seq++
		heap.Push(&g.pending, pktItem{p: p, seq: g.seq})
	}
}

// drain writes the pending frames earlier than t (all when t is zero).
func (g *floodGen) drain(t time.Time) error {
	for len(g.pending) > 0 && (t.IsZero() || g.pending[0].p.Time.Before(t)) {
		it := heap.Pop(&g.pending).(pktItem)
		if err := g.w.Write(it.p); err != nil {
			return err
		}
		g.packets++
	}
	return nil
}

// unit builds the i-th flood unit, starting at ts.
func (g *floodGen) unit(i int, ts time.Time) {
	switch g.spec.kind {
	case floodSYN:
		g.push([]pcapgen.Packet{pcapgen.SYN(ts, floodAddr(i), floodServer, uint32(i)*2654435761)})
	case floodShort:
		g.push(pcapgen.NewConn(floodAddr(i), floodServer, ts).Handshake().Client(floodChurn).Server(floodNoBody).Close().Packets())
	case floodIdle:
		g.push(pcapgen.NewConn(floodAddr(i), floodServer, ts).Handshake().Client(floodHalfHead).Packets())
	case floodEndless:
		if g.endless == nil {
			g.endless = pcapgen.NewConn(netip.MustParseAddrPort("10.3.0.1:50000"), floodServer, ts).Step(5 * time.Microsecond).
				Handshake().Client([]byte("GET /stream/endless HTTP/1.1\r\nHost: shop.test\r\n\r\n")).Server(endlessHead)
			g.body = []byte(strings.Repeat("0123456789abcdef", floodChunk/16))
		}
		g.push(g.endless.At(ts).Server(g.body).Take())
	}
}

func legitConv(j int, ts time.Time) []pcapgen.Packet {
	req := []byte("GET " + legitPath(j) + " HTTP/1.1\r\nHost: shop.test\r\nAccept: application/json\r\n\r\n")
	return pcapgen.NewConn(legitAddr(j), floodServer, ts).Handshake().Client(req).Server(floodResp).Close().Packets()
}

// run generates everything: flood units and legitimate conversations
// start on two even grids over the flood's duration.
func (g *floodGen) run() error {
	s := g.spec
	unitGap := float64(time.Second) / s.rate
	legitGap := float64(s.duration()) / float64(s.legit)
	i, j := 0, 0
	for i < s.units || j < s.legit {
		ti := t0.Add(time.Duration(float64(i) * unitGap))
		tj := t0.Add(time.Duration((float64(j) + 0.5) * legitGap))
		if j >= s.legit || i < s.units && ti.Before(tj) {
			if err := g.drain(ti); err != nil {
				return err
			}
			g.unit(i, ti)
			i++
			continue
		}
		if err := g.drain(tj); err != nil {
			return err
		}
		g.push(legitConv(j, tj))
		j++
	}
	if err := g.drain(time.Time{}); err != nil {
		return err
	}
	return g.w.Flush()
}

// floodSink matches legitimate records by path and keeps the endless one.
type floodSink struct {
	legit                 []uint8 // per legitimate path: 1 seen, 2 seen complete
	other, legitDuplicate int
	endless               *wire.Transaction
}

func (s *floodSink) Write(_ context.Context, recs []*wire.Transaction) error {
	for _, tx := range recs {
		switch {
		case strings.HasPrefix(tx.Path, "/legit/"):
			j, err := strconv.Atoi(tx.Path[len("/legit/"):])
			if err != nil || j < 0 || j >= len(s.legit) {
				s.other++
				continue
			}
			if s.legit[j] != 0 {
				s.legitDuplicate++
			}
			s.legit[j] = 1
			if tx.Status == 200 && string(tx.ResponseBody) == `{"ok":true}` && tx.Flags == 0 {
				s.legit[j] = 2
			}
		case tx.Path == "/stream/endless":
			s.endless = tx
		default:
			s.other++
		}
	}
	return nil
}
func (s *floodSink) Close() error { return nil }

// floodResult is what one flood run measured.
type floodResult struct {
	spec                     floodSpec
	cfg                      config.SensorConfig
	st                       Stats
	reg                      *prometheus.Registry
	sink                     *floodSink
	generated                int
	elapsed                  time.Duration
	heapBase, heapLivePeak   uint64 // live heap (after a GC)
	heapTotalPeak            uint64 // heap objects, garbage not yet swept included
	legitSeen, legitComplete int
}

// peakGrowth is the peak live heap above what was live before the run.
func (r *floodResult) peakGrowth() uint64 {
	if r.heapLivePeak < r.heapBase {
		return 0
	}
	return r.heapLivePeak - r.heapBase
}

// budget is what the caps allow the run's heap to grow by.
func (r *floodResult) budget() uint64 {
	conns := min(r.st.ConnectionsPeak, r.cfg.MaxConnections)
	return uint64(conns)*floodPerConn + uint64(r.cfg.QueueSize)*floodPerRecord +
		uint64(r.cfg.MaxBufferedBytes) + floodSlack
}

// connections is how many connections the capture holds: one per flood
// unit (the endless response is one), one per legitimate transaction.
func (s floodSpec) connections() int {
	if s.kind == floodEndless {
		return 1 + s.legit
	}
	return s.units + s.legit
}

func (r *floodResult) metric(t *testing.T, name string, labels ...string) float64 {
	return (&evResult{reg: r.reg}).metric(t, name, labels...)
}

// heapSampler keeps the peaks of the live heap (as of the last
// collection) and of heap objects (garbage not yet swept included).
type heapSampler struct {
	mu                  sync.Mutex
	samples             []rtmetrics.Sample
	livePeak, totalPeak uint64
}

func newHeapSampler() *heapSampler {
	return &heapSampler{samples: []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}}
}

// sample reads the heap, after a collection of its own when gc is set.
func (h *heapSampler) sample(gc bool) uint64 {
	if gc {
		runtime.GC()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	rtmetrics.Read(h.samples)
	live := h.samples[0].Value.Uint64()
	h.livePeak = max(h.livePeak, live)
	h.totalPeak = max(h.totalPeak, h.samples[1].Value.Uint64())
	return live
}

// runFlood streams spec through a sensor and measures it. The live heap
// is sampled after a forced collection every gcEvery (none when zero:
// collections of a GiB heap would slow the sensor measured) and once when
// the generator has written everything, before the end of input makes the
// sensor close its connections: the floods' peak.
func runFlood(t *testing.T, spec floodSpec, gcEvery time.Duration) *floodResult {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "flood.pcap")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	cfg := config.Default().Sensor
	cfg.Pcap, cfg.Progress, cfg.ID, cfg.RedactKey = []string{fifo}, false, "flood", "flood-key-0123456789"
	if spec.small {
		floodSmallCaps(&cfg)
	}
	res := &floodResult{spec: spec, cfg: cfg, reg: prometheus.NewRegistry(), sink: &floodSink{legit: make([]uint8, spec.legit)}}
	p, err := New(cfg, zap.NewNop(), res.reg, res.sink)
	if err != nil {
		t.Fatal(err)
	}

	hs := newHeapSampler()
	runtime.GC() // and sample's: the second empties the pools' victim caches
	res.heapBase = hs.sample(true)

	genErr := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			genErr <- err
			return
		}
		defer f.Close()
		w, err := pcapgen.NewWriter(f)
		if err != nil {
			genErr <- err
			return
		}
		g := &floodGen{spec: spec, w: w}
		err = g.run()
		res.generated = g.packets
		hs.sample(true)
		genErr <- err
	}()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		lastGC := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			gc := gcEvery > 0 && time.Since(lastGC) >= gcEvery
			if gc {
				lastGC = time.Now()
			}
			hs.sample(gc)
		}
	}()
	start := time.Now()
	runErr := p.Run(context.Background())
	res.elapsed = time.Since(start)
	close(stop)
	wg.Wait()
	if err := <-genErr; err != nil {
		t.Fatalf("generating the flood: %v", err)
	}
	if runErr != nil {
		t.Fatal(runErr)
	}
	res.st = p.Stats()
	res.heapLivePeak, res.heapTotalPeak = hs.livePeak, hs.totalPeak
	for _, v := range res.sink.legit {
		if v > 0 {
			res.legitSeen++
		}
		if v == 2 {
			res.legitComplete++
		}
	}
	return res
}

// check asserts what holds for every flood.
func (r *floodResult) check(t *testing.T) {
	t.Helper()
	if r.st.Packets != uint64(r.generated) {
		t.Errorf("sensor read %d packets of %d", r.st.Packets, r.generated)
	}
	if r.st.ConnectionsPeak > r.cfg.MaxConnections {
		t.Errorf("a worker tracked %d connections at once, over sensor.max_connections %d", r.st.ConnectionsPeak, r.cfg.MaxConnections)
	}
	if g, b := r.peakGrowth(), r.budget(); g > b {
		t.Errorf("live heap grew by %d MiB, over the %d MiB the caps allow (%d connections at the peak)", g>>20, b>>20, r.st.ConnectionsPeak)
	}
	if r.st.Connections != 0 {
		t.Errorf("%d connections still tracked after the end of input", r.st.Connections)
	}
	// No connection may be opened but the capture's own: the ACK that
	// ends a closed connection used to open a ghost that stayed until the
	// idle timeout.
	if got := r.metric(t, "apiscout_tcp_connections_total"); got != float64(r.spec.connections()) {
		t.Errorf("%v connections opened, the capture holds %d", got, r.spec.connections())
	}
	// Evictions: none while the flood fits under the cap; past it, every
	// flood connection beyond what the cap holds at the end was evicted
	// (the legitimate ones close with FIN).
	ev := r.metric(t, "apiscout_tcp_connections_closed_total", "reason", "evicted")
	if ev != float64(r.st.ConnectionsEvicted) {
		t.Errorf("evictions: metric %v, stats %d", ev, r.st.ConnectionsEvicted)
	}
	switch over := r.spec.units - r.cfg.MaxConnections; {
	case r.spec.kind == floodShort || r.spec.kind == floodEndless || over <= 0:
		if ev != 0 {
			t.Errorf("%v connections evicted, none needed", ev)
		}
	case ev < float64(over):
		t.Errorf("%v connections evicted, want at least %d", ev, over)
	}
	if r.spec.kind == floodShort && r.st.ConnectionsPeak > 100 {
		t.Errorf("%d connections tracked at once by a churn of closed ones", r.st.ConnectionsPeak)
	}
	if r.spec.kind == floodEndless {
		r.checkEndless(t)
	}
	// Legitimate connections last a fraction of a millisecond and are the
	// most recently active when the cap bites: none may be evicted, so
	// every legitimate transaction must be reported, complete, once.
	if r.legitComplete != r.spec.legit || r.sink.legitDuplicate != 0 {
		t.Errorf("legitimate transactions: %d of %d reported complete (%d seen, %d duplicates)",
			r.legitComplete, r.spec.legit, r.legitSeen, r.sink.legitDuplicate)
	}
}

// checkEndless: the response that never ends is reported once, at the
// end of input, its body kept up to the body limit and flagged truncated,
// its length counting every byte streamed.
func (r *floodResult) checkEndless(t *testing.T) {
	t.Helper()
	tx := r.sink.endless
	if tx == nil {
		t.Error("the endless response was not reported")
		return
	}
	want := int64(r.spec.units) * floodChunk
	if tx.Status != 200 || !tx.Flags.Has(wire.FlagResponseTruncated) || len(tx.ResponseBody) != r.cfg.BodyLimit ||
		tx.ResponseBodyLen != want {
		t.Errorf("endless response: status %d flags %v, %d body bytes kept (limit %d), length %d of %d",
			tx.Status, tx.Flags, len(tx.ResponseBody), r.cfg.BodyLimit, tx.ResponseBodyLen, want)
	}
}

func (r *floodResult) row() string {
	share := 100 * float64(r.legitComplete) / float64(r.spec.legit)
	return fmt.Sprintf("| %s | %d | %.0f | %d MiB (%d MiB) | %d | %d | %d | %d of %d (%.1f%%) |",
		r.spec.kind, r.st.Packets, float64(r.st.Packets)/r.elapsed.Seconds(), r.peakGrowth()>>20, r.heapTotalPeak>>20,
		r.cfg.MaxConnections, r.st.ConnectionsPeak, r.st.ConnectionsEvicted, r.legitComplete, r.spec.legit, share)
}

// floodSpecs are the floods at full size (APISCOUT_FLOOD=full) or scaled
// down for go test, each under the default caps and under small ones.
// Rates are in packet time: SYNs at 200k/s, new connections at 20k/s,
// the endless response at 1 Gbit/s (1907 chunks of 64 KiB a second).
func floodSpecs(full bool) []floodSpec {
	base := []floodSpec{
		{kind: floodSYN, units: 100_000, rate: 200_000, legit: 1000},
		{kind: floodShort, units: 30_000, rate: 20_000, legit: 1000},
		{kind: floodIdle, units: 20_000, rate: 20_000, legit: 1000},
		{kind: floodEndless, units: 4096, rate: 1907, legit: 1000}, // 256 MiB
	}
	if full {
		base = []floodSpec{
			{kind: floodSYN, units: 1_000_000, rate: 200_000, legit: 10_000},
			{kind: floodShort, units: 1_000_000, rate: 20_000, legit: 10_000},
			{kind: floodIdle, units: 100_000, rate: 20_000, legit: 10_000},
			{kind: floodEndless, units: 32768, rate: 1907, legit: 10_000}, // 2 GiB
		}
	}
	var out []floodSpec
	for _, s := range base {
		small := s
		small.small = true
		out = append(out, s, small)
	}
	return out
}

func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("floods take seconds")
	}
	full := os.Getenv("APISCOUT_FLOOD") == "full"
	gcEvery := 100 * time.Millisecond
	if full {
		gcEvery = 0
	}
	var rows []string
	for _, spec := range floodSpecs(full) {
		t.Run(spec.name(), func(t *testing.T) {
			r := runFlood(t, spec, gcEvery)
			rows = append(rows, r.row())
			t.Log(r.row())
			r.check(t)
		})
	}
	if full {
		t.Logf("figures (GOMAXPROCS=%d; the generator writes the capture on another goroutine):\n%s\n%s",
			runtime.GOMAXPROCS(0), floodHeader, strings.Join(rows, "\n"))
	}
}

const floodHeader = "| flood | packets | packets/s | peak heap: live growth (with garbage) | cap (max_connections) | conns tracked max | evicted | legitimate reported complete |\n" +
	"|---|---:|---:|---:|---:|---:|---:|---:|"
