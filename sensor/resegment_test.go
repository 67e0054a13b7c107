package sensor

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/apiscout/apiscout/internal/pcapgen"
)

// A capture taken apart into TCP connections, so that each connection's
// two byte streams can be cut into other segments and written again. What
// the network is free to change (where segments are cut, their order
// within a flight, duplicates, retransmissions, pure ACKs) is changed;
// what it is not (the bytes, holes the capture missed, SYN, FIN and RST
// and where they fall, the acknowledgements that declare a hole lost) is
// kept.

// tcpCapture is a capture file's packets: TCP connections and the frames
// that are not TCP (kept as they were).
type tcpCapture struct {
	conns []*tcpConn
	other []pcapgen.Packet
}

// tcpConn is one TCP connection: its packets in capture order. Direction
// 0 is the side that sent the connection's first packet.
type tcpConn struct {
	ends [2]netip.AddrPort
	macs [2]net.HardwareAddr
	pkts []tcpPkt
	// closed is set by a FIN or RST: a later SYN on the same addresses
	// starts another connection.
	closed bool
}

type tcpPkt struct {
	t       time.Time
	dir     int
	h       pcapgen.TCPHeader
	payload []byte
}

func (c *tcpConn) String() string { return c.ends[0].String() + " > " + c.ends[1].String() }

// readCapture reads an Ethernet pcap file (gzip or not).
func readCapture(path string) (*tcpCapture, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r io.Reader = bytes.NewReader(raw)
	if len(raw) > 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		if r, err = gzip.NewReader(r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if pr.LinkType() != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("%s: link type %v, want Ethernet", path, pr.LinkType())
	}
	c := &tcpCapture{}
	byAddr := map[[2]netip.AddrPort]*tcpConn{}
	for {
		data, ci, err := pr.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		data = append([]byte(nil), data...)
		if !c.addTCP(byAddr, data, ci.Timestamp) {
			c.other = append(c.other, pcapgen.Packet{Time: ci.Timestamp, Data: data})
		}
	}
	return c, nil
}

// addTCP files an Ethernet/IP/TCP frame under its connection; it returns
// false for anything else (kept as it is).
func (c *tcpCapture) addTCP(byAddr map[[2]netip.AddrPort]*tcpConn, data []byte, ts time.Time) bool {
	pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.NoCopy)
	eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if eth == nil || tcp == nil || pkt.ErrorLayer() != nil {
		return false
	}
	var src, dst netip.Addr
	switch ip := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
			return false
		}
		src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
	case *layers.IPv6:
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
	default:
		return false
	}
	a := netip.AddrPortFrom(src, uint16(tcp.SrcPort))
	b := netip.AddrPortFrom(dst, uint16(tcp.DstPort))
	key := [2]netip.AddrPort{a, b}
	if b.Compare(a) < 0 {
		key = [2]netip.AddrPort{b, a}
	}
	conn := byAddr[key]
	if conn == nil || conn.closed && tcp.SYN && !tcp.ACK {
		conn = &tcpConn{ends: [2]netip.AddrPort{a, b}, macs: [2]net.HardwareAddr{eth.SrcMAC, eth.DstMAC}}
		byAddr[key] = conn
		c.conns = append(c.conns, conn)
	}
	dir := 0
	if a != conn.ends[0] {
		dir = 1
	}
	if tcp.FIN || tcp.RST {
		conn.closed = true
	}
	conn.pkts = append(conn.pkts, tcpPkt{t: ts, dir: dir, payload: tcp.Payload, h: pcapgen.TCPHeader{
		Seq: tcp.Seq, Ack: tcp.Ack, SYN: tcp.SYN, ACK: tcp.ACK, PSH: tcp.PSH, FIN: tcp.FIN, RST: tcp.RST, Window: tcp.Window}})
	return true
}

