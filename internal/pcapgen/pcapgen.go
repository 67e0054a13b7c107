// Package pcapgen writes real captures for tests, benchmarks and the
// simulator: it builds TCP conversations (handshake, data cut at the MSS,
// acknowledgements, FIN or RST) as Ethernet frames with correct checksums,
// and writes them as pcap. It knows nothing of HTTP.
package pcapgen

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Packet is one captured frame (Ethernet unless wrapped otherwise).
type Packet struct {
	Time time.Time
	Data []byte
}

// Conn builds one TCP conversation. Methods append packets in time order
// and return the Conn for chaining.
type Conn struct {
	client, server netip.AddrPort
	cmac, smac     net.HardwareAddr
	cseq, sseq     uint32 // next sequence number each side sends
	now            time.Time
	step           time.Duration
	mss            int
	ackEach        bool
	pkts           []Packet
	ipid           uint16
	ttl            uint8 // 0: 64
}

// NewConn starts a conversation at packet time start. Sequence numbers are
// derived from the addresses so that output is deterministic.
func NewConn(client, server netip.AddrPort, start time.Time) *Conn {
	h := uint32(2166136261)
	for _, b := range []byte(client.String() + server.String()) {
		h = (h ^ uint32(b)) * 16777619
	}
	return &Conn{
		client: client, server: server,
		cmac: net.HardwareAddr{0x02, 0, 0, 0, 0, 1},
		smac: net.HardwareAddr{0x02, 0, 0, 0, 0, 2},
		cseq: h, sseq: h*2654435761 + 1,
		now: start, step: 20 * time.Microsecond, mss: 1448,
	}
}

// MSS sets the largest payload per segment (default 1448).
func (c *Conn) MSS(n int) *Conn { c.mss = n; return c }

// Step sets the packet-time spacing between consecutive segments.
func (c *Conn) Step(d time.Duration) *Conn { c.step = d; return c }

// AckEachSegment makes the receiver acknowledge every segment rather than
// each message (more packets, closer to real delayed-ACK-free stacks).
func (c *Conn) AckEachSegment(on bool) *Conn { c.ackEach = on; return c }

// TTL sets the IPv4 TTL (IPv6 hop limit) of the packets emitted from now
// on (0 restores the default, 64): for TTL-limited inserts, segments that
// a sensor sees but that expire before they reach the server.
func (c *Conn) TTL(n uint8) *Conn { c.ttl = n; return c }

// Now is the packet time the next packet will carry.
func (c *Conn) Now() time.Time { return c.now }

// At moves packet time forward to t (never backward).
func (c *Conn) At(t time.Time) *Conn {
	if t.After(c.now) {
		c.now = t
	}
	return c
}

// Take returns the frames built since the last Take and forgets them,
// so long conversations can be written as they are built.
func (c *Conn) Take() []Packet {
	p := c.pkts
	c.pkts = nil
	return p
}

// Wait advances packet time.
func (c *Conn) Wait(d time.Duration) *Conn { c.now = c.now.Add(d); return c }

// Handshake emits SYN, SYN-ACK, ACK.
func (c *Conn) Handshake() *Conn {
	c.emit(true, tcpFlags{syn: true}, nil)
	c.cseq++
	c.emit(false, tcpFlags{syn: true, ack: true}, nil)
	c.sseq++
	c.emit(true, tcpFlags{ack: true}, nil)
	return c
}

// Client sends data from client to server.
func (c *Conn) Client(data []byte) *Conn { return c.send(true, data) }

// Server sends data from server to client.
func (c *Conn) Server(data []byte) *Conn { return c.send(false, data) }

func (c *Conn) send(fromClient bool, data []byte) *Conn {
	for len(data) > 0 {
		n := min(len(data), c.mss)
		c.emit(fromClient, tcpFlags{ack: true, psh: n == len(data)}, data[:n])
		c.advance(fromClient, n)
		data = data[n:]
		if c.ackEach {
			c.emit(!fromClient, tcpFlags{ack: true}, nil)
		}
	}
	if !c.ackEach {
		c.emit(!fromClient, tcpFlags{ack: true}, nil)
	}
	return c
}

// Segment emits one segment with an explicit sequence offset relative to
// the sender's next sequence number, without advancing it: for tests of
// retransmissions, overlaps and out-of-order delivery.
func (c *Conn) Segment(fromClient bool, relSeq int, data []byte) *Conn {
	seq := &c.sseq
	if fromClient {
		seq = &c.cseq
	}
	saved := *seq
	*seq = uint32(int64(saved) + int64(relSeq))
	c.emit(fromClient, tcpFlags{ack: true, psh: true}, data)
	*seq = saved
	return c
}

// Skip advances the sender's sequence number by n without emitting: the
// bytes are lost to the capture (the receiver's next ACK covers them).
func (c *Conn) Skip(fromClient bool, n int) *Conn { c.advance(fromClient, n); return c }

