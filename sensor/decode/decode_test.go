package decode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	client = netip.MustParseAddrPort("10.1.0.7:41000")
	server = netip.MustParseAddrPort("10.2.0.9:8080")
	outerA = netip.MustParseAddrPort("192.0.2.1:50000")
	outerB = netip.MustParseAddrPort("192.0.2.2:4789")
	t0     = time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC)
)

// ipTCP is an IPv4 (or IPv6) packet carrying a TCP segment with payload.
func ipTCP(t testing.TB, src, dst netip.AddrPort, payload []byte) []byte {
	t.Helper()
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: 1000, Ack: 1, PSH: true, ACK: true, Window: 512}
	var ip gopacket.NetworkLayer
	var ls []gopacket.SerializableLayer
	if src.Addr().Is4() {
		v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice(), Id: 7}
		ip, ls = v4, []gopacket.SerializableLayer{v4}
	} else {
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		ip, ls = v6, []gopacket.SerializableLayer{v6}
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	ls = append(ls, tcp, gopacket.Payload(payload))
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ipv4 wraps payload in an IPv4 header of protocol p.
func ipv4(t testing.TB, p layers.IPProtocol, src, dst netip.Addr, payload []byte) []byte {
	t.Helper()
	v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: p, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, v4, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func udp(src, dst uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], src)
	binary.BigEndian.PutUint16(b[2:], dst)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...) // checksum 0: none, as IPv4 allows
}

func eth(t layers.EthernetType, payload []byte) []byte {
	b := []byte{0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0, 0}
	binary.BigEndian.PutUint16(b[12:], uint16(t))
	return append(b, payload...)
}

// tag inserts an 802.1Q (or QinQ) tag of vlan before inner.
func tag(outer layers.EthernetType, vlan uint16, inner layers.EthernetType, payload []byte) []byte {
	b := eth(outer, nil)
	b = binary.BigEndian.AppendUint16(b, vlan)
	b = binary.BigEndian.AppendUint16(b, uint16(inner))
	return append(b, payload...)
}

func vxlanHdr(vni uint32, frame []byte) []byte {
	b := make([]byte, 8, 8+len(frame))
	b[0] = 0x08
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	return append(b, frame...)
}

func geneveHdr(vni uint32, proto layers.EthernetType, inner []byte) []byte {
	b := make([]byte, 8, 8+len(inner))
	binary.BigEndian.PutUint16(b[2:], uint16(proto))
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	return append(b, inner...)
}

// gre builds a GRE header of proto, with a sequence number when seq.
func gre(proto uint16, seq bool, payload []byte) []byte {
	b := make([]byte, 4, 8+len(payload))
	if seq {
		b[0] = 0x10
		b = append(b, 0, 0, 0, 9)
	}
	binary.BigEndian.PutUint16(b[2:], proto)
	return append(b, payload...)
}

func erspan2(session uint16, frame []byte) []byte {
	b := make([]byte, 8, 8+len(frame))
	binary.BigEndian.PutUint16(b[0:], 1<<12) // version 1 (type II), VLAN 0
	binary.BigEndian.PutUint16(b[2:], session&0x3ff)
	return append(b, frame...)
}

func erspan3(session uint16, frame []byte) []byte {
	b := make([]byte, 12, 12+len(frame))
	binary.BigEndian.PutUint16(b[0:], 2<<12)
	binary.BigEndian.PutUint16(b[2:], session&0x3ff)
	return append(b, frame...)
}

func mpls(labels int, payload []byte) []byte {
	var b []byte
	for i := range labels {
		l := uint32(100+i) << 12
		if i == labels-1 {
			l |= 1 << 8 // bottom of stack
		}
		b = binary.BigEndian.AppendUint32(b, l|64)
	}
	return append(b, payload...)
}

func sll(proto layers.EthernetType, payload []byte) []byte {
	b := make([]byte, 16, 16+len(payload))
	binary.BigEndian.PutUint16(b[2:], 1) // ARPHRD_ETHER
	binary.BigEndian.PutUint16(b[4:], 6)
	binary.BigEndian.PutUint16(b[14:], uint16(proto))
	return append(b, payload...)
}

