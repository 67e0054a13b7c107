// Package decode takes a captured frame apart down to its TCP segment,
// through every encapsulation a mirror may add on the way: 802.1Q and QinQ
// tags, MPLS labels, VXLAN, GENEVE, GRE, ERSPAN type II and III, Linux
// cooked captures (SLL, SLL2) and raw IP. IPv4 and IPv6 fragments are
// reassembled with a bound on the datagrams held. The mirror session (VNI, VLANs,
// ERSPAN session) comes out with the segment.
//
// Layers are decoded into structs owned by the Decoder and reused for
// every frame: nothing is allocated per packet on the common path.
package decode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/ip4defrag"
	"github.com/gopacket/gopacket/layers"

	"github.com/apiscout/apiscout/wire"
)

// Reasons a frame yields no TCP segment (metric labels).
const (
	ReasonNotTCP      = "not_tcp"
	ReasonMalformed   = "malformed"
	ReasonTooDeep     = "encapsulation_too_deep"
	ReasonUnsupported = "unsupported_link"
	ReasonFragment    = "fragment_pending"
	ReasonFragmentBad = "fragment_invalid"
	ReasonTruncated   = "truncated"
)

// Errors carry their reason so callers can count them.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Err.Error()
	}
	return e.Reason
}

func fail(reason string, err error) error { return &Error{Reason: reason, Err: err} }

// Reason returns the metric reason of a decoding error.
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonMalformed
}

// Well-known UDP ports of mirror encapsulations.
const (
	PortVXLAN  = 4789
	PortGeneve = 6081
)

// maxDepth bounds nested encapsulations (a frame inside a frame ...).
const maxDepth = 4

// Segment is the TCP segment found in a frame. Its slices alias the
// Decoder's buffers or the frame: valid until the next Decode.
type Segment struct {
	Src, Dst netip.Addr
	TCP      *layers.TCP
	Mirror   wire.Mirror
	// NetFlow is the gopacket network flow (for reassembly keys).
	NetFlow gopacket.Flow
}

// Decoder holds the reused layer structs of one capture goroutine.
type Decoder struct {
	eth    layers.Ethernet
	dot1q  layers.Dot1Q
	ip4    layers.IPv4
	ip6    layers.IPv6
	tcp    layers.TCP
	udp    layers.UDP
	vxlan  layers.VXLAN
	geneve layers.Geneve
	gre    layers.GRE
	sll    layers.LinuxSLL
	sll2   layers.LinuxSLL2
	erspan layers.ERSPANII
	defrag *ip4defrag.IPv4Defragmenter
	// defrag6 reassembles IPv6 fragments, bounded like IPv4's.
	defrag6 ip6Defrag
	// fragments counts datagrams held by the defragmenter, to bound it.
	fragments    int
	maxFragments int
	lastDiscard  time.Time
}

// New returns a Decoder that holds at most maxFragments incomplete IPv4
// datagrams (each up to 64 KiB); older ones are discarded first.
func New(maxFragments int) *Decoder {
	return &Decoder{defrag: ip4defrag.NewIPv4Defragmenter(), maxFragments: maxFragments}
}

// Decode finds the TCP segment in frame. ts is the packet time, used to
// expire IPv4 fragments. source names the capture (interface, listener).
func (d *Decoder) Decode(frame []byte, link layers.LinkType, ts time.Time, seg *Segment) error {
	seg.Mirror = wire.Mirror{}
	seg.TCP = nil
	switch link {
	case layers.LinkTypeEthernet:
		return d.ethernet(frame, ts, seg, 0)
	case layers.LinkTypeLinuxSLL:
		if err := d.sll.DecodeFromBytes(frame, gopacket.NilDecodeFeedback); err != nil {
			return fail(ReasonMalformed, err)
		}
		return d.etherType(d.sll.EthernetType, d.sll.Payload, ts, seg, 0)
	case layers.LinkTypeLinuxSLL2:
		if err := d.sll2.DecodeFromBytes(frame, gopacket.NilDecodeFeedback); err != nil {
			return fail(ReasonMalformed, err)
		}
		return d.etherType(d.sll2.ProtocolType, d.sll2.Payload, ts, seg, 0)
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, linkTypeRawAlt:
		return d.rawIP(frame, ts, seg, 0)
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if len(frame) < 4 {
			return fail(ReasonTruncated, nil)
		}
		return d.rawIP(frame[4:], ts, seg, 0)
	}
	return fail(ReasonUnsupported, fmt.Errorf("link type %d", link))
}

// linkTypeRawAlt is raw IP as some BSDs write it.
const linkTypeRawAlt layers.LinkType = 12

