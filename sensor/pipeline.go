// Package sensor runs the capture pipeline: frames from a source are
// decoded, reassembled into TCP streams, parsed into HTTP (and HTTP/2,
// gRPC, WebSocket, TLS) transactions, redacted, and handed to a Sink.
//
//	source ─▶ decode ─▶ reassemble ─▶ protocols ─▶ redact ─▶ queue ─▶ Sink
//
// Each capture worker owns its decoder and reassembler; the queue to the
// Sink is the only asynchronous hop. Live capture never waits on the Sink:
// a full queue drops and counts. Capture files, which cannot lose anything
// by waiting, block instead, so a replay yields every transaction in the
// same order every time.
package sensor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/net/bpf"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/sensor/capture"
	"github.com/apiscout/apiscout/sensor/decode"
	"github.com/apiscout/apiscout/sensor/protocols"
	"github.com/apiscout/apiscout/sensor/reassemble"
	"github.com/apiscout/apiscout/sensor/redact"
	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// Sink receives batches of records and owns them from then on. Write may
// block; the pipeline's bounded queue absorbs that (live capture drops and
// counts when it is full). Run closes the Sink when it returns.
type Sink interface {
	Write(ctx context.Context, recs []*wire.Transaction) error
	Close() error
}

// HeartbeatSink is implemented by Sinks that carry the sensor's health
// downstream, so a consumer can tell a quiet network from a blind sensor.
type HeartbeatSink interface {
	WriteHeartbeat(ctx context.Context, hb *wire.Heartbeat) error
}

// Stats are cumulative counters of one pipeline.
type Stats struct {
	Packets, Bytes   uint64
	DecodeErrors     uint64
	Transactions     uint64
	Dropped          uint64
	KernelDrops      uint64
	CaptureLossBytes uint64
	StreamBytes      uint64
	LastPacket       time.Time
	// Connections is the TCP connections tracked now, all workers
	// together; ConnectionsPeak the most one worker tracked at once
	// (sensor.max_connections caps each worker); ConnectionsEvicted those
	// closed early to stay under that cap.
	Connections, ConnectionsPeak int
	ConnectionsEvicted           uint64
}

// Pipeline is one sensor.
type Pipeline struct {
	cfg     config.SensorConfig
	log     *zap.Logger
	sink    Sink
	factory stream.Factory
	red     *redact.Redactor
	m       *metrics
	rm      *reassemble.Metrics
	queue   chan *wire.Transaction
	block   bool // files: wait for room instead of dropping

	packets, bytes, decodeErrs, txs, dropped atomic.Uint64
	kernelDrops, gapBytes, streamBytes       atomic.Uint64
	evicted                                  atomic.Uint64
	lastPacket                               atomic.Int64
	conns, connsPeak                         atomic.Int64
	seq                                      uint64
	hbSeq                                    uint64
	sinkErr                                  error
}

type metrics struct {
	packets   prometheus.Counter
	bytes     prometheus.Counter
	decode    *prometheus.CounterVec
	records   prometheus.Counter
	dropped   *prometheus.CounterVec
	kernel    prometheus.Counter
	queue     prometheus.Gauge
	sinkWrite prometheus.Histogram
}

// Drop reasons (the label set of apiscout_sensor_records_dropped_total).
const (
	DropQueueFull = "queue_full"
	DropSinkError = "sink_error"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		packets: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_sensor_packets_total", Help: "Frames captured."}),
		bytes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_sensor_bytes_total", Help: "Bytes of frames captured."}),
		decode: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_sensor_frames_skipped_total",
			Help: "Frames that yielded no TCP segment, by reason."}, []string{"reason"}),
		records: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_sensor_transactions_total", Help: "Transactions handed to the output."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_sensor_records_dropped_total",
			Help: "Transactions dropped before the output, by reason."}, []string{"reason"}),
		kernel: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_sensor_kernel_drops_total", Help: "Packets the kernel dropped from the capture ring."}),
		queue:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "apiscout_sensor_queue_depth", Help: "Transactions waiting for the output."}),
		sinkWrite: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "apiscout_sensor_output_write_seconds",
			Help: "Time to hand one batch to the output.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
	}
	if reg != nil {
		reg.MustRegister(m.packets, m.bytes, m.decode, m.records, m.dropped, m.kernel, m.queue, m.sinkWrite)
	}
	return m
}