type decodeCase struct {
	name   string
	link   layers.LinkType
	frame  []byte
	vni    uint32
	vlans  []uint16
	erspan uint16
	src    netip.AddrPort
	reason string // "" when a segment is expected
}

func cases(t testing.TB) []decodeCase {
	body := []byte("GET /v1/items HTTP/1.1\r\nHost: a\r\n\r\n")
	inner4 := ipTCP(t, client, server, body)
	c6, s6 := netip.MustParseAddrPort("[2001:db8::7]:41000"), netip.MustParseAddrPort("[2001:db8::9]:8080")
	inner6 := ipTCP(t, c6, s6, body)
	innerEth := eth(layers.EthernetTypeIPv4, inner4)
	outer := func(p layers.IPProtocol, payload []byte) []byte {
		return eth(layers.EthernetTypeIPv4, ipv4(t, p, outerA.Addr(), outerB.Addr(), payload))
	}
	deep := innerEth
	for range maxDepth + 2 {
		deep = eth(layers.EthernetTypeIPv4, ipv4(t, layers.IPProtocolUDP, outerA.Addr(), outerB.Addr(), udp(50000, PortVXLAN, vxlanHdr(1, deep))))
	}
	hop := append([]byte{byte(layers.IPProtocolTCP), 0, 1, 4, 0, 0, 0, 0}, inner6[40:]...)
	withHop := slices.Clone(inner6[:40])
	withHop[6] = byte(layers.IPProtocolIPv6HopByHop)
	binary.BigEndian.PutUint16(withHop[4:], uint16(len(hop)))
	withHop = append(withHop, hop...)
	udpOnly := eth(layers.EthernetTypeIPv4, ipv4(t, layers.IPProtocolUDP, client.Addr(), server.Addr(), udp(53, 53, []byte("dns"))))
	return []decodeCase{
		{name: "ethernet ipv4", link: layers.LinkTypeEthernet, frame: innerEth, src: client},
		{name: "ethernet ipv6", link: layers.LinkTypeEthernet, frame: eth(layers.EthernetTypeIPv6, inner6), src: c6},
		{name: "ipv6 hop-by-hop header", link: layers.LinkTypeEthernet, frame: eth(layers.EthernetTypeIPv6, withHop), src: c6},
		{name: "802.1Q", link: layers.LinkTypeEthernet, frame: tag(layers.EthernetTypeDot1Q, 42, layers.EthernetTypeIPv4, inner4), vlans: []uint16{42}, src: client},
		{name: "QinQ", link: layers.LinkTypeEthernet, src: client, vlans: []uint16{100, 42},
			frame: tag(layers.EthernetTypeQinQ, 100, layers.EthernetTypeDot1Q, tag(layers.EthernetTypeIPv4, 42, layers.EthernetTypeIPv4, inner4)[14:])},
		{name: "MPLS", link: layers.LinkTypeEthernet, frame: eth(layers.EthernetTypeMPLSUnicast, mpls(2, inner4)), src: client},
		{name: "VXLAN", link: layers.LinkTypeEthernet, frame: outer(layers.IPProtocolUDP, udp(50000, PortVXLAN, vxlanHdr(5001, innerEth))), vni: 5001, src: client},
		{name: "GENEVE", link: layers.LinkTypeEthernet, frame: outer(layers.IPProtocolUDP, udp(50000, PortGeneve, geneveHdr(77, layers.EthernetTypeTransparentEthernetBridging, innerEth))), vni: 77, src: client},
		{name: "GRE bridging", link: layers.LinkTypeEthernet, frame: outer(layers.IPProtocolGRE, gre(uint16(layers.EthernetTypeTransparentEthernetBridging), false, innerEth)), src: client},
		{name: "GRE ipv4", link: layers.LinkTypeEthernet, frame: outer(layers.IPProtocolGRE, gre(uint16(layers.EthernetTypeIPv4), false, inner4)), src: client},
		{name: "ERSPAN type I", link: layers.LinkTypeEthernet, frame: outer(layers.IPProtocolGRE, gre(uint16(layers.EthernetTypeERSPAN), false, innerEth)), src: client},
		{name: "ERSPAN type II", link: layers.LinkTypeEthernet, frame: outer(layers.IPProtocolGRE, gre(uint16(layers.EthernetTypeERSPAN), true, erspan2(300, innerEth))), erspan: 300, src: client},
		{name: "ERSPAN type III", link: layers.LinkTypeEthernet, frame: outer(layers.IPProtocolGRE, gre(0x22eb, true, erspan3(301, innerEth))), erspan: 301, src: client},
		{name: "IP in IP", link: layers.LinkTypeEthernet, frame: outer(layers.IPProtocolIPv4, inner4), src: client},
		{name: "Linux SLL", link: layers.LinkTypeLinuxSLL, frame: sll(layers.EthernetTypeIPv4, inner4), src: client},
		{name: "raw IP", link: layers.LinkTypeRaw, frame: inner4, src: client},
		{name: "BSD loopback", link: layers.LinkTypeNull, frame: append([]byte{2, 0, 0, 0}, inner4...), src: client},
		{name: "UDP that is no tunnel", link: layers.LinkTypeEthernet, frame: udpOnly, reason: ReasonNotTCP},
		{name: "ARP", link: layers.LinkTypeEthernet, frame: eth(layers.EthernetTypeARP, make([]byte, 28)), reason: ReasonNotTCP},
		{name: "truncated IPv4", link: layers.LinkTypeEthernet, frame: innerEth[:14+12], reason: ReasonMalformed},
		{name: "truncated MPLS", link: layers.LinkTypeEthernet, frame: eth(layers.EthernetTypeMPLSUnicast, []byte{0, 0}), reason: ReasonTruncated},
		{name: "empty raw", link: layers.LinkTypeRaw, frame: nil, reason: ReasonTruncated},
		{name: "VXLAN in VXLAN past the depth bound", link: layers.LinkTypeEthernet, frame: deep, reason: ReasonTooDeep},
		{name: "unknown link", link: layers.LinkType(147), frame: innerEth, reason: ReasonUnsupported},
	}
}

