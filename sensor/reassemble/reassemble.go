// Package reassemble rebuilds TCP byte streams from segments with
// gopacket's reassembly and hands each connection's two directions to a
// stream.Parser: in order, with gaps reported, on packet time.
//
// gopacket's assembler has no memory limit until one is set and buffers
// out-of-order data until told to flush: this package sets both limits,
// flushes idle connections on packet time, and caps the number of
// connections tracked: a new connection past the cap first evicts the
// least recently active ones, so a flood of new connections (SYN flood,
// churn, idle slow clients) cannot grow the table past the cap, and the
// connections it pushes out are the quietest ones. A segment without
// payload (an ACK, FIN or RST) never starts a connection: after a close
// the last ACK would otherwise open a ghost that lives until the idle
// timeout.
//
// Overlapping and retransmitted bytes are compared with what the stream
// already holds: the first copy wins, and a copy that differs is counted
// and flagged on the connection's next transaction (see overlap.go).
package reassemble

import (
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/reassembly"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiscout/apiscout/sensor/decode"
	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// invalidSequence is the assembler's "no byte seen yet" (unexported there).
const invalidSequence = reassembly.Sequence(-1)

// pageBytes is the size of a page in gopacket's reassembly buffers.
const pageBytes = 1900

// Options bound the reassembler. Zero values take the defaults noted.
type Options struct {
	// MaxBufferedBytes caps out-of-order bytes held across connections
	// (default 512 MiB); past it every connection is flushed as it goes.
	MaxBufferedBytes int64
	// MaxBufferedPerConn caps out-of-order bytes per connection (default
	// 4 MiB); past it the connection skips ahead and reports a gap.
	MaxBufferedPerConn int64
	// MaxConnections caps tracked connections (default 1Mi: about 1.6 KiB
	// each for a bare SYN, gopacket's pool growing by doublings, and 5 KiB
	// for one holding half a request head); a new connection past it
	// evicts the least recently active sixteenth of the cap at once.
	MaxConnections int
	// IdleTimeout closes a connection without packets (default 2 min).
	IdleTimeout time.Duration
	// Midstream accepts connections whose SYN was not seen.
	Midstream bool
	// ConnIDBase makes connection ids unique across workers.
	ConnIDBase uint64
	// OverlapWindow is how far behind and ahead of the next expected byte
	// each direction keeps bytes to compare overlaps with (default 64 KiB:
	// a ring of up to 128 KiB plus 16 KiB of presence bits per direction,
	// grown as the stream does). Negative turns the comparison off.
	OverlapWindow int
	// OverlapMemory caps the rings of all connections (default 256 MiB);
	// past it overlaps go unverified and are counted as such.
	OverlapMemory int64
}

func (o Options) withDefaults() Options {
	if o.MaxBufferedBytes <= 0 {
		o.MaxBufferedBytes = 512 << 20
	}
	if o.MaxBufferedPerConn <= 0 {
		o.MaxBufferedPerConn = 4 << 20
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 1 << 20
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.OverlapWindow == 0 {
		o.OverlapWindow = 64 << 10
	}
	if o.OverlapWindow > 0 {
		o.OverlapWindow = nextPow2(o.OverlapWindow)
	}
	if o.OverlapMemory <= 0 {
		o.OverlapMemory = 256 << 20
	}
	return o
}

// Metrics of reassembly, shared by the workers of one sensor.
type Metrics struct {
	Connections *prometheus.CounterVec // opened, by how they started
	Closed      *prometheus.CounterVec // by reason
	Live        prometheus.Gauge
	GapBytes    prometheus.Counter
	Bytes       prometheus.Counter
	Rejected    *prometheus.CounterVec
	// Overlap counts retransmitted or overlapping bytes by result: same,
	// differ, unverified (outside the window or without window memory).
	Overlap *prometheus.CounterVec
	// Mismatch counts segments whose bytes differ from the first copy.
	Mismatch prometheus.Counter
	// OverlapMemory is the bytes held by comparison windows.
	OverlapMemory prometheus.Gauge
}

// NewMetrics registers the counters on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_tcp_connections_total",
			Help: "TCP connections tracked, by start: syn or midstream."}, []string{"start"}),
		Closed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_tcp_connections_closed_total",
			Help: "TCP connections closed, by reason: fin, rst, idle, evicted, shutdown."}, []string{"reason"}),
		Live: prometheus.NewGauge(prometheus.GaugeOpts{Name: "apiscout_tcp_connections_live",
			Help: "TCP connections tracked now."}),
		GapBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_capture_loss_bytes_total",
			Help: "Stream bytes never seen: the receiver acknowledged them or the stream moved past them (Zeek's capture loss)."}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_tcp_stream_bytes_total",
			Help: "Stream bytes delivered to the protocol parsers."}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_tcp_segments_rejected_total",
			Help: "TCP segments not reassembled, by reason."}, []string{"reason"}),
		Overlap: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_tcp_overlap_bytes_total",
			Help: "Retransmitted or overlapping TCP bytes compared with the first copy, by result: same, differ, unverified."}, []string{"result"}),
		Mismatch: prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_tcp_retransmit_mismatch_total",
			Help: "TCP segments whose bytes differ from the copy already taken (first copy wins): possible evasion."}),
		OverlapMemory: prometheus.NewGauge(prometheus.GaugeOpts{Name: "apiscout_tcp_overlap_window_bytes",
			Help: "Memory held by the per-direction windows that overlaps are compared with."}),
	}
	if reg != nil {
		reg.MustRegister(m.Connections, m.Closed, m.Live, m.GapBytes, m.Bytes, m.Rejected, m.Overlap, m.Mismatch, m.OverlapMemory)
	}
	return m
}

