package reassemble

import (
	"fmt"
	"math/rand"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/apiscout/apiscout/internal/pcapgen"
	"github.com/apiscout/apiscout/sensor/decode"
)

func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// packet feeds one frame and returns the connections tracked after it.
func (h *harness) packet(t *testing.T, dec *decode.Decoder, p pcapgen.Packet) int {
	t.Helper()
	var seg decode.Segment
	if err := dec.Decode(p.Data, layers.LinkTypeEthernet, p.Time, &seg); err != nil {
		t.Fatal(err)
	}
	h.r.Packet(&seg, gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: len(p.Data)})
	return h.r.Live()
}

// TestSegmentsWithoutPayloadOpenNothing: the ACK that ends a closed
// connection, and any bare segment of an unknown flow, open no
// connection (each used to open one that lived until the idle timeout);
// with midstream pickup off no segment without SYN does.
func TestSegmentsWithoutPayloadOpenNothing(t *testing.T) {
	closed := newConn().Client([]byte("GET / HTTP/1.1\r\n\r\n")).Server([]byte("HTTP/1.1 204 No Content\r\n\r\n")).Close().Packets()
	bare := pcapgen.NewConn(netip.MustParseAddrPort("10.1.0.9:40000"), netip.MustParseAddrPort("10.2.0.1:80"), t0).
		Skip(true, 100).Close().Reset(false).Packets() // FIN, FIN, ACK, RST of a flow never seen
	data := pcapgen.NewConn(netip.MustParseAddrPort("10.1.0.8:40000"), netip.MustParseAddrPort("10.2.0.1:80"), t0).
		Client([]byte("GET /late HTTP/1.1\r\n\r\n")).Packets() // data and its ACK, no SYN
	cases := []struct {
		name               string
		midstream          bool
		pkts               []pcapgen.Packet
		opened, live       int
		noConn, midstreamO float64
	}{
		{"closed connection's last ACK", true, closed, 1, 0, 1, 0},
		{"bare segments of an unknown flow", true, bare, 0, 0, 4, 0},
		{"data of an unknown flow, midstream on", true, data, 1, 1, 0, 0},
		{"data of an unknown flow, midstream off", false, data, 0, 0, 0, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(Options{Midstream: c.midstream})
			dec := decode.New(16)
			for _, p := range c.pkts {
				h.packet(t, dec, p)
			}
			if h.r.Live() != c.live {
				t.Errorf("%d connections tracked at the end, want %d", h.r.Live(), c.live)
			}
			if len(h.conn) != c.opened {
				t.Errorf("%d connections opened, want %d", len(h.conn), c.opened)
			}
			if got := value(h.r.m.Rejected.WithLabelValues("no_connection")); got != c.noConn {
				t.Errorf("rejected no_connection %v, want %v", got, c.noConn)
			}
			if got := value(h.r.m.Rejected.WithLabelValues("midstream_off")); got != c.midstreamO {
				t.Errorf("rejected midstream_off %v, want %v", got, c.midstreamO)
			}
		})
	}
}

// TestConnectionCap: a SYN flood many times the cap never makes the
// reassembler track more than the cap, the flood's connections are
// evicted and counted, and a connection that stays active through it is
// never evicted (its bytes arrive whole, on the one connection).
func TestConnectionCap(t *testing.T) {
	const limit, syns = 64, 5000
	h := newHarness(Options{MaxConnections: limit, Midstream: true})
	dec := decode.New(16)
	keep := newConn()
	var want []byte
	for _, p := range keep.Take() {
		h.packet(t, dec, p)
	}
	for i := 0; i < syns; i++ {
		ts := t0.Add(time.Duration(i+1) * 10 * time.Microsecond)
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}), uint16(1024+i))
		if n := h.packet(t, dec, pcapgen.SYN(ts, src, netip.MustParseAddrPort("10.2.0.1:80"), uint32(i))); n > limit {
			t.Fatalf("%d connections tracked after SYN %d, cap %d", n, i, limit)
		}
		if i%(limit/2) == 0 { // the active connection speaks more often than the cap turns over
			b := []byte(fmt.Sprintf("line %d\n", i))
			want = append(want, b...)
			for _, p := range keep.At(ts.Add(5 * time.Microsecond)).Client(b).Take() {
				if n := h.packet(t, dec, p); n > limit {
					t.Fatalf("%d connections tracked, cap %d", n, limit)
				}
			}
		}
	}
	r := h.r
	if r.PeakLive != limit {
		t.Errorf("peak %d connections, want the cap %d", r.PeakLive, limit)
	}
	evicted := value(r.m.Closed.WithLabelValues("evicted"))
	if evicted != float64(r.Evicted) || r.Evicted < syns+1-limit {
		t.Errorf("evicted: metric %v, total %d, want at least %d", evicted, r.Evicted, syns+1-limit)
	}
	h.r.Close("shutdown")
	if len(h.conn) != syns+1 || string(h.conn[0].data[0]) != string(want) {
		t.Errorf("%d connections opened (want %d); the active one delivered %d of %d bytes",
			len(h.conn), syns+1, len(h.conn[0].data[0]), len(want))
	}
}

func TestNthSmallest(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for trial := 0; trial < 500; trial++ {
		n := 1 + rng.Intn(200)
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(rng.Intn(1 + n/(1+trial%4))) // many duplicates in some trials
		}
		sorted := slices.Clone(v)
		slices.Sort(sorted)
		k := rng.Intn(n)
		if got := nthSmallest(v, k); got != sorted[k] {
			t.Fatalf("trial %d: %d-th smallest %d, want %d", trial, k, got, sorted[k])
		}
	}
}