// variant is one way the network could have carried the same streams.
type variant struct {
	name string
	// cut gives the length of the next segment; nil keeps the captured
	// boundaries. Segments are cut across the packets of a flight (the
	// data one side sends before the other speaks), so long cuts
	// coalesce them.
	cut func(r *rand.Rand) int
	// window bounds how far a segment may move from its place within its
	// flight (0: no reordering).
	window int
	// dup sends every packet twice.
	dup bool
	// finEarly lets a FIN that ends a flight (the other side sending
	// nothing but ACKs and its own FIN in between) arrive among the
	// flight's last segments, ahead of the other side's packets.
	finEarly bool
	// finOnData sends such a FIN on the flight's last data segment.
	finOnData bool
	// keepalive is the chance that a pure ACK is followed by a keep-alive
	// probe from its sender, when all it sent was acknowledged.
	keepalive float64
	// drop loses one data segment per connection to the capture (its
	// ACK still comes): not a variant the records survive, but the
	// check that the comparison sees a difference.
	drop bool
	// retransmit is the chance that a segment is followed, a few segments
	// later, by a retransmission of it (with the same bytes, cut again).
	retransmit float64
	// acks is the chance that a data segment is followed by a pure ACK of
	// what the receiver holds in order.
	acks float64
}

func tiny(r *rand.Rand) int     { return 1 + r.IntN(7) }
func coalesce(r *rand.Rand) int { return 1 + r.IntN(4000) }
func mixed(r *rand.Rand) int {
	if r.IntN(4) == 0 {
		return tiny(r)
	}
	return 1 + r.IntN(1448)
}

// variants are the transformations every capture goes through.
var variants = []variant{
	{name: "tiny", cut: tiny},
	{name: "coalesced", cut: coalesce},
	{name: "reordered", cut: mixed, window: 6},
	{name: "reordered-wide", cut: mixed, window: 40},
	{name: "fin-early", cut: mixed, window: 6, finEarly: true},
	{name: "fin-on-data", cut: mixed, window: 3, finEarly: true, finOnData: true, retransmit: 0.1},
	{name: "reordered-tiny-wide", cut: tiny, window: 200},
	{name: "duplicated", dup: true},
	{name: "retransmitted", cut: mixed, retransmit: 0.15},
	{name: "acks", cut: mixed, acks: 0.5},
	{name: "keep-alive", keepalive: 0.5},
	{name: "all", cut: tiny, window: 8, dup: true, retransmit: 0.1, acks: 0.3, finEarly: true},
}

// seg is one segment of a rebuilt connection.
type seg struct {
	t       time.Time
	dir     int
	h       pcapgen.TCPHeader
	payload []byte
	// data marks a data segment (pure ACKs are inserted after these).
	data bool
}