// Reassembler owns one gopacket assembler. It is not safe for concurrent
// use: each capture worker has its own.
type Reassembler struct {
	opts    Options
	m       *Metrics
	factory stream.Factory
	emit    stream.Emit
	asm     *reassembly.Assembler
	live    map[*conn]struct{}
	nextID  uint64
	now     time.Time
	flushed time.Time
	mirror  wire.Mirror
	// Totals for the sensor's heartbeat: stream bytes lost and delivered,
	// connections closed early to stay under the cap, and the most
	// connections tracked at once.
	GapBytes, Bytes, Evicted uint64
	PeakLive                 int
	closeReason              string
	// lossSeen is set when a receiver acknowledged bytes the capture never
	// had and the hole could not be filled alone (loss.go): buffered data
	// of every connection must go now.
	lossSeen  bool
	lastForce time.Time
	// lost are the directions proved lossy by the packet just taken; fill
	// and fillTCP are the segment that fills their holes (see loss.go).
	lost    []lostHalf
	fill    []byte
	fillTCP layers.TCP
	// overlapMem is the bytes held by all windows; scratch holds a
	// segment rewritten to its first copy until gopacket has taken it.
	overlapMem int64
	scratch    []byte
	// seen is evict's scratch: the last packet times of all connections.
	seen []int64
	// rings are the overlap windows' rings given up, for reuse.
	rings rings
	// Overlap totals, for tests and the heartbeat.
	OverlapSame, OverlapDiffer, OverlapUnverified, Mismatches uint64
}

// New returns a reassembler whose connections are parsed by factory.
func New(opts Options, factory stream.Factory, emit stream.Emit, m *Metrics) *Reassembler {
	opts = opts.withDefaults()
	if m == nil {
		m = NewMetrics(nil)
	}
	r := &Reassembler{opts: opts, m: m, factory: factory, emit: emit, live: map[*conn]struct{}{}}
	pool := reassembly.NewStreamPool(r)
	r.asm = reassembly.NewAssembler(pool)
	r.asm.AssemblerOptions.MaxBufferedPagesTotal = int(opts.MaxBufferedBytes / pageBytes)
	r.asm.AssemblerOptions.MaxBufferedPagesPerConnection = int(opts.MaxBufferedPerConn / pageBytes)
	return r
}