func (d *Decoder) ethernet(b []byte, ts time.Time, seg *Segment, depth int) error {
	if depth > maxDepth {
		return fail(ReasonTooDeep, nil)
	}
	if err := d.eth.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		return fail(ReasonMalformed, err)
	}
	return d.etherType(d.eth.EthernetType, d.eth.Payload, ts, seg, depth)
}

func (d *Decoder) etherType(t layers.EthernetType, b []byte, ts time.Time, seg *Segment, depth int) error {
	for i := 0; ; i++ {
		if i > 8 {
			return fail(ReasonTooDeep, nil)
		}
		switch t {
		case layers.EthernetTypeDot1Q, layers.EthernetTypeQinQ, 0x9100:
			if err := d.dot1q.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
				return fail(ReasonMalformed, err)
			}
			seg.Mirror.VLANs = append(seg.Mirror.VLANs, d.dot1q.VLANIdentifier)
			t, b = d.dot1q.Type, d.dot1q.Payload
			continue
		case layers.EthernetTypeMPLSUnicast, layers.EthernetTypeMPLSMulticast:
			// Pop labels to the bottom of the stack; the payload's first
			// nibble says IPv4 or IPv6 (no control word expected).
			for {
				if len(b) < 4 {
					return fail(ReasonTruncated, nil)
				}
				bottom := b[2]&1 == 1
				b = b[4:]
				if bottom {
					break
				}
			}
			return d.rawIP(b, ts, seg, depth)
		case layers.EthernetTypeIPv4:
			return d.ipv4(b, ts, seg, depth)
		case layers.EthernetTypeIPv6:
			return d.ipv6(b, ts, seg, depth)
		case layers.EthernetTypeTransparentEthernetBridging:
			return d.ethernet(b, ts, seg, depth+1)
		}
		return fail(ReasonNotTCP, nil)
	}
}

func (d *Decoder) rawIP(b []byte, ts time.Time, seg *Segment, depth int) error {
	if len(b) == 0 {
		return fail(ReasonTruncated, nil)
	}
	switch b[0] >> 4 {
	case 4:
		return d.ipv4(b, ts, seg, depth)
	case 6:
		return d.ipv6(b, ts, seg, depth)
	}
	return fail(ReasonNotTCP, nil)
}

func (d *Decoder) ipv4(b []byte, ts time.Time, seg *Segment, depth int) error {
	if err := d.ip4.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		return fail(ReasonMalformed, err)
	}
	ip := &d.ip4
	if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
		whole, err := d.fragment(ip, ts)
		if err != nil {
			return err
		}
		ip = whole
	}
	src, _ := netip.AddrFromSlice(ip.SrcIP.To4())
	dst, _ := netip.AddrFromSlice(ip.DstIP.To4())
	seg.NetFlow = ip.NetworkFlow()
	return d.transport(ip.Protocol, ip.Payload, src, dst, ts, seg, depth)
}

// fragment hands a fragment to the defragmenter; it returns the whole
// datagram when complete. The defragmenter keeps at most maxFragments
// datagrams: past that, the oldest are discarded (counted as invalid).
func (d *Decoder) fragment(ip *layers.IPv4, ts time.Time) (*layers.IPv4, error) {
	if ts.Sub(d.lastDiscard) > time.Second {
		d.fragments -= d.defrag.DiscardOlderThan(ts.Add(-30 * time.Second))
		d.lastDiscard = ts
	}
	if d.fragments >= d.maxFragments {
		d.fragments -= d.defrag.DiscardOlderThan(ts)
		if d.fragments < 0 {
			d.fragments = 0
		}
	}
	// The defragmenter keeps the layer it is given: give it a copy.
	cp := *ip
	cp.Payload = append([]byte(nil), ip.Payload...)
	whole, err := d.defrag.DefragIPv4WithTimestamp(&cp, ts)
	if err != nil {
		return nil, fail(ReasonFragmentBad, err)
	}
	if whole == nil {
		d.fragments++
		return nil, fail(ReasonFragment, nil)
	}
	if d.fragments > 0 {
		d.fragments--
	}
	return whole, nil
}

