package reassemble

import (
	"bytes"
	"math/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/apiscout/apiscout/internal/pcapgen"
	"github.com/apiscout/apiscout/sensor/decode"
	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// recorder is a stream.Parser that keeps what reassembly delivered and
// emits one record per connection at Close.
type recorder struct {
	data [2][]byte
	gaps int
	emit stream.Emit
}

func (p *recorder) Data(d stream.Dir, b []byte, _ time.Time) { p.data[d] = append(p.data[d], b...) }
func (p *recorder) Gap(stream.Dir, int, time.Time)           { p.gaps++ }
func (p *recorder) Tick(time.Time)                           {}
func (p *recorder) Close(string, time.Time)                  { p.emit(&wire.Transaction{Path: "/"}) }

type harness struct {
	r    *Reassembler
	conn []*recorder
	txs  []*wire.Transaction
}

func newHarness(opts Options) *harness {
	h := &harness{}
	factory := func(_ stream.ConnInfo, emit stream.Emit) stream.Parser {
		p := &recorder{emit: emit}
		h.conn = append(h.conn, p)
		return p
	}
	h.r = New(opts, factory, func(t *wire.Transaction) { h.txs = append(h.txs, t) }, nil)
	return h
}

func (h *harness) feed(t testing.TB, pkts []pcapgen.Packet) {
	t.Helper()
	dec := decode.New(16)
	var seg decode.Segment
	for _, p := range pkts {
		if err := dec.Decode(p.Data, layers.LinkTypeEthernet, p.Time, &seg); err != nil {
			t.Fatal(err)
		}
		h.r.Packet(&seg, gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: len(p.Data)})
	}
	h.r.Close("shutdown")
}

var t0 = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

func newConn() *pcapgen.Conn {
	return pcapgen.NewConn(netip.MustParseAddrPort("10.1.0.1:40000"), netip.MustParseAddrPort("10.2.0.1:80"), t0).Handshake()
}

// TestOverlapFirstCopyWins drives each overlap shape through gopacket and
// checks the stream delivered, the counters and the flag.
func TestOverlapFirstCopyWins(t *testing.T) {
	msg := []byte("GET /account?id=1 HTTP/1.1\r\nHost: a\r\n\r\n")
	for _, tc := range []struct {
		name     string
		build    func(c *pcapgen.Conn)
		want     string
		mismatch bool
		same     uint64
	}{{
		name: "identical retransmission",
		build: func(c *pcapgen.Conn) {
			c.Client(msg).Segment(true, -len(msg), msg)
		},
		want: string(msg), same: uint64(len(msg)),
	}, {
		name: "retransmission with other bytes after delivery",
		build: func(c *pcapgen.Conn) {
			c.Client(msg).Segment(true, -len(msg), bytes.Replace(msg, []byte("id=1"), []byte("id=2"), 1))
		},
		want: string(msg), mismatch: true, same: uint64(len(msg) - 1),
	}, {
		name: "conflicting copies both out of order (gopacket alone keeps the last)",
		build: func(c *pcapgen.Conn) {
			c.Segment(true, 10, msg[10:]).
				Segment(true, 10, bytes.Replace(msg[10:], []byte("id=1"), []byte("id=9"), 1)).
				Segment(true, 0, msg[:10]).Skip(true, len(msg))
		},
		want: string(msg), mismatch: true, same: uint64(len(msg) - 11),
	}, {
		name: "new segment straddles delivered and queued bytes",
		build: func(c *pcapgen.Conn) {
			evil := bytes.ToUpper(msg)
			c.Segment(true, 0, msg[:10]).Segment(true, 20, msg[20:30]).
				Segment(true, 5, evil[5:35]).Segment(true, 35, msg[35:]).Skip(true, len(msg))
		},
		want: string(bytes.ToUpper(msg[10:20])), mismatch: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(Options{})
			c := newConn()
			tc.build(c)
			h.feed(t, c.Close().Packets())
			got := string(h.conn[0].data[stream.ClientToServer])
			want := tc.want
			if tc.name == "new segment straddles delivered and queued bytes" {
				want = string(msg[:10]) + tc.want + string(msg[20:30]) + string(bytes.ToUpper(msg[30:35])) + string(msg[35:])
			}
			if got != want {
				t.Fatalf("stream %q, want %q", got, want)
			}
			if (h.r.Mismatches > 0) != tc.mismatch {
				t.Fatalf("mismatches %d, want %v", h.r.Mismatches, tc.mismatch)
			}
			// The final ACK after both FINs opens a connection of its own.
			if len(h.txs) == 0 || h.txs[0].Flags.Has(wire.FlagRetransmitMismatch) != tc.mismatch {
				t.Fatalf("%d records, mismatch flag %v", len(h.txs), !tc.mismatch)
			}
			if tc.same != 0 && h.r.OverlapSame != tc.same {
				t.Fatalf("same bytes %d, want %d", h.r.OverlapSame, tc.same)
			}
		})
	}
}