type context struct{ ci gopacket.CaptureInfo }

func (c *context) GetCaptureInfo() gopacket.CaptureInfo { return c.ci }

// Packet feeds one decoded segment with its capture info.
func (r *Reassembler) Packet(seg *decode.Segment, ci gopacket.CaptureInfo) {
	r.mirror = seg.Mirror
	if ci.Timestamp.After(r.now) {
		r.now = ci.Timestamp
	}
	if len(r.live) >= r.opts.MaxConnections {
		r.evict()
	}
	r.asm.AssembleWithContext(seg.NetFlow, seg.TCP, &context{ci: ci})
	if len(r.lost) > 0 || r.lossSeen {
		r.skipLost()
	}
	if r.now.Sub(r.flushed) >= time.Second {
		r.Advance(r.now)
	}
}

// Advance moves packet time: idle connections close and parsers tick.
func (r *Reassembler) Advance(now time.Time) {
	if now.After(r.now) {
		r.now = now
	}
	r.flushed = r.now
	r.closeReason = "idle"
	cut := r.now.Add(-r.opts.IdleTimeout)
	r.asm.FlushWithOptions(reassembly.FlushOptions{T: cut, TC: cut})
	r.closeReason = ""
	for c := range r.live {
		c.parser.Tick(r.now)
	}
}

// evict runs before a packet when the table is full (the packet may open
// a connection): it closes the least recently active connections, a
// sixteenth of the cap at a time, so that the walks over every
// connection it costs (here and in gopacket) are paid once per that many
// new connections. Connections that saw a packet at the same instant as
// the last one chosen go too: gopacket can only close by age.
func (r *Reassembler) evict() {
	n := len(r.live) - r.opts.MaxConnections + max(1, r.opts.MaxConnections/16)
	seen := r.seen[:0]
	for c := range r.live {
		seen = append(seen, c.lastSeen)
	}
	r.seen = seen
	n = min(n, len(seen))
	if n <= 0 {
		return
	}
	cut := time.Unix(0, nthSmallest(seen, n-1)+1)
	r.closeReason = "evicted"
	// Pages older than the cut are flushed in every connection: bytes
	// that waited longer for a hole than the evicted connections stayed
	// quiet are not worth more than they are.
	r.asm.FlushWithOptions(reassembly.FlushOptions{T: cut, TC: cut})
	r.closeReason = ""
}