// New builds the whole pipeline before anything runs: a bad setting fails
// here, not after capture has started.
func New(cfg config.SensorConfig, log *zap.Logger, reg prometheus.Registerer, sink Sink) (*Pipeline, error) {
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = host
	}
	factory, err := protocols.NewFactory(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	red, err := redact.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("redaction: %w", err)
	}
	if reg != nil {
		if err := red.Register(reg); err != nil {
			return nil, err
		}
	}
	if red.Ephemeral() {
		log.Warn("sensor.redact_key is not set: credential fingerprints use a random key and will not match across restarts or sensors")
	}
	qs := cfg.QueueSize
	if qs < 1 {
		qs = 1
	}
	return &Pipeline{cfg: cfg, log: log, sink: sink, factory: factory, red: red,
		m: newMetrics(reg), rm: reassemble.NewMetrics(reg), queue: make(chan *wire.Transaction, qs)}, nil
}

// Run captures until the input ends (files) or ctx is cancelled (live),
// flushes every connection, drains the queue into the Sink and closes it.
func (p *Pipeline) Run(ctx context.Context) error {
	var srcErr error
	outDone := make(chan struct{})
	outCtx, cancelOut := context.WithCancel(context.Background())
	defer cancelOut()
	go func() {
		defer close(outDone)
		p.output(outCtx)
	}()
	switch {
	case len(p.cfg.Pcap) > 0:
		p.block = true
		srcErr = p.runFiles(ctx)
	case p.cfg.Interface != "":
		srcErr = p.runInterface(ctx)
	case p.cfg.VXLANListen != "" || p.cfg.GeneveListen != "":
		srcErr = p.runUDP(ctx)
	default:
		srcErr = errors.New("no traffic source: set sensor.pcap (--pcap), sensor.interface (--interface) or sensor.vxlan_listen (--vxlan-listen)")
	}
	close(p.queue)
	<-outDone
	closeErr := p.sink.Close()
	return errors.Join(srcErr, p.sinkErr, closeErr)
}

// Stats returns the counters so far.
func (p *Pipeline) Stats() Stats {
	return Stats{
		Packets: p.packets.Load(), Bytes: p.bytes.Load(), DecodeErrors: p.decodeErrs.Load(),
		Transactions: p.txs.Load(), Dropped: p.dropped.Load(), KernelDrops: p.kernelDrops.Load(),
		CaptureLossBytes: p.gapBytes.Load(), StreamBytes: p.streamBytes.Load(),
		LastPacket:  time.Unix(0, p.lastPacket.Load()).UTC(),
		Connections: int(p.conns.Load()), ConnectionsPeak: int(p.connsPeak.Load()), ConnectionsEvicted: p.evicted.Load(),
	}
}

// worker is one capture goroutine's decoder and reassembler.
type worker struct {
	p   *Pipeline
	dec *decode.Decoder
	r   *reassemble.Reassembler
	seg decode.Segment
	// gap, stream bytes, evictions and connections already added to the
	// pipeline's totals.
	gap, streamed, evicted uint64
	live, peak             int
}

func (p *Pipeline) newWorker(id int) *worker {
	w := &worker{p: p, dec: decode.New(4096)}
	opts := reassemble.Options{
		MaxBufferedBytes: p.cfg.MaxBufferedBytes, MaxBufferedPerConn: p.cfg.MaxBufferedPerConn,
		MaxConnections: p.cfg.MaxConnections, IdleTimeout: p.cfg.IdleTimeout, Midstream: p.cfg.Midstream,
		ConnIDBase: uint64(id) << 48,
	}
	w.r = reassemble.New(opts, p.factory, p.emit, p.rm)
	return w
}

// packet runs one frame through decode and reassembly.
func (w *worker) packet(pk capture.Packet) {
	p := w.p
	p.packets.Add(1)
	p.bytes.Add(uint64(pk.CI.Length))
	p.m.packets.Inc()
	p.m.bytes.Add(float64(pk.CI.Length))
	p.lastPacket.Store(pk.CI.Timestamp.UnixNano())
	var err error
	switch pk.Encap {
	case capture.EncapVXLAN:
		w.seg.Mirror = wire.Mirror{}
		err = w.dec.VXLAN(pk.Data, pk.CI.Timestamp, &w.seg, 1)
	case capture.EncapGeneve:
		w.seg.Mirror = wire.Mirror{}
		err = w.dec.Geneve(pk.Data, pk.CI.Timestamp, &w.seg, 1)
	default:
		err = w.dec.Decode(pk.Data, pk.Link, pk.CI.Timestamp, &w.seg)
	}
	if err != nil {
		reason := decode.Reason(err)
		if reason != decode.ReasonNotTCP && reason != decode.ReasonFragment {
			p.decodeErrs.Add(1)
		}
		p.m.decode.WithLabelValues(reason).Inc()
		return
	}
	if pk.CI.CaptureLength < pk.CI.Length {
		p.m.decode.WithLabelValues("truncated_frame").Inc() // reassembly will see the gap
	}
	w.r.Packet(&w.seg, gopacket.CaptureInfo{Timestamp: pk.CI.Timestamp, CaptureLength: pk.CI.CaptureLength, Length: pk.CI.Length})
	w.account()
}