// TestOverlapRandomFirstWins sends a stream cut at random, with each
// segment followed by corrupted copies of ranges already sent and the
// segments reordered within a short distance: the stream delivered is
// the original, and every corrupted copy is counted.
func TestOverlapRandomFirstWins(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 50; round++ {
		data := make([]byte, 20000+rng.Intn(20000))
		for i := range data {
			data[i] = 'a' + byte(rng.Intn(26))
		}
		type seg struct{ off, n int }
		var segs []seg
		for off := 0; off < len(data); {
			n := min(1+rng.Intn(1500), len(data)-off)
			segs = append(segs, seg{off, n})
			off += n
		}
		for i := range segs { // reorder within 3 places
			j := min(len(segs)-1, i+rng.Intn(3))
			segs[i], segs[j] = segs[j], segs[i]
		}
		c := newConn()
		sent := make([]bool, len(data))
		corrupt := 0
		for _, s := range segs {
			c.Segment(true, s.off, data[s.off:s.off+s.n])
			for i := s.off; i < s.off+s.n; i++ {
				sent[i] = true
			}
			if rng.Intn(3) == 0 { // a corrupted copy over bytes already sent
				a := rng.Intn(len(data))
				b := min(len(data), a+1+rng.Intn(2000))
				bad := append([]byte(nil), data[a:b]...)
				flipped := false
				for i := range bad {
					if sent[a+i] && rng.Intn(50) == 0 {
						bad[i] ^= 0x20
						flipped = true
					}
				}
				for i := range bad { // bytes not sent yet stay true: this copy is their first
					if !sent[a+i] {
						bad[i] = data[a+i]
					}
				}
				if flipped {
					corrupt++
				}
				c.Segment(true, a, bad)
			}
		}
		c.Skip(true, len(data))
		h := newHarness(Options{})
		h.feed(t, c.Close().Packets())
		if got := h.conn[0].data[stream.ClientToServer]; !bytes.Equal(got, data) {
			t.Fatalf("round %d: stream differs (%d bytes of %d)", round, len(got), len(data))
		}
		if h.r.Mismatches != uint64(corrupt) {
			t.Fatalf("round %d: %d mismatches, want %d", round, h.r.Mismatches, corrupt)
		}
		if h.r.overlapMem != 0 {
			t.Fatalf("round %d: %d window bytes held after close", round, h.r.overlapMem)
		}
	}
}

// TestWindowBounds checks the ring: it grows to the window and no
// further, slides, survives sequence wrap-around, and respects the budget.
func TestWindowBounds(t *testing.T) {
	spent := 0
	budget := func(d int) bool {
		if spent+d > 10000 {
			return false
		}
		spent += d
		return true
	}
	var w window
	seq := uint32(1<<32 - 3000) // wraps inside the test
	next := seq
	chunk := bytes.Repeat([]byte("0123456789"), 100)
	for i := 0; i < 40; i++ {
		w.store(next, chunk, next, 4096, 8192, budget)
		next += uint32(len(chunk))
	}
	if len(w.buf) != 8192 || spent != ringCost(8192) {
		t.Fatalf("ring %d, spent %d", len(w.buf), spent)
	}
	// The last 8 KiB minus alignment compare; older bytes are unverified.
	var res overlapResult
	var scratch []byte
	old := next - 10000
	w.compare(old, make([]byte, 10000), next, &scratch, &res)
	if res.unverified < 10000-8192 || res.unverified > 10000-8192+64 || res.differ+res.unverified != 10000 {
		t.Fatalf("%+v", res)
	}
	// A second window cannot grow past the budget: it stays unmade.
	var w2 window
	w2.store(0, make([]byte, 5000), 0, 4096, 8192, budget)
	if len(w2.buf) != 0 {
		t.Fatalf("ring of %d made over budget", len(w2.buf))
	}
	// Bytes far ahead of next are not stored (they would push out the past).
	w.store(next+5000, chunk, next, 4096, 8192, budget)
	if w.hi != next {
		t.Fatal("stored bytes beyond the window ahead")
	}
}