func (c *Conn) advance(fromClient bool, n int) {
	if fromClient {
		c.cseq += uint32(n)
	} else {
		c.sseq += uint32(n)
	}
}

// Close emits FIN from the client, FIN-ACK from the server, final ACK.
func (c *Conn) Close() *Conn {
	c.emit(true, tcpFlags{fin: true, ack: true}, nil)
	c.cseq++
	c.emit(false, tcpFlags{fin: true, ack: true}, nil)
	c.sseq++
	c.emit(true, tcpFlags{ack: true}, nil)
	return c
}

// Reset emits a RST from the given side.
func (c *Conn) Reset(fromClient bool) *Conn {
	c.emit(fromClient, tcpFlags{rst: true, ack: true}, nil)
	return c
}

// Packets returns the frames built so far.
func (c *Conn) Packets() []Packet { return c.pkts }

type tcpFlags struct{ syn, ack, psh, fin, rst bool }

func (c *Conn) emit(fromClient bool, f tcpFlags, payload []byte) {
	src, dst := c.client, c.server
	smac, dmac := c.cmac, c.smac
	seq, ack := c.cseq, c.sseq
	if !fromClient {
		src, dst = dst, src
		smac, dmac = dmac, smac
		seq, ack = ack, seq
	}
	c.ipid++
	frame, err := frame(smac, dmac, src, dst, c.ipid, c.ttl, TCPHeader{
		Seq: seq, Ack: ack, SYN: f.syn, ACK: f.ack, PSH: f.psh, FIN: f.fin, RST: f.rst, Window: 65535,
	}, payload)
	if err != nil {
		panic(fmt.Sprintf("pcapgen: %v", err)) // only on programming errors: addresses of mixed families
	}
	c.pkts = append(c.pkts, Packet{Time: c.now, Data: frame})
	c.now = c.now.Add(c.step)
}

// SYN is a bare SYN from src to dst at time t: one probe of a SYN flood,
// whose (usually spoofed) source never completes the handshake. It
// panics on addresses of mixed families, a programming error.
func SYN(t time.Time, src, dst netip.AddrPort, seq uint32) Packet {
	f, err := frame(net.HardwareAddr{0x02, 0, 0, 0, 0, 1}, net.HardwareAddr{0x02, 0, 0, 0, 0, 2}, src, dst,
		uint16(seq), 0, TCPHeader{Seq: seq, SYN: true, Window: 65535}, nil)
	if err != nil {
		panic(fmt.Sprintf("pcapgen: %v", err))
	}
	return Packet{Time: t, Data: f}
}

// TCPHeader is the part of a TCP header a test chooses.
type TCPHeader struct {
	Seq, Ack                uint32
	SYN, ACK, PSH, FIN, RST bool
	Window                  uint16
}

// Frame serialises Ethernet/IP/TCP with correct lengths and checksums.
func Frame(smac, dmac net.HardwareAddr, src, dst netip.AddrPort, ipid uint16, h TCPHeader, payload []byte) ([]byte, error) {
	return frame(smac, dmac, src, dst, ipid, 0, h, payload)
}

func frame(smac, dmac net.HardwareAddr, src, dst netip.AddrPort, ipid uint16, ttl uint8, h TCPHeader, payload []byte) ([]byte, error) {
	if ttl == 0 {
		ttl = 64
	}
	if src.Addr().Is4() != dst.Addr().Is4() {
		return nil, fmt.Errorf("mixed address families %s -> %s", src, dst)
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: h.Seq, Ack: h.Ack, SYN: h.SYN, ACK: h.ACK, PSH: h.PSH, FIN: h.FIN, RST: h.RST,
		Window: h.Window,
	}
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac}
	var ip gopacket.NetworkLayer
	if src.Addr().Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip4 := &layers.IPv4{Version: 4, TTL: ttl, Id: ipid, Flags: layers.IPv4DontFragment,
			Protocol: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		ip = ip4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: layers.IPProtocolTCP,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	err := gopacket.SerializeLayers(buf, opts, eth, ip.(gopacket.SerializableLayer), tcp, gopacket.Payload(payload))
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), buf.Bytes()...), nil
}