// resegment returns the connection's packets as v carries them.
func (c *tcpConn) resegment(v variant, r *rand.Rand) []seg {
	var out []seg
	var next, acked [2]uint32 // as the capture has them: each side's next byte, and what the other acknowledged
	var ackSeen [2]bool
	closing := false // a FIN or RST was sent: no more probes
	for i := 0; i < len(c.pkts); {
		p := c.pkts[i]
		closing = closing || p.h.FIN || p.h.RST
		if end := p.h.Seq + uint32(len(p.payload)) + uint32(btoi(p.h.SYN || p.h.FIN)); i == 0 || seqBefore(next[p.dir], end) {
			next[p.dir] = end
		}
		if p.h.ACK {
			acked[1-p.dir], ackSeen[1-p.dir] = p.h.Ack, true
		}
		if !isData(p) {
			out = append(out, seg{t: p.t, dir: p.dir, h: p.h, payload: p.payload})
			i++
			if len(p.payload) == 0 && !p.h.SYN && !closing && ackSeen[p.dir] && acked[p.dir] == next[p.dir] &&
				r.Float64() < v.keepalive {
				// A keep-alive probe: a zero byte just behind all the
				// sender has sent and had acknowledged.
				h := p.h
				h.Seq--
				out = append(out, seg{t: p.t, dir: p.dir, h: h, payload: []byte{0}})
			}
			continue
		}
		j := i + 1
		for j < len(c.pkts) && isData(c.pkts[j]) && c.pkts[j].dir == p.dir {
			j++
		}
		var fin *tcpPkt
		var held []seg // the other side's packets the FIN overtakes
		if v.finEarly {
			k := j
			for k < len(c.pkts) && c.pkts[k].dir != p.dir && len(c.pkts[k].payload) == 0 && !c.pkts[k].h.RST {
				k++
			}
			if k < len(c.pkts) && c.pkts[k].dir == p.dir && c.pkts[k].h.FIN && len(c.pkts[k].payload) == 0 {
				fin = &c.pkts[k]
				for _, q := range c.pkts[j:k] {
					held = append(held, seg{t: q.t, dir: q.dir, h: q.h})
				}
				j = k + 1
			}
		}
		out = append(out, flight(c.pkts[i:j-len(held)-btoi(fin != nil)], fin, v, r)...)
		out = append(out, held...)
		i = j
	}
	if v.drop {
		// One data segment lost to the capture, not to the receiver: its
		// ACK still comes.
		var data []int
		for k, s := range out {
			if s.data {
				data = append(data, k)
			}
		}
		if len(data) > 2 {
			k := data[1+r.IntN(len(data)-2)]
			out = slices.Delete(out, k, k+1)
		}
	}
	if v.acks > 0 {
		out = c.addAcks(out, v.acks, r)
	}
	if v.dup {
		dup := make([]seg, 0, 2*len(out))
		for _, s := range out {
			dup = append(dup, s, s)
		}
		out = dup
	}
	// Packet times keep their captured order; segments that share an
	// instant are a nanosecond apart so that time order is file order.
	for i := 1; i < len(out); i++ {
		if !out[i].t.After(out[i-1].t) {
			out[i].t = out[i-1].t.Add(time.Nanosecond)
		}
	}
	return out
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// isData is a segment the flight may cut: payload, and no SYN, FIN or RST
// (which keep their packet; none carries data in these captures).
func isData(p tcpPkt) bool {
	return len(p.payload) > 0 && !p.h.SYN && !p.h.FIN && !p.h.RST
}

// flight cuts the packets of one flight (same direction, back to back)
// into segments. Only contiguous bytes are joined: a hole the capture
// missed stays a hole.
func flight(pkts []tcpPkt, fin *tcpPkt, v variant, r *rand.Rand) []seg {
	var segs []seg
	if v.cut == nil {
		for _, p := range pkts {
			segs = append(segs, seg{t: p.t, dir: p.dir, h: p.h, payload: p.payload, data: true})
		}
	} else {
		for i := 0; i < len(pkts); {
			j := i + 1
			for j < len(pkts) && pkts[j].h.Seq == pkts[j-1].h.Seq+uint32(len(pkts[j-1].payload)) {
				j++
			}
			segs = append(segs, cutRun(pkts[i:j], v.cut, r)...)
			i = j
		}
	}
	if fin != nil {
		last := -1
		for i, s := range segs {
			if s.h.Seq+uint32(len(s.payload)) == fin.h.Seq {
				last = i
			}
		}
		if v.finOnData && last >= 0 {
			segs[last].h.FIN = true // the sender closes with its last data
		} else {
			segs = append(segs, seg{t: fin.t, dir: fin.dir, h: fin.h})
		}
	}
	if v.window > 0 {
		times := make([]time.Time, len(segs))
		for i, s := range segs {
			times[i] = s.t
		}
		key := make([]float64, len(segs))
		for i := range key {
			key[i] = float64(i) + r.Float64()*float64(v.window)
		}
		idx := make([]int, len(segs))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return key[idx[a]] < key[idx[b]] })
		moved := make([]seg, len(segs))
		for i, k := range idx {
			moved[i] = segs[k]
			moved[i].t = times[i] // the instants stay; what arrives at each moves
		}
		segs = moved
	}
	if v.retransmit > 0 {
		var out []seg
		var later []seg // retransmissions waiting for their turn
		for i, s := range segs {
			out = append(out, s)
			if s.data && r.Float64() < v.retransmit {
				// Senders cut again what they send again: the copy
				// may start inside the segment and run into the next.
				rt := s
				if i+1 < len(segs) && segs[i+1].data && segs[i+1].h.Seq == s.h.Seq+uint32(len(s.payload)) && r.IntN(2) == 0 {
					rt.payload = append(slices.Clip(s.payload), segs[i+1].payload...)
				}
				from := r.IntN(len(s.payload))
				to := from + 1 + r.IntN(len(rt.payload)-from)
				rt.h.Seq += uint32(from)
				rt.payload = rt.payload[from:to]
				later = append(later, rt)
			}
			if len(later) > 0 && r.IntN(3) == 0 {
				rt := later[0]
				later = later[1:]
				rt.t = s.t
				out = append(out, rt)
			}
		}
		for _, rt := range later {
			rt.t = out[len(out)-1].t
			out = append(out, rt)
		}
		segs = out
	}
	return segs
}

