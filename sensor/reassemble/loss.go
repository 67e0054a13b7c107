package reassemble

import (
	"encoding/binary"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/reassembly"
)

// Loss: when a receiver acknowledges bytes the capture never had, the hole
// will not be filled, and the bytes queued behind it go to the parser now,
// after a gap, so that what follows is parsed in its turn (a response is
// not left waiting behind the next request).
//
// gopacket skips holes only by flushing every connection at once. That
// also pushes past the holes of connections whose segments are merely out
// of order: their late segment then lands behind the stream and is lost,
// and a gap is reported that the network never made. So only the lossy
// direction is moved on: a segment of zeros is assembled at its hole, up to
// the first byte queued behind it (no further than the acknowledgement),
// and reported to the parser as a gap of that size, never as data.
//
// Cost: per direction, the ranges queued out of order (a slice, empty while
// the stream is in order, up to maxQueued); per fill, a reused segment of
// zeros. A hole larger than maxFill, or more queued ranges than maxQueued,
// falls back to the flush of every connection.
const (
	maxFill   = 256 << 10
	maxQueued = 1024
)

// span is a range of sequence numbers, [seq, end).
type span struct{ seq, end uint32 }

// lossState is what a connection keeps to fill its holes.
type lossState struct {
	// flow and ports address each direction of the assembler (0: the
	// direction of the connection's first packet).
	flow  [2]gopacket.Flow
	ports [2][2]uint16
	// pos is the next byte to deliver, once posSet.
	pos    [2]uint32
	posSet [2]bool
	// queued are ranges that came ahead of pos; maxEnd is the highest end
	// among them; overflow says some were not recorded.
	queued   [2][]span
	maxEnd   [2]uint32
	overflow [2]bool
	// fill is how many bytes at the start of the next delivery are zeros
	// standing for lost ones.
	fill [2]int
}

// lostHalf is a direction whose receiver acknowledged up to ack past a
// hole.
type lostHalf struct {
	c   *conn
	di  int
	ack uint32
}

// fillContext marks the segments that fill a hole.
type fillContext struct{ ci gopacket.CaptureInfo }

func (f *fillContext) GetCaptureInfo() gopacket.CaptureInfo { return f.ci }

func (s *lossState) init(netFlow gopacket.Flow, tcp *layers.TCP) {
	s.flow = [2]gopacket.Flow{netFlow, netFlow.Reverse()}
	sp, dp := uint16(tcp.SrcPort), uint16(tcp.DstPort)
	s.ports = [2][2]uint16{{sp, dp}, {dp, sp}}
}

// seen notes a segment of direction di as gopacket is about to take it.
func (s *lossState) seen(di int, tcp *layers.TCP, nextSeq reassembly.Sequence) {
	if nextSeq == invalidSequence {
		return
	}
	next := uint32(nextSeq)
	s.pos[di], s.posSet[di] = next, true
	if len(s.queued[di]) > 0 && seqDiff(s.maxEnd[di], next) >= 0 {
		s.queued[di], s.overflow[di] = s.queued[di][:0], false // all delivered
	}
	if len(tcp.Payload) == 0 || seqDiff(next, tcp.Seq) <= 0 {
		return
	}
	end := tcp.Seq + uint32(len(tcp.Payload))
	if len(s.queued[di]) >= maxQueued {
		s.prune(di)
		if len(s.queued[di]) >= maxQueued {
			s.overflow[di] = true
			return
		}
	}
	if len(s.queued[di]) == 0 || seqDiff(s.maxEnd[di], end) > 0 {
		s.maxEnd[di] = end
	}
	s.queued[di] = append(s.queued[di], span{tcp.Seq, end})
}

// prune forgets the ranges already delivered.
func (s *lossState) prune(di int) {
	q := s.queued[di][:0]
	for _, r := range s.queued[di] {
		if seqDiff(s.pos[di], r.end) > 0 {
			q = append(q, r)
		}
	}
	s.queued[di] = q
}

// delivered advances pos past a delivery of skip (lost) and n bytes, and
// returns how many of the n are a fill.
func (s *lossState) delivered(di, skip, n int) int {
	if s.posSet[di] {
		s.pos[di] += uint32(max(skip, 0) + n)
	}
	f := min(s.fill[di], n)
	s.fill[di] -= f
	return f
}

// skipLost moves each direction a receiver proved lossy past its holes, as
// far as the acknowledgement reaches; those it cannot fill are flushed
// with every connection.
func (r *Reassembler) skipLost() {
	for _, l := range r.lost {
		if !l.c.fillHoles(l.di, l.ack) {
			r.lossSeen = true
		}
	}
	clear(r.lost)
	r.lost = r.lost[:0]
	if r.lossSeen {
		r.forceFlush()
	}
}

// fillHoles fills direction di's holes below ack, each up to the first
// byte queued behind it. It returns false when it cannot (too many ranges
// or too large a hole).
func (c *conn) fillHoles(di int, ack uint32) bool {
	s := &c.loss
	for !c.done && s.posSet[di] {
		if s.overflow[di] {
			return false
		}
		s.prune(di)
		pos := s.pos[di]
		first, found := uint32(0), false
		for _, q := range s.queued[di] {
			if seqDiff(pos, q.seq) <= 0 {
				return false // bytes at pos are queued: not a hole gopacket knows
			}
			if !found || seqDiff(first, q.seq) < 0 {
				first, found = q.seq, true
			}
		}
		if !found || seqDiff(pos, ack) <= 0 {
			return true
		}
		if seqDiff(ack, first) > 0 {
			first = ack // the rest of the hole is not acknowledged yet
		}
		n := seqDiff(pos, first)
		if n > maxFill {
			return false
		}
		c.r.fillSegment(c, di, pos, n)
		if s.pos[di] == pos {
			return true // gopacket took nothing: the direction is closed
		}
	}
	s.prune(di)
	if !c.done && len(s.queued[di]) > 0 {
		// Bytes still wait behind a hole: the next acknowledgement past
		// it proves it lost too.
		c.hole[di], c.holeSet[di] = reassembly.Sequence(s.pos[di]), true
	}
	return true
}

// fillSegment assembles n zeros at seq in direction di of c.
func (r *Reassembler) fillSegment(c *conn, di int, seq uint32, n int) {
	const hdr = 20
	if cap(r.fill) < hdr+n {
		r.fill = make([]byte, hdr+n)
	}
	b := r.fill[:hdr+n]
	clear(b)
	binary.BigEndian.PutUint16(b[0:], c.loss.ports[di][0])
	binary.BigEndian.PutUint16(b[2:], c.loss.ports[di][1])
	binary.BigEndian.PutUint32(b[4:], seq)
	b[12] = hdr / 4 << 4
	binary.BigEndian.PutUint16(b[14:], 65535)
	if err := r.fillTCP.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		return
	}
	c.loss.fill[di] = n
	r.asm.AssembleWithContext(c.loss.flow[di], &r.fillTCP, &fillContext{ci: gopacket.CaptureInfo{Timestamp: r.now}})
	c.loss.fill[di] = 0
}