// account moves the reassembler's byte totals into the pipeline's.
func (w *worker) account() {
	if d := w.r.GapBytes - w.gap; d > 0 {
		w.p.gapBytes.Add(d)
		w.gap = w.r.GapBytes
	}
	if d := w.r.Bytes - w.streamed; d > 0 {
		w.p.streamBytes.Add(d)
		w.streamed = w.r.Bytes
	}
	if d := w.r.Evicted - w.evicted; d > 0 {
		w.p.evicted.Add(d)
		w.evicted = w.r.Evicted
	}
	if n := w.r.Live(); n != w.live {
		w.p.conns.Add(int64(n - w.live))
		w.live = n
	}
	if w.r.PeakLive > w.peak {
		w.peak = w.r.PeakLive
		for {
			old := w.p.connsPeak.Load()
			if int64(w.peak) <= old || w.p.connsPeak.CompareAndSwap(old, int64(w.peak)) {
				break
			}
		}
	}
}

func (w *worker) close(reason string) {
	w.r.Close(reason)
	w.account()
}

// emit receives a parser's record: redact first, then queue.
func (p *Pipeline) emit(tx *wire.Transaction) {
	p.red.Apply(tx)
	tx.SensorID = p.cfg.ID
	if p.block {
		p.queue <- tx
		return
	}
	select {
	case p.queue <- tx:
	default:
		p.dropped.Add(1)
		p.m.dropped.WithLabelValues(DropQueueFull).Inc()
	}
}

// output batches queued records into the Sink and sends heartbeats.
func (p *Pipeline) output(ctx context.Context) {
	const maxBatch = 4096
	batch := make([]*wire.Transaction, 0, maxBatch)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastHB := time.Now()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		start := time.Now()
		if err := p.sink.Write(ctx, batch); err != nil {
			p.dropped.Add(uint64(len(batch)))
			p.m.dropped.WithLabelValues(DropSinkError).Add(float64(len(batch)))
			if p.sinkErr == nil {
				p.log.Error("output failed; records dropped", zap.Error(err), zap.Int("records", len(batch)))
			}
			p.sinkErr = err
		}
		p.m.sinkWrite.Observe(time.Since(start).Seconds())
		batch = make([]*wire.Transaction, 0, maxBatch)
	}
	for {
		select {
		case tx, ok := <-p.queue:
			if !ok {
				flush()
				p.heartbeat(ctx)
				return
			}
			p.seq++
			tx.Seq = p.seq
			p.txs.Add(1)
			p.m.records.Inc()
			batch = append(batch, tx)
			if len(batch) == maxBatch {
				flush()
			}
		case <-tick.C:
			p.m.queue.Set(float64(len(p.queue)))
			flush()
			if time.Since(lastHB) >= 10*time.Second {
				p.heartbeat(ctx)
				lastHB = time.Now()
			}
		}
	}
}

func (p *Pipeline) heartbeat(ctx context.Context) {
	hs, ok := p.sink.(HeartbeatSink)
	if !ok {
		return
	}
	p.hbSeq++
	st := p.Stats()
	hb := &wire.Heartbeat{SensorID: p.cfg.ID, Seq: p.hbSeq, Time: st.LastPacket, Packets: st.Packets, Bytes: st.Bytes,
		KernelDrops: st.KernelDrops, CaptureLossBytes: st.CaptureLossBytes,
		AckedBytes: st.StreamBytes + st.CaptureLossBytes, Transactions: st.Transactions}
	if st.Dropped > 0 {
		hb.Dropped = map[string]uint64{"records": st.Dropped}
	}
	if err := hs.WriteHeartbeat(ctx, hb); err != nil {
		p.log.Warn("heartbeat not delivered", zap.Error(err))
	}
}