func TestDecode(t *testing.T) {
	d := New(16)
	for _, c := range cases(t) {
		t.Run(c.name, func(t *testing.T) {
			var seg Segment
			err := d.Decode(c.frame, c.link, t0, &seg)
			if c.reason != "" {
				if err == nil || Reason(err) != c.reason {
					t.Fatalf("err %v (reason %q), want reason %q", err, Reason(err), c.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if seg.TCP == nil || seg.Src != c.src.Addr() || uint16(seg.TCP.SrcPort) != c.src.Port() {
				t.Fatalf("segment from %v:%v, want %v", seg.Src, seg.TCP, c.src)
			}
			if seg.Mirror.VNI != c.vni || seg.Mirror.ERSPANSession != c.erspan || !slices.Equal(seg.Mirror.VLANs, c.vlans) {
				t.Errorf("mirror %+v, want VNI %d, VLANs %v, ERSPAN %d", seg.Mirror, c.vni, c.vlans, c.erspan)
			}
		})
	}
}

// IPv4 fragments come back whole; the defragmenter holds a bounded
// number of datagrams and says why a fragment gave no segment yet.
func TestIPv4Fragments(t *testing.T) {
	d := New(2)
	whole := ipTCP(t, client, server, make([]byte, 600))
	frags := fragment4(t, whole, 256)
	if len(frags) < 3 {
		t.Fatalf("%d fragments", len(frags))
	}
	var seg Segment
	for i, f := range frags[:len(frags)-1] {
		err := d.Decode(f, layers.LinkTypeRaw, t0, &seg)
		if Reason(err) != ReasonFragment {
			t.Fatalf("fragment %d: %v, want %s", i, err, ReasonFragment)
		}
	}
	if err := d.Decode(frags[len(frags)-1], layers.LinkTypeRaw, t0, &seg); err != nil {
		t.Fatalf("last fragment: %v", err)
	}
	if seg.TCP == nil || len(seg.TCP.Payload) != 600 {
		t.Fatalf("reassembled segment carries %d bytes, want 600", len(seg.TCP.LayerPayload()))
	}
	// Beyond the bound the oldest incomplete datagrams are dropped, and
	// memory does not grow with a flood of first fragments.
	for id := range 1000 {
		f := fragment4(t, ipTCPWithID(t, uint16(id), 600), 256)[0]
		d.Decode(f, layers.LinkTypeRaw, t0.Add(time.Duration(id)*time.Millisecond), &seg)
	}
	if d.fragments > 2 {
		t.Errorf("%d incomplete datagrams held, bound 2", d.fragments)
	}
}

func ipTCPWithID(t testing.TB, id uint16, n int) []byte {
	b := ipTCP(t, client, server, make([]byte, n))
	binary.BigEndian.PutUint16(b[4:], id)
	return b
}

// fragment4 splits an IPv4 packet into fragments of at most size payload
// bytes (a multiple of 8).
func fragment4(t testing.TB, pkt []byte, size int) [][]byte {
	t.Helper()
	hl := int(pkt[0]&0x0f) * 4
	payload := pkt[hl:]
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		f := slices.Clone(pkt[:hl])
		flags := uint16(off / 8)
		if end < len(payload) {
			flags |= 0x2000
		}
		binary.BigEndian.PutUint16(f[6:], flags)
		binary.BigEndian.PutUint16(f[2:], uint16(hl+end-off))
		f[10], f[11] = 0, 0
		var sum uint32
		for i := 0; i < hl; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(f[i:]))
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		binary.BigEndian.PutUint16(f[10:], ^uint16(sum))
		out = append(out, append(f, payload[off:end]...))
	}
	return out
}

func TestReasonOfOtherErrors(t *testing.T) {
	if got := Reason(errors.New("x")); got != ReasonMalformed {
		t.Errorf("Reason of a plain error: %q", got)
	}
}

// FuzzDecode feeds arbitrary frames on every link type: never a panic,
// and a segment only with its addresses and TCP header.
func FuzzDecode(f *testing.F) {
	for _, c := range cases(f) {
		f.Add(c.frame, uint16(c.link))
	}
	c6, s6 := netip.MustParseAddrPort("[2001:db8::7]:41000"), netip.MustParseAddrPort("[2001:db8::9]:8080")
	for _, fr := range fragment6(ipTCP(f, c6, s6, make([]byte, 64)), 9, 32) {
		f.Add(fr, uint16(layers.LinkTypeRaw))
	}
	d := New(8)
	f.Fuzz(func(t *testing.T, frame []byte, link uint16) {
		var seg Segment
		err := d.Decode(frame, layers.LinkType(link), t0, &seg)
		if err != nil {
			if Reason(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if seg.TCP == nil || !seg.Src.IsValid() || !seg.Dst.IsValid() {
			t.Fatalf("success without a segment: %+v", seg)
		}
	})
}

// fragment6 splits an IPv6 packet (no extension headers) into fragments
// of at most size payload bytes (a multiple of 8), each with a fragment
// header of id; at gives each fragment's offset instead when not nil.
func fragment6(pkt []byte, id uint32, size int) [][]byte {
	payload, next := pkt[40:], pkt[6]
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		out = append(out, frag6(pkt, next, id, off, end < len(payload), payload[off:end]))
	}
	return out
}

func frag6(pkt []byte, next byte, id uint32, off int, more bool, data []byte) []byte {
	f := slices.Clone(pkt[:40])
	f[6] = byte(layers.IPProtocolIPv6Fragment)
	binary.BigEndian.PutUint16(f[4:], uint16(8+len(data)))
	hdr := make([]byte, 8)
	hdr[0] = next
	om := uint16(off)
	if more {
		om |= 1
	}
	binary.BigEndian.PutUint16(hdr[2:], om)
	binary.BigEndian.PutUint32(hdr[4:], id)
	return append(append(f, hdr...), data...)
}

func TestIPv6Fragments(t *testing.T) {
	c6, s6 := netip.MustParseAddrPort("[2001:db8::7]:41000"), netip.MustParseAddrPort("[2001:db8::9]:8080")
	body := make([]byte, 1000)
	for i := range body {
		body[i] = byte(i)
	}
	whole := ipTCP(t, c6, s6, body)
	frags := fragment6(whole, 77, 256)
	decode := func(d *Decoder, f []byte) (Segment, error) {
		var seg Segment
		err := d.Decode(f, layers.LinkTypeRaw, t0, &seg)
		return seg, err
	}
	check := func(t *testing.T, seg Segment) {
		t.Helper()
		if seg.TCP == nil || seg.Src != c6.Addr() || !bytes.Equal(seg.TCP.Payload, body) {
			t.Fatalf("reassembled segment wrong: %+v", seg.TCP)
		}
	}
	t.Run("in order", func(t *testing.T) {
		d := New(16)
		for _, f := range frags[:len(frags)-1] {
			if _, err := decode(d, f); Reason(err) != ReasonFragment {
				t.Fatalf("%v, want %s", err, ReasonFragment)
			}
		}
		seg, err := decode(d, frags[len(frags)-1])
		if err != nil {
			t.Fatal(err)
		}
		check(t, seg)
	})
	t.Run("reversed", func(t *testing.T) {
		d := New(16)
		var seg Segment
		var err error
		for i := len(frags) - 1; i >= 0; i-- {
			seg, err = decode(d, frags[i])
		}
		if err != nil {
			t.Fatal(err)
		}
		check(t, seg)
	})
	t.Run("duplicated by the mirror", func(t *testing.T) {
		d := New(16)
		var seg Segment
		var err error
		for _, f := range frags[:len(frags)-1] {
			decode(d, f)
			if _, err := decode(d, f); Reason(err) != ReasonFragment {
				t.Fatalf("a copied fragment: %v, want %s", err, ReasonFragment)
			}
		}
		seg, err = decode(d, frags[len(frags)-1])
		if err != nil {
			t.Fatal(err)
		}
		check(t, seg)
	})
	t.Run("atomic fragment", func(t *testing.T) {
		seg, err := decode(New(16), frag6(whole, whole[6], 5, 0, false, whole[40:]))
		if err != nil {
			t.Fatal(err)
		}
		check(t, seg)
	})
	t.Run("overlap discards the datagram", func(t *testing.T) {
		d := New(16)
		decode(d, frags[0])
		evil := frag6(whole, whole[6], 77, 248, true, make([]byte, 256)) // rewrites bytes 248..255
		if _, err := decode(d, evil); Reason(err) != ReasonFragmentBad {
			t.Fatalf("overlap: %v, want %s", err, ReasonFragmentBad)
		}
		var err error
		for _, f := range frags[1:] {
			_, err = decode(d, f)
		}
		if err == nil {
			t.Fatal("a datagram with overlapping fragments was reassembled")
		}
	})
	t.Run("bounded", func(t *testing.T) {
		d := New(4)
		for id := range 1000 {
			decode(d, fragment6(whole, uint32(id), 256)[0])
		}
		if n := len(d.defrag6.pending); n > 4 {
			t.Errorf("%d incomplete datagrams held, bound 4", n)
		}
		if len(d.defrag6.order) > 4*16+1 {
			t.Errorf("%d keys queued", len(d.defrag6.order))
		}
		// The newest datagram is still whole when its fragments come.
		var seg Segment
		var err error
		for _, f := range fragment6(whole, 999, 256)[1:] {
			seg, err = decode(d, f)
		}
		if err != nil {
			t.Fatalf("the newest datagram: %v", err)
		}
		check(t, seg)
	})
}

func BenchmarkDecode(b *testing.B) {
	for _, c := range cases(b) {
		if c.reason != "" || (c.name != "ethernet ipv4" && c.name != "VXLAN" && c.name != "802.1Q" && c.name != "ERSPAN type II") {
			continue
		}
		b.Run(c.name, func(b *testing.B) {
			d := New(16)
			var seg Segment
			b.SetBytes(int64(len(c.frame)))
			b.ReportAllocs()
			for b.Loop() {
				if err := d.Decode(c.frame, c.link, t0, &seg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