// BenchmarkReassemble measures the cost of keeping windows on an in-order
// stream of MSS-sized segments, against the same with comparison off.
func BenchmarkReassemble(b *testing.B) {
	c := pcapgen.NewConn(netip.MustParseAddrPort("10.1.0.1:40000"), netip.MustParseAddrPort("10.2.0.1:80"), t0).Handshake()
	body := bytes.Repeat([]byte("x"), 1448*1000)
	pkts := c.Client(body).Packets()
	dec := decode.New(16)
	segs := make([]decode.Segment, len(pkts))
	for i, p := range pkts {
		if err := dec.Decode(p.Data, layers.LinkTypeEthernet, p.Time, &segs[i]); err != nil {
			b.Fatal(err)
		}
		tcp := *segs[i].TCP
		tcp.Payload = append([]byte(nil), tcp.Payload...)
		segs[i].TCP = &tcp
	}
	for _, mode := range []struct {
		name   string
		window int
	}{{"compare", 0}, {"off", -1}} {
		b.Run(mode.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				r := New(Options{OverlapWindow: mode.window}, func(stream.ConnInfo, stream.Emit) stream.Parser { return &discard{} }, func(*wire.Transaction) {}, nil)
				for j := range segs {
					ts := pkts[j].Time
					r.Packet(&segs[j], gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(pkts[j].Data), Length: len(pkts[j].Data)})
				}
				r.Close("shutdown")
			}
		})
	}
}

type discard struct{}

func (discard) Data(stream.Dir, []byte, time.Time) {}
func (discard) Gap(stream.Dir, int, time.Time)     {}
func (discard) Tick(time.Time)                     {}
func (discard) Close(string, time.Time)            {}

// FuzzWindow drives a window with segments chosen by the fuzzer around a
// moving next sequence number (near the 32-bit wrap) and checks it
// against a map of first copies: it never panics, never reports a byte
// as seen that was not stored, keeps the first copy where it rewrites,
// and never holds more than its ring.
func FuzzWindow(f *testing.F) {
	f.Add([]byte{0, 10, 20, 1, 5, 30, 2, 0, 8, 3, 40, 4})
	f.Add(bytes.Repeat([]byte{7, 200, 13}, 40))
	f.Fuzz(windowOps)
}

func windowOps(t *testing.T, ops []byte) {
	{
		const ahead, ring = 256, 512
		var w window
		first := map[uint32]byte{}
		next := uint32(1<<32 - 300)
		var scratch []byte
		for i := 0; i+2 < len(ops); i += 3 {
			off := int(int8(ops[i])) * 4 // -512..508 around next
			n := 1 + int(ops[i+1])%96
			fill := ops[i+2]
			seq := next + uint32(off)
			payload := make([]byte, n)
			for k := range payload {
				payload[k] = fill + byte(k)
			}
			var res overlapResult
			out := w.compare(seq, payload, next, &scratch, &res)
			differ := 0
			for k := range payload {
				s := seq + uint32(k)
				v, known := first[s]
				if out[k] != payload[k] && (!known || out[k] != v || seqDiff(next, s) < 0) {
					t.Fatalf("byte %d rewritten to %d (first %d, known %v)", s, out[k], v, known)
				}
				if known && v != payload[k] {
					differ++
				}
			}
			if res.differ > differ {
				t.Fatalf("%d bytes reported different, %d are", res.differ, differ)
			}
			if fill%3 == 0 && res.differ != differ && seqDiff(seq, next) <= 0 && off+n <= ahead {
				// new bytes within reach were all stored: every conflict is seen
				t.Fatalf("missed conflicts: %d of %d", res.differ, differ)
			}
			w.store(seq, out, next, ahead, ring, func(int) bool { return true })
			for k := range out {
				s := seq + uint32(k)
				if d := seqDiff(next, s); d >= 0 && d < ahead {
					if _, ok := first[s]; !ok {
						first[s] = out[k]
					}
				}
			}
			if len(w.buf) > ring {
				t.Fatalf("ring %d", len(w.buf))
			}
			if ops[i]%5 == 0 { // the stream moves on
				next += uint32(ops[i+1])
			}
		}
	}
}