// runFiles reads capture files in time order on one worker, so output is
// deterministic.
func (p *Pipeline) runFiles(ctx context.Context) error {
	src, err := capture.OpenFiles(p.cfg.Pcap)
	if err != nil {
		return err
	}
	defer src.Close()
	w := p.newWorker(0)
	prog := newProgress(p.cfg.Progress, src.Progress)
	started := time.Now()
	var readErr error
	for i := 0; ; i++ {
		if i&1023 == 0 {
			if ctx.Err() != nil {
				readErr = ctx.Err()
				break
			}
			prog.update(p.packets.Load(), p.txs.Load())
		}
		pk, err := src.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = err
				p.log.Error("capture file error; what was read before it is kept", zap.Error(err))
			}
			break
		}
		w.packet(pk)
	}
	w.close("shutdown")
	prog.done()
	st := p.Stats()
	p.log.Info("capture files read",
		zap.Strings("files", p.cfg.Pcap), zap.Uint64("packets", st.Packets), zap.Uint64("bytes", st.Bytes),
		zap.Uint64("transactions_parsed", st.Transactions+uint64(len(p.queue))), zap.Uint64("frames_skipped_malformed", st.DecodeErrors),
		zap.Uint64("capture_loss_bytes", st.CaptureLossBytes), zap.Duration("took", time.Since(started)))
	return readErr
}

// runInterface captures with one AF_PACKET ring per fanout member.
func (p *Pipeline) runInterface(ctx context.Context) error {
	n := p.cfg.Fanout
	if n < 1 {
		n = 1
	}
	bpf, err := compileFilter(p.cfg.BPF, p.cfg.Snaplen)
	if err != nil {
		return err
	}
	group := uint16(0)
	if n > 1 {
		group = uint16(os.Getpid() & 0xffff)
	}
	srcs := make([]*capture.Interface, 0, n)
	for i := 0; i < n; i++ {
		s, err := capture.OpenInterface(capture.InterfaceOptions{Name: p.cfg.Interface, RingSize: p.cfg.RingSize,
			Snaplen: p.cfg.Snaplen, FanoutGroup: group, BPF: bpf})
		if err != nil {
			for _, s := range srcs {
				s.Close()
			}
			return err
		}
		srcs = append(srcs, s)
	}
	p.log.Info("capturing", zap.String("interface", p.cfg.Interface), zap.Int("workers", n), zap.String("bpf", p.cfg.BPF))
	var wg sync.WaitGroup
	for i, s := range srcs {
		wg.Add(1)
		go func(i int, s *capture.Interface) {
			defer wg.Done()
			p.live(ctx, p.newWorker(i), s, nil)
		}(i, s)
	}
	// Kernel drop counters, summed over the rings: every second, and once
	// more after the workers stop, before the rings are closed (reading a
	// closed ring's counters races with Close and loses the last second).
	readDrops := func() {
		var total uint64
		for _, s := range srcs {
			d, _ := s.Drops()
			total += d
		}
		if prev := p.kernelDrops.Swap(total); total > prev {
			p.m.kernel.Add(float64(total - prev))
		}
	}
	done, statsDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(statsDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				readDrops()
			}
		}
	}()
	wg.Wait()
	close(done)
	<-statsDone
	readDrops()
	for _, s := range srcs {
		s.Close()
	}
	return nil
}

// runUDP receives VXLAN and/or GENEVE mirror traffic.
func (p *Pipeline) runUDP(ctx context.Context) error {
	var srcs []*capture.UDP
	for _, l := range []struct {
		addr  string
		encap capture.Encap
	}{{p.cfg.VXLANListen, capture.EncapVXLAN}, {p.cfg.GeneveListen, capture.EncapGeneve}} {
		if l.addr == "" {
			continue
		}
		s, err := capture.ListenUDP(l.addr, l.encap)
		if err != nil {
			for _, s := range srcs {
				s.Close()
			}
			return err
		}
		p.log.Info("receiving mirrored traffic", zap.Stringer("addr", s.Addr()))
		srcs = append(srcs, s)
	}
	var wg sync.WaitGroup
	for i, s := range srcs {
		wg.Add(1)
		go func(i int, s *capture.UDP) {
			defer wg.Done()
			defer s.Close()
			p.live(ctx, p.newWorker(i), s, nil)
		}(i, s)
	}
	wg.Wait()
	return nil
}

// live reads a live source until ctx ends, advancing packet time on idle
// polls so that idle connections and response timeouts still expire.
func (p *Pipeline) live(ctx context.Context, w *worker, src capture.Source, tick func()) {
	for ctx.Err() == nil {
		pk, err := src.Next()
		if errors.Is(err, capture.ErrTimeout) {
			w.r.Advance(time.Now())
			if tick != nil {
				tick()
			}
			continue
		}
		if err != nil {
			p.log.Error("capture stopped", zap.Error(err))
			break
		}
		w.packet(pk)
	}
	w.close("shutdown")
}

func compileFilter(expr string, snaplen int) ([]bpf.RawInstruction, error) {
	if expr == "" {
		return nil, nil
	}
	return capture.CompileBPF(expr, snaplen)
}