// nthSmallest returns the k-th smallest of v (from 0), reordering v
// (quickselect, linear on average).
func nthSmallest(v []int64, k int) int64 {
	lo, hi := 0, len(v)-1
	for lo < hi {
		p := v[lo+(hi-lo)/2]
		i, j := lo, hi
		for i <= j {
			for v[i] < p {
				i++
			}
			for v[j] > p {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return v[k]
		}
	}
	return v[k]
}

// forceFlush pushes buffered data past holes that acknowledgements proved
// lost, so that what follows a loss is parsed in its turn (a response is
// not left waiting behind the next request). gopacket can only flush all
// connections at once; with many connections tracked it is done at most
// every 100 ms of packet time.
func (r *Reassembler) forceFlush() {
	if len(r.live) > 10000 && r.now.Sub(r.lastForce) < 100*time.Millisecond {
		return
	}
	r.lossSeen = false
	r.lastForce = r.now
	r.asm.FlushWithOptions(reassembly.FlushOptions{T: r.now.Add(time.Nanosecond)})
}

// Close flushes every connection (end of input or shutdown).
func (r *Reassembler) Close(reason string) {
	r.closeReason = reason
	r.asm.FlushAll()
	for c := range r.live { // connections gopacket had already released
		c.finish(reason, r.now)
	}
	r.closeReason = ""
}

// Live is the number of connections tracked.
func (r *Reassembler) Live() int { return len(r.live) }

// New implements reassembly.StreamFactory. It declines (gopacket then
// drops the segment) a segment that cannot start a stream: one without
// SYN when midstream pickup is off, and one without payload, such as the
// last ACK of a connection already closed.
func (r *Reassembler) New(netFlow, tcpFlow gopacket.Flow, tcp *layers.TCP, ac reassembly.AssemblerContext) reassembly.Stream {
	if !tcp.SYN {
		switch {
		case !r.opts.Midstream:
			r.m.Rejected.WithLabelValues("midstream_off").Inc()
			return nil
		case len(tcp.Payload) == 0:
			r.m.Rejected.WithLabelValues("no_connection").Inc()
			return nil
		}
	}
	r.nextID++
	src, _ := netip.AddrFromSlice(netFlow.Src().Raw())
	dst, _ := netip.AddrFromSlice(netFlow.Dst().Raw())
	sp, dp := uint16(tcp.SrcPort), uint16(tcp.DstPort)
	c := &conn{r: r, id: r.opts.ConnIDBase + r.nextID}
	c.win[0].pool, c.win[1].pool = &r.rings, &r.rings
	c.loss.init(netFlow, tcp)
	switch {
	case tcp.SYN && !tcp.ACK:
	case tcp.SYN && tcp.ACK:
		c.flip = true
	default:
		c.midstream = true
		// The side with the lower port is taken for the server: clients
		// use ephemeral ports, servers well-known or registered ones.
		c.flip = sp < dp
	}
	client, server := netip.AddrPortFrom(src.Unmap(), sp), netip.AddrPortFrom(dst.Unmap(), dp)
	if c.flip {
		client, server = server, client
	}
	start := ac.GetCaptureInfo().Timestamp
	c.lastSeen = start.UnixNano()
	c.info = stream.ConnInfo{ID: c.id, Client: client, Server: server, Mirror: cloneMirror(r.mirror),
		Midstream: c.midstream, Start: start}
	c.parser = r.factory(c.info, c.emitTx)
	r.live[c] = struct{}{}
	r.PeakLive = max(r.PeakLive, len(r.live))
	r.m.Live.Set(float64(len(r.live)))
	how := "syn"
	if c.midstream {
		how = "midstream"
	}
	r.m.Connections.WithLabelValues(how).Inc()
	return c
}

func cloneMirror(m wire.Mirror) wire.Mirror {
	if len(m.VLANs) > 0 {
		m.VLANs = append([]uint16(nil), m.VLANs...)
	}
	return m
}

// conn is one TCP connection inside the assembler.
type conn struct {
	r         *Reassembler
	id        uint64
	info      stream.ConnInfo
	parser    stream.Parser
	flip      bool // the first packet went server to client
	midstream bool
	done      bool
	sawFIN    bool
	sawRST    bool
	// lastSeen is the latest packet time (Unix ns), as gopacket keeps it:
	// eviction closes by it.
	lastSeen int64
	// hole is, per direction of the assembler, where the bytes stop being
	// contiguous while later ones wait; holeSet says there is one.
	hole    [2]reassembly.Sequence
	holeSet [2]bool
	loss    lossState
	// acked is, per direction, the receiver's latest acknowledgement
	// (ackedSet once it sent one).
	acked    [2]uint32
	ackedSet [2]bool
	// win keeps each direction's recent bytes to compare overlaps with;
	// fin is where a FIN ended the direction (finSet says there was one).
	win    [2]window
	fin    [2]uint32
	finSet [2]bool
	// mismatch marks the next transaction emitted.
	mismatch bool
}

// emitTx passes records on, marking the first one after a mismatch.
func (c *conn) emitTx(t *wire.Transaction) {
	if c.mismatch {
		t.Flags |= wire.FlagRetransmitMismatch
		c.mismatch = false
	}
	c.r.emit(t)
}

// overlap compares a segment's payload with the bytes already taken for
// its direction, rewrites it so the first copy wins, and stores its new
// bytes. It mirrors which segments gopacket will use: none that a
// receiver drops (a SYN on a synchronized half, a RST off nextSeq, bytes
// past a FIN).
func (c *conn) overlap(tcp *layers.TCP, di int, nextSeq reassembly.Sequence) {
	r := c.r
	if len(tcp.Payload) == 0 || r.opts.OverlapWindow < 0 {
		return
	}
	seq := tcp.Seq
	var next uint32
	if nextSeq == invalidSequence {
		if tcp.SYN {
			seq++ // gopacket takes a SYN's payload from seq+1
		}
		next = seq
	} else {
		if tcp.SYN || tcp.RST && seq != uint32(nextSeq) {
			return
		}
		next = uint32(nextSeq)
		if len(tcp.Payload) == 1 && seq+1 == next && !tcp.FIN && c.ackedSet[di] && seqDiff(next, c.acked[di]) >= 0 {
			// A keep-alive probe (RFC 9293 §3.8.4): one byte, often
			// garbage, just behind what the sender has sent and the
			// receiver acknowledged, so the receiver drops it too: no
			// retransmission to compare.
			return
		}
	}
	if end := seq + uint32(len(tcp.Payload)); tcp.FIN && !c.finSet[di] && seqDiff(next, end) >= 0 {
		c.fin[di], c.finSet[di] = end, true // a FIN before next is dropped, as gopacket does
	}
	w := &c.win[di]
	var res overlapResult
	tcp.Payload = w.compare(seq, tcp.Payload, next, &r.scratch, &res)
	if res.same+res.differ+res.unverified > 0 {
		r.OverlapSame += uint64(res.same)
		r.OverlapDiffer += uint64(res.differ)
		r.OverlapUnverified += uint64(res.unverified)
		if res.same > 0 {
			r.m.Overlap.WithLabelValues("same").Add(float64(res.same))
		}
		if res.differ > 0 {
			r.m.Overlap.WithLabelValues("differ").Add(float64(res.differ))
			r.m.Mismatch.Inc()
			r.Mismatches++
			c.mismatch = true
		}
		if res.unverified > 0 {
			r.m.Overlap.WithLabelValues("unverified").Add(float64(res.unverified))
		}
	}
	if c.finSet[di] && seqDiff(c.fin[di], next) > 0 {
		return // the direction ended: nothing more is stream data
	}
	before := w.size()
	w.store(seq, tcp.Payload, next, r.opts.OverlapWindow, 2*r.opts.OverlapWindow, r.budget)
	if d := w.size() - before; d != 0 {
		r.m.OverlapMemory.Add(float64(d))
	}
}

// budget reserves delta bytes of window memory, or says it is spent.
func (r *Reassembler) budget(delta int) bool {
	if r.overlapMem+int64(delta) > r.opts.OverlapMemory {
		return false
	}
	r.overlapMem += int64(delta)
	return true
}

// Accept implements reassembly.Stream: every segment is taken, bad
// checksums included (offload makes them common on capture hosts); a
// connection without SYN starts at its first segment when midstream
// pickup is on.
func (c *conn) Accept(tcp *layers.TCP, ci gopacket.CaptureInfo, dir reassembly.TCPFlowDirection, nextSeq reassembly.Sequence, start *bool, ac reassembly.AssemblerContext) bool {
	if _, ok := ac.(*fillContext); ok {
		return true // a hole's fill (loss.go), not a packet
	}
	c.lastSeen = max(c.lastSeen, ci.Timestamp.UnixNano())
	if tcp.RST {
		c.sawRST = true
	}
	if tcp.FIN {
		c.sawFIN = true
	}
	di, opp := dirIndex(dir), dirIndex(dir.Reverse())
	if len(tcp.Payload) > 0 && nextSeq != invalidSequence &&
		nextSeq.Difference(reassembly.Sequence(tcp.Seq)) > 0 && !c.holeSet[di] {
		c.hole[di], c.holeSet[di] = nextSeq, true
	}
	c.loss.seen(di, tcp, nextSeq)
	if tcp.ACK {
		c.acked[opp], c.ackedSet[opp] = tcp.Ack, true
	}
	if tcp.ACK && c.holeSet[opp] && c.hole[opp].Difference(reassembly.Sequence(tcp.Ack)) > 0 {
		c.holeSet[opp] = false
		c.r.lost = append(c.r.lost, lostHalf{c: c, di: opp, ack: tcp.Ack})
	}
	if !*start && nextSeq == invalidSequence && !tcp.SYN {
		if !c.r.opts.Midstream {
			c.r.m.Rejected.WithLabelValues("midstream_off").Inc()
			return false
		}
		*start = true
	}
	c.overlap(tcp, di, nextSeq)
	return true
}

func dirIndex(d reassembly.TCPFlowDirection) int {
	if d == reassembly.TCPDirClientToServer {
		return 0
	}
	return 1
}

func (c *conn) dir(d reassembly.TCPFlowDirection) stream.Dir {
	client := d == reassembly.TCPDirClientToServer
	if c.flip {
		client = !client
	}
	if client {
		return stream.ClientToServer
	}
	return stream.ServerToClient
}

// ReassembledSG implements reassembly.Stream.
func (c *conn) ReassembledSG(sg reassembly.ScatterGather, ac reassembly.AssemblerContext) {
	if c.done {
		return
	}
	d, _, _, skip := sg.Info()
	length, _ := sg.Lengths()
	ts := ac.GetCaptureInfo().Timestamp
	sd := c.dir(d)
	c.holeSet[dirIndex(d)] = false // data flowed: a remaining hole is noted again on its next segment
	lost := c.loss.delivered(dirIndex(d), skip, length)
	if lost > 0 {
		skip = lost // zeros standing for bytes proved lost (loss.go)
	}
	if skip != 0 {
		// skip < 0: bytes missing at the start of a stream picked up
		// midstream, of unknown size.
		c.parser.Gap(sd, skip, ts)
		if skip > 0 {
			c.r.GapBytes += uint64(skip)
			c.r.m.GapBytes.Add(float64(skip))
		}
	}
	if length > lost {
		c.parser.Data(sd, sg.Fetch(length)[lost:], ts)
		c.r.Bytes += uint64(length - lost)
		c.r.m.Bytes.Add(float64(length - lost))
	}
}

// ReassemblyComplete implements reassembly.Stream.
func (c *conn) ReassemblyComplete(ac reassembly.AssemblerContext) bool {
	reason := c.r.closeReason
	switch {
	case reason != "":
	case c.sawRST:
		reason = "rst"
	case c.sawFIN:
		reason = "fin"
	default:
		reason = "idle"
	}
	var ts time.Time
	if ac != nil { // gopacket passes none when a connection closes inside a flush
		ts = ac.GetCaptureInfo().Timestamp
	}
	if ts.IsZero() || ts.Before(c.r.now) && reason != "fin" && reason != "rst" {
		ts = c.r.now
	}
	c.finish(reason, ts)
	return true
}

func (c *conn) finish(reason string, ts time.Time) {
	if c.done {
		return
	}
	c.done = true
	c.parser.Close(reason, ts)
	for i := range c.win {
		if n := c.win[i].size(); n > 0 {
			c.r.overlapMem -= int64(n)
			c.r.m.OverlapMemory.Sub(float64(n))
		}
		c.win[i].release()
	}
	delete(c.r.live, c)
	c.r.m.Live.Set(float64(len(c.r.live)))
	c.r.m.Closed.WithLabelValues(reason).Inc()
	if reason == "evicted" {
		c.r.Evicted++
	}
}