// cutRun cuts contiguous packets into segments of the lengths cut gives.
// A segment carries the time and header of the packet its first byte
// came from.
func cutRun(pkts []tcpPkt, cut func(*rand.Rand) int, r *rand.Rand) []seg {
	var all []byte
	starts := make([]int, len(pkts))
	for i, p := range pkts {
		starts[i] = len(all)
		all = append(all, p.payload...)
	}
	var segs []seg
	for off := 0; off < len(all); {
		n := min(cut(r), len(all)-off)
		k := sort.Search(len(starts), func(i int) bool { return starts[i] > off }) - 1
		p := pkts[k]
		h := p.h
		h.Seq = pkts[0].h.Seq + uint32(off)
		h.PSH = off+n == len(all)
		segs = append(segs, seg{t: p.t, dir: p.dir, h: h, payload: all[off : off+n], data: true})
		off += n
	}
	return segs
}

// addAcks inserts, after data segments, pure ACKs from the receiver of
// what it holds in order. A receiver acknowledges only bytes it has (or
// that the captured ACKs already declared lost), so the ACKs added never
// tell the sensor of a loss that did not happen.
func (c *tcpConn) addAcks(segs []seg, chance float64, r *rand.Rand) []seg {
	var next [2]uint32       // next sequence number each side sends
	var inOrder [2]uint32    // what each side has received in order
	var have [2]bool         // next is known
	var started [2]bool      // inOrder is known
	var pending [2][]seg     // out-of-order data each side has received
	advance := func(d int) { // the receiver of d's data
		for progress := true; progress; {
			progress = false
			for i, s := range pending[d] {
				end := s.h.Seq + uint32(len(s.payload))
				if !seqBefore(inOrder[d], s.h.Seq) { // reaches what is held: taken, or old
					if seqBefore(inOrder[d], end) {
						inOrder[d] = end
					}
					pending[d] = slices.Delete(pending[d], i, i+1)
					progress = true
					break
				}
			}
		}
	}
	var out []seg
	for _, s := range segs {
		out = append(out, s)
		d, o := s.dir, 1-s.dir
		end := s.h.Seq + uint32(len(s.payload))
		if s.h.SYN || s.h.FIN {
			end++
		}
		if !have[d] || seqBefore(next[d], end) {
			next[d], have[d] = end, true
		}
		if s.h.SYN && !started[d] {
			inOrder[d], started[d] = s.h.Seq+1, true
		}
		if s.h.ACK && started[o] && seqBefore(inOrder[o], s.h.Ack) {
			inOrder[o] = s.h.Ack // the sender of this ACK holds (or gave up) that much
		}
		if !s.data {
			continue
		}
		if !started[d] {
			inOrder[d], started[d] = s.h.Seq, true
		}
		pending[d] = append(pending[d], s)
		advance(d)
		if !have[o] || r.Float64() >= chance {
			continue
		}
		out = append(out, seg{t: s.t, dir: o, h: pcapgen.TCPHeader{Seq: next[o], Ack: inOrder[d], ACK: true, Window: 65535}})
	}
	return out
}

// seqBefore says a comes before b in sequence space.
func seqBefore(a, b uint32) bool { return int32(b-a) > 0 }

// write writes the capture as v carries it, seeded by seed.
func (c *tcpCapture) write(path string, v variant, seed uint64) (int, error) {
	var all [][]pcapgen.Packet
	for i, conn := range c.conns {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		segs := conn.resegment(v, r)
		pkts := make([]pcapgen.Packet, 0, len(segs))
		for k, s := range segs {
			src, dst := conn.ends[s.dir], conn.ends[1-s.dir]
			smac, dmac := conn.macs[0], conn.macs[1]
			if s.dir == 1 {
				smac, dmac = dmac, smac
			}
			f, err := pcapgen.Frame(smac, dmac, src, dst, uint16(k), s.h, s.payload)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", conn, err)
			}
			pkts = append(pkts, pcapgen.Packet{Time: s.t, Data: f})
		}
		all = append(all, pkts)
	}
	all = append(all, c.other)
	merged := pcapgen.Merge(all...)
	return len(merged), pcapgen.WriteFile(path, merged)
}

// describe summarises a capture for logs.
func (c *tcpCapture) describe() string {
	var pkts, bytes int
	for _, conn := range c.conns {
		pkts += len(conn.pkts)
		for _, p := range conn.pkts {
			bytes += len(p.payload)
		}
	}
	return fmt.Sprintf("%d connections, %d TCP packets, %d payload bytes, %d other frames",
		len(c.conns), pkts, bytes, len(c.other))
}
