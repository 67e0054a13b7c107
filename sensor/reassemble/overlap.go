package reassemble

import (
	"math/bits"
	"sync"
)

// Overlap policy: FIRST COPY WINS.
//
// gopacket trims a segment's bytes that were already delivered without
// looking at them, and lets a later segment overwrite bytes it still holds
// out of order (last copy wins there). Receivers disagree on overlaps
// (Ptacek & Newsham 1998), and an attacker who knows the sensor's rule can
// show it one stream and the server another. apiscout therefore keeps, per
// direction, a window of the bytes already taken into the stream (default:
// 64 KiB behind the next expected byte and 64 KiB ahead of it), compares
// every retransmitted or overlapping byte with it, and:
//
//   - keeps the first copy everywhere: bytes already delivered are trimmed
//     by gopacket as before; bytes still waiting out of order are written
//     back over the later copy before gopacket sees it, so its last-wins
//     becomes first-wins;
//   - counts overlapping bytes by result (same, differ, unverified: outside
//     the window or without window memory) and segments whose bytes
//     differ (apiscout_tcp_retransmit_mismatch_total);
//   - marks the next transaction emitted on the connection with
//     wire.FlagRetransmitMismatch.
//
// A sensor cannot know how far the receiver is (a TTL-limited insert dies
// before the server, an identical-looking one does not), so it does not
// guess which copy the server kept: it keeps one rule and reports the
// conflict, which the analyzer treats as possible evasion.
//
// Memory: each direction's window is a ring indexed by sequence number
// with one presence bit per byte. It is allocated on the first payload at
// 1 KiB and doubles as the stream grows, up to Options.OverlapWindow; the
// rings of all connections of a reassembler share Options.OverlapMemory.
// When that is spent a ring stops growing (it slides at its size) or is
// not made at all, and overlaps it cannot see count as unverified.
// Rings given up (a connection closed, a ring outgrown) are reused by
// later connections of the same reassembler (see rings).

// minRing is the size of a new window ring (a power of two, multiple of 64).
const minRing = 1 << 10

// window is one direction's recently accepted bytes, indexed by sequence
// number. base is a multiple of 64 so that presence words map one to one
// when the ring grows.
type window struct {
	buf  []byte
	have []uint64 // presence bit per byte of buf
	base uint32   // lowest sequence number the ring may hold
	hi   uint32   // one past the highest sequence number stored
	pool *rings   // where rings come from and go back (nil: allocated)
}

// rings recycles window rings by size. Every connection with payload
// makes a ring and doubles it as its stream grows, so without reuse the
// rings are most of what reassembly allocates (110 MB on make bench's
// 53 MB capture) and their zeroing and collection a tenth of its time.
// A reused ring needs only its presence bits cleared: no byte is read
// without its bit. The pool holds only rings already given up, garbage
// otherwise, and the collector empties a sync.Pool, so memory stays as
// the window budget (Options.OverlapMemory, which counts rings in use)
// and the collector had it.
type rings struct{ bySize [40]sync.Pool }

// ring is a pooled ring with its presence bits.
type ring struct {
	buf  []byte
	have []uint64
}

// get returns a ring of n bytes (a power of two) with no byte present.
func (p *rings) get(n int) ([]byte, []uint64) {
	if k := bits.TrailingZeros(uint(n)); p != nil && k < len(p.bySize) {
		if r, ok := p.bySize[k].Get().(*ring); ok {
			clear(r.have)
			return r.buf, r.have
		}
	}
	return make([]byte, n), make([]uint64, n/64)
}

// put gives a ring back.
func (p *rings) put(buf []byte, have []uint64) {
	if k := bits.TrailingZeros(uint(len(buf))); p != nil && len(buf) > 0 && k < len(p.bySize) {
		p.bySize[k].Put(&ring{buf: buf, have: have})
	}
}

// release gives the ring back and empties the window.
func (w *window) release() {
	w.pool.put(w.buf, w.have)
	*w = window{pool: w.pool}
}

// seqDiff is b-a in sequence space (RFC 1982 arithmetic on 32 bits).
func seqDiff(a, b uint32) int { return int(int32(b - a)) }

// overlapResult is what compare found.
type overlapResult struct {
	same, differ, unverified int
}