func (d *Decoder) ipv6(b []byte, ts time.Time, seg *Segment, depth int) error {
	if err := d.ip6.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		return fail(ReasonMalformed, err)
	}
	src, _ := netip.AddrFromSlice(d.ip6.SrcIP)
	dst, _ := netip.AddrFromSlice(d.ip6.DstIP)
	seg.NetFlow = d.ip6.NetworkFlow()
	next, payload := d.ip6.NextHeader, d.ip6.Payload
	if d.ip6.HopByHop != nil {
		// gopacket takes the hop-by-hop header into the IPv6 layer and
		// off its payload, but leaves NextHeader naming it.
		next = d.ip6.HopByHop.NextHeader
	}
	// Walk the common extension headers to the transport.
	for i := 0; i < 8; i++ {
		switch next {
		case layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing, layers.IPProtocolIPv6Destination:
			if len(payload) < 8 {
				return fail(ReasonTruncated, nil)
			}
			n := 8 + int(payload[1])*8
			if len(payload) < n {
				return fail(ReasonTruncated, nil)
			}
			next, payload = layers.IPProtocol(payload[0]), payload[n:]
			continue
		case layers.IPProtocolIPv6Fragment:
			var err error
			next, payload, err = d.defrag6.add(src, dst, payload, ts, d.maxFragments)
			if err != nil {
				return err
			}
			continue
		}
		break
	}
	return d.transport(next, payload, src, dst, ts, seg, depth)
}

func (d *Decoder) transport(p layers.IPProtocol, b []byte, src, dst netip.Addr, ts time.Time, seg *Segment, depth int) error {
	switch p {
	case layers.IPProtocolTCP:
		if err := d.tcp.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
			return fail(ReasonMalformed, err)
		}
		seg.Src, seg.Dst, seg.TCP = src, dst, &d.tcp
		return nil
	case layers.IPProtocolUDP:
		if err := d.udp.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
			return fail(ReasonMalformed, err)
		}
		switch d.udp.DstPort {
		case PortVXLAN:
			return d.VXLAN(d.udp.Payload, ts, seg, depth+1)
		case PortGeneve:
			return d.Geneve(d.udp.Payload, ts, seg, depth+1)
		}
		return fail(ReasonNotTCP, nil)
	case layers.IPProtocolGRE:
		return d.greFrame(b, ts, seg, depth+1)
	case layers.IPProtocolIPv4:
		return d.ipv4(b, ts, seg, depth+1)
	case layers.IPProtocolIPv6:
		return d.ipv6(b, ts, seg, depth+1)
	}
	return fail(ReasonNotTCP, nil)
}

// VXLAN decodes a VXLAN payload (as received on a UDP socket).
func (d *Decoder) VXLAN(b []byte, ts time.Time, seg *Segment, depth int) error {
	if depth > maxDepth {
		return fail(ReasonTooDeep, nil)
	}
	if err := d.vxlan.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		return fail(ReasonMalformed, err)
	}
	seg.Mirror.VNI = d.vxlan.VNI
	return d.ethernet(d.vxlan.Payload, ts, seg, depth)
}

// Geneve decodes a GENEVE payload (as received on a UDP socket).
func (d *Decoder) Geneve(b []byte, ts time.Time, seg *Segment, depth int) error {
	if depth > maxDepth {
		return fail(ReasonTooDeep, nil)
	}
	if err := d.geneve.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		return fail(ReasonMalformed, err)
	}
	seg.Mirror.VNI = d.geneve.VNI
	return d.etherType(d.geneve.Protocol, d.geneve.Payload, ts, seg, depth)
}

func (d *Decoder) greFrame(b []byte, ts time.Time, seg *Segment, depth int) error {
	if depth > maxDepth {
		return fail(ReasonTooDeep, nil)
	}
	if err := d.gre.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		return fail(ReasonMalformed, err)
	}
	switch d.gre.Protocol {
	case layers.EthernetTypeERSPAN: // 0x88be: ERSPAN type II (type I has no header)
		if !d.gre.SeqPresent {
			return d.ethernet(d.gre.Payload, ts, seg, depth) // type I
		}
		if err := d.erspan.DecodeFromBytes(d.gre.Payload, gopacket.NilDecodeFeedback); err != nil {
			return fail(ReasonMalformed, err)
		}
		seg.Mirror.ERSPANSession = d.erspan.SessionID
		return d.ethernet(d.erspan.Payload, ts, seg, depth)
	case 0x22eb: // ERSPAN type III: 12-byte header, 8 more with the O flag
		p := d.gre.Payload
		if len(p) < 12 {
			return fail(ReasonTruncated, nil)
		}
		seg.Mirror.ERSPANSession = binary.BigEndian.Uint16(p[2:4]) & 0x03ff
		n := 12
		if p[11]&0x01 != 0 {
			n += 8
		}
		if len(p) < n {
			return fail(ReasonTruncated, nil)
		}
		return d.ethernet(p[n:], ts, seg, depth)
	}
	return d.etherType(d.gre.Protocol, d.gre.Payload, ts, seg, depth)
}
