package decode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// ip6Defrag reassembles IPv6 fragments (RFC 8200 section 4.5), which
// gopacket does not. An exact copy of a fragment is ignored; fragments
// that overlap otherwise make the whole datagram invalid (RFC 5722): an overlap is how evasion tools show the sensor one
// payload and the server another, so none of it is reported. Datagrams
// are bounded in number (shared with IPv4's bound), in size (64 KiB) and
// in time (30 s of packet time).
type ip6Defrag struct {
	pending map[ip6Key]*ip6Datagram
	// order holds keys in arrival order, for expiry without a scan;
	// keys of datagrams already gone are skipped and compacted away.
	order []ip6Key
}

type ip6Key struct {
	src, dst netip.Addr
	id       uint32
}

type ip6Datagram struct {
	first time.Time
	next  layers.IPProtocol // from the first fragment's header
	// parts are the fragments received, by offset; total is the length
	// once the last fragment (M flag clear) has come, else -1.
	parts []ip6Part
	total int
	size  int
}

type ip6Part struct {
	off  int
	data []byte
}

const (
	ip6MaxDatagram = 65535
	ip6Timeout     = 30 * time.Second
)

var errIP6Overlap = errors.New("overlapping IPv6 fragments")

// add takes one fragment: the bytes after the fragment header, with the
// header's fields. It returns the datagram's next header and payload when
// complete.
func (d *ip6Defrag) add(src, dst netip.Addr, hdr []byte, ts time.Time, bound int) (layers.IPProtocol, []byte, error) {
	if len(hdr) < 8 {
		return 0, nil, fail(ReasonTruncated, nil)
	}
	next := layers.IPProtocol(hdr[0])
	offMore := binary.BigEndian.Uint16(hdr[2:4])
	off, more := int(offMore&^7), offMore&1 == 1
	id := binary.BigEndian.Uint32(hdr[4:8])
	data := hdr[8:]
	if !more && off == 0 {
		return next, data, nil // an atomic fragment (RFC 6946): the whole datagram
	}
	if more && len(data)%8 != 0 {
		return 0, nil, fail(ReasonFragmentBad, errors.New("IPv6 fragment length not a multiple of 8"))
	}
	if off+len(data) > ip6MaxDatagram {
		return 0, nil, fail(ReasonFragmentBad, errors.New("IPv6 fragments past 64 KiB"))
	}
	if d.pending == nil {
		d.pending = map[ip6Key]*ip6Datagram{}
	}
	d.expire(ts, bound)
	k := ip6Key{src, dst, id}
	dg := d.pending[k]
	if dg == nil {
		dg = &ip6Datagram{first: ts, total: -1}
		d.pending[k] = dg
		d.order = append(d.order, k)
	}
	for _, p := range dg.parts {
		if p.off == off && bytes.Equal(p.data, data) {
			// An exact copy (a span port often mirrors a packet twice).
			return 0, nil, fail(ReasonFragment, nil)
		}
		if off < p.off+len(p.data) && p.off < off+len(data) {
			delete(d.pending, k)
			return 0, nil, fail(ReasonFragmentBad, errIP6Overlap)
		}
	}
	if off == 0 {
		dg.next = next
	}
	if !more {
		if dg.total >= 0 && dg.total != off+len(data) {
			delete(d.pending, k)
			return 0, nil, fail(ReasonFragmentBad, errors.New("two last IPv6 fragments"))
		}
		dg.total = off + len(data)
	}
	if dg.total >= 0 && off+len(data) > dg.total {
		delete(d.pending, k)
		return 0, nil, fail(ReasonFragmentBad, errors.New("IPv6 fragment past the datagram's end"))
	}
	dg.parts = append(dg.parts, ip6Part{off: off, data: slices.Clone(data)})
	dg.size += len(data)
	if dg.total < 0 || dg.size != dg.total {
		return 0, nil, fail(ReasonFragment, nil)
	}
	// No overlaps and every byte present: the parts tile the datagram.
	delete(d.pending, k)
	slices.SortFunc(dg.parts, func(a, b ip6Part) int { return a.off - b.off })
	whole := make([]byte, 0, dg.total)
	for _, p := range dg.parts {
		whole = append(whole, p.data...)
	}
	return dg.next, whole, nil
}

// expire drops datagrams older than the timeout and, while there are
// bound or more, the oldest ones.
func (d *ip6Defrag) expire(ts time.Time, bound int) {
	for len(d.order) > 0 {
		k := d.order[0]
		dg, ok := d.pending[k]
		switch {
		case !ok:
		case len(d.pending) >= max(bound, 1), ts.Sub(dg.first) > ip6Timeout:
			delete(d.pending, k)
		default:
			if len(d.order) > 4*max(bound, 16) {
				d.compact()
			}
			return
		}
		d.order = d.order[1:]
	}
}

// compact drops the keys of datagrams already gone from order.
func (d *ip6Defrag) compact() {
	live := make([]ip6Key, 0, len(d.pending))
	for _, k := range d.order {
		if _, ok := d.pending[k]; ok {
			live = append(live, k)
		}
	}
	d.order = live
}