// compare checks payload (starting at sequence seq) against the bytes
// already known. Known bytes at or past next (not yet delivered) that
// differ are written back into out (a copy of payload made in scratch on
// the first difference) so the first copy wins. It returns the payload
// to hand on.
func (w *window) compare(seq uint32, payload []byte, next uint32, scratch *[]byte, res *overlapResult) []byte {
	out := payload
	if len(payload) == 0 {
		return out
	}
	// Bytes before next were delivered: all of them overlap. Bytes past
	// it overlap only where something is stored.
	delivered := max(0, min(len(payload), seqDiff(seq, next)))
	if len(w.buf) == 0 {
		res.unverified += delivered
		return out
	}
	end := len(payload)
	if d := seqDiff(seq, w.hi); d < end {
		end = max(d, 0) // nothing stored at or past hi
	}
	mask := uint32(len(w.buf) - 1)
	copied := false
	for i := 0; i < end; i++ {
		s := seq + uint32(i)
		off := seqDiff(w.base, s)
		if off < 0 || off >= len(w.buf) {
			if i < delivered {
				res.unverified++
			}
			continue
		}
		idx := s & mask
		if w.have[idx>>6]&(1<<(idx&63)) == 0 {
			if i < delivered {
				res.unverified++
			}
			continue
		}
		if w.buf[idx] == payload[i] {
			res.same++
			continue
		}
		res.differ++
		if i >= delivered {
			if !copied {
				*scratch = append((*scratch)[:0], payload...)
				out = *scratch
				copied = true
			}
			out[i] = w.buf[idx]
		}
	}
	if end < delivered {
		res.unverified += delivered - end
	}
	return out
}

// store records payload at seq, from next on and no further than ahead
// bytes past next (older bytes are in the ring or out of it already;
// farther ones would push the past out). budget is asked before the ring
// grows; it returns false when the shared memory is spent.
func (w *window) store(seq uint32, payload []byte, next uint32, ahead, maxRing int, budget func(delta int) bool) {
	from := max(0, seqDiff(seq, next))
	to := min(len(payload), seqDiff(seq, next)+ahead)
	if from >= to {
		return
	}
	s, e := seq+uint32(from), seq+uint32(to)
	data := payload[from:to]
	if len(w.buf) == 0 {
		w.base = next &^ 63 // bytes between next and s may come later
		w.hi = s
		need := min(nextPow2(max(seqDiff(w.base, e), minRing)), maxRing)
		if !budget(ringCost(need)) {
			return
		}
		w.buf, w.have = w.pool.get(need)
	}
	if span := seqDiff(w.base, e); span > len(w.buf) && len(w.buf) < maxRing {
		n := min(nextPow2(span), maxRing)
		if budget(ringCost(n) - ringCost(len(w.buf))) {
			w.grow(n)
		}
	}
	if seqDiff(w.base, e) > len(w.buf) { // slide: forget the oldest bytes
		nb := (e - uint32(len(w.buf)) + 63) &^ 63
		w.forget(nb)
	}
	if seqDiff(w.base, s) < 0 { // longer than the ring: keep the tail
		cut := seqDiff(s, w.base)
		if cut >= len(data) {
			return
		}
		s, data = w.base, data[cut:]
	}
	w.put(s, data)
	if seqDiff(w.hi, e) > 0 {
		w.hi = e
	}
}

// put copies data at s and marks it present; [s, s+len) lies in the ring.
func (w *window) put(s uint32, data []byte) {
	mask := uint32(len(w.buf) - 1)
	for len(data) > 0 {
		i := int(s & mask)
		n := copy(w.buf[i:], data)
		setBits(w.have, i, n)
		data = data[n:]
		s += uint32(n)
	}
}

// forget moves base up to nb (a multiple of 64), clearing what leaves.
func (w *window) forget(nb uint32) {
	n := seqDiff(w.base, nb)
	if n >= len(w.buf) {
		clear(w.have)
	} else {
		mask := uint32(len(w.buf) - 1)
		for s := w.base; s != nb; s += 64 {
			w.have[(s&mask)>>6] = 0
		}
	}
	w.base = nb
}

// grow moves the ring into one of n bytes, keeping every stored byte.
func (w *window) grow(n int) {
	buf, have := w.pool.get(n)
	om, nm := uint32(len(w.buf)-1), uint32(n-1)
	for s, k := w.base, 0; k < len(w.buf); s, k = s+64, k+64 {
		oi, ni := s&om, s&nm
		have[ni>>6] = w.have[oi>>6]
		copy(buf[ni:ni+64], w.buf[oi:oi+64])
	}
	w.pool.put(w.buf, w.have)
	w.buf, w.have = buf, have
}

// size is the memory the ring holds, for the shared budget.
func (w *window) size() int {
	if len(w.buf) == 0 {
		return 0
	}
	return ringCost(len(w.buf))
}

func ringCost(n int) int { return n + n/8 }

func nextPow2(n int) int {
	p := 64
	for p < n {
		p <<= 1
	}
	return p
}

// setBits sets n bits from bit i (no wrap: i+n <= 64*len(b)).
func setBits(b []uint64, i, n int) {
	for n > 0 {
		w, off := i>>6, i&63
		k := min(64-off, n)
		if k == 64 {
			b[w] = ^uint64(0)
		} else {
			b[w] |= ((1 << k) - 1) << off
		}
		i += k
		n -= k
	}
}