// Merge interleaves the packets of several conversations by time; ties keep
// argument order, so output is deterministic.
func Merge(convs ...[]Packet) []Packet {
	var all []Packet
	for _, c := range convs {
		all = append(all, c...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
	return all
}

// Writer writes Ethernet frames as pcap (microsecond or nanosecond
// resolution) to an io.Writer.
type Writer struct {
	w  *pcapgo.Writer
	bw *bufio.Writer
}

// NewWriter writes the pcap file header for link type Ethernet with
// nanosecond timestamps.
func NewWriter(w io.Writer) (*Writer, error) {
	return NewWriterLink(w, layers.LinkTypeEthernet)
}

// NewWriterLink writes a pcap header for another link type (SLL, raw IP).
func NewWriterLink(w io.Writer, link layers.LinkType) (*Writer, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	pw := pcapgo.NewWriterNanos(bw)
	if err := pw.WriteFileHeader(65535, link); err != nil {
		return nil, fmt.Errorf("pcap header: %w", err)
	}
	return &Writer{w: pw, bw: bw}, nil
}

// Write appends one packet.
func (w *Writer) Write(p Packet) error {
	ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: len(p.Data)}
	if err := w.w.WritePacket(ci, p.Data); err != nil {
		return fmt.Errorf("pcap write: %w", err)
	}
	return nil
}

// WriteTruncated appends a packet cut to snap bytes, with its original
// length recorded (a truncated mirror packet).
func (w *Writer) WriteTruncated(p Packet, snap int) error {
	n := min(snap, len(p.Data))
	ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: n, Length: len(p.Data)}
	return w.w.WritePacket(ci, p.Data[:n])
}

// Flush writes buffered packets through.
func (w *Writer) Flush() error { return w.bw.Flush() }

// WriteFile writes packets to path as pcap; a ".gz" suffix compresses it.
func WriteFile(path string, pkts []Packet) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var out io.Writer = f
	var gz *gzip.Writer
	if strings.HasSuffix(path, ".gz") {
		gz = gzip.NewWriter(f)
		out = gz
	}
	w, err := NewWriter(out)
	if err != nil {
		f.Close()
		return err
	}
	for _, p := range pkts {
		if err := w.Write(p); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// FragmentSpec is one IPv4 fragment cut from a datagram: bytes
// [Offset, Offset+Len) of its IP payload (Offset a multiple of 8), or Data
// in their place when set (conflicting or overlapping copies); More sets
// the more-fragments flag.
type FragmentSpec struct {
	Offset, Len int
	Data        []byte
	More        bool
}

// Fragment cuts an Ethernet/IPv4 frame into the fragments specs describe,
// in that order and at the frame's time: overlapping, repeated, tiny or
// out of order as the test wishes. The IP identification is kept.
func Fragment(p Packet, specs []FragmentSpec) ([]Packet, error) {
	pkt := gopacket.NewPacket(p.Data, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if eth == nil || ip == nil {
		return nil, fmt.Errorf("fragment: not an Ethernet/IPv4 frame")
	}
	body := ip.Payload
	out := make([]Packet, 0, len(specs))
	for _, f := range specs {
		if f.Offset%8 != 0 {
			return nil, fmt.Errorf("fragment: offset %d is not a multiple of 8", f.Offset)
		}
		data := f.Data
		if data == nil {
			if f.Offset < 0 || f.Offset+f.Len > len(body) {
				return nil, fmt.Errorf("fragment: [%d,%d) outside the %d-byte payload", f.Offset, f.Offset+f.Len, len(body))
			}
			data = body[f.Offset : f.Offset+f.Len]
		}
		fip := &layers.IPv4{Version: 4, TTL: ip.TTL, Id: ip.Id, Protocol: ip.Protocol,
			SrcIP: ip.SrcIP, DstIP: ip.DstIP, FragOffset: uint16(f.Offset / 8)}
		if f.More {
			fip.Flags = layers.IPv4MoreFragments
		}
		buf := gopacket.NewSerializeBuffer()
		opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
		feth := &layers.Ethernet{SrcMAC: eth.SrcMAC, DstMAC: eth.DstMAC, EthernetType: layers.EthernetTypeIPv4}
		if err := gopacket.SerializeLayers(buf, opts, feth, fip, gopacket.Payload(data)); err != nil {
			return nil, fmt.Errorf("fragment: %w", err)
		}
		out = append(out, Packet{Time: p.Time, Data: append([]byte(nil), buf.Bytes()...)})
	}
	return out, nil
}

// FragmentEvenly cuts an Ethernet/IPv4 frame into in-order fragments of
// size bytes (a multiple of 8; the last takes the rest).
func FragmentEvenly(p Packet, size int) ([]Packet, error) {
	if size <= 0 || size%8 != 0 {
		return nil, fmt.Errorf("fragment: size %d is not a positive multiple of 8", size)
	}
	pkt := gopacket.NewPacket(p.Data, layers.LayerTypeEthernet, gopacket.Default)
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip == nil {
		return nil, fmt.Errorf("fragment: not an Ethernet/IPv4 frame")
	}
	n := len(ip.Payload)
	var specs []FragmentSpec
	for off := 0; off < n; off += size {
		specs = append(specs, FragmentSpec{Offset: off, Len: min(size, n-off), More: off+size < n})
	}
	return Fragment(p, specs)
}
