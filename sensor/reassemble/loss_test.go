package reassemble

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/apiscout/apiscout/internal/pcapgen"
)

// A loss proven on one connection (its receiver acknowledged bytes the
// capture never had) skips that connection's hole only: another
// connection whose segments are merely out of order still gets every
// byte, without a gap, when the late segment comes. The loss used to
// flush every connection's out-of-order bytes at once.
func TestLossSkipsOnlyItsConnection(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 300)
	for _, tc := range []struct {
		name  string
		holes int // holes in the lossy connection, all acknowledged at once
	}{{"one hole", 1}, {"two holes", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			// a: the first 1000 bytes of its response come after the rest.
			a := pcapgen.NewConn(netip.MustParseAddrPort("10.1.0.1:40000"), netip.MustParseAddrPort("10.2.0.1:80"), t0).
				MSS(1000).Handshake().Client([]byte("GET /a HTTP/1.1\r\n\r\n"))
			// b: loses bytes of its response; the client's ACK covers them.
			b := pcapgen.NewConn(netip.MustParseAddrPort("10.1.0.2:40000"), netip.MustParseAddrPort("10.2.0.1:80"), t0).
				MSS(500).Handshake().Client([]byte("GET /b HTTP/1.1\r\n\r\n"))
			pkts := append(a.Take(), b.Take()...)
			a.Segment(false, 1000, body[1000:2000]).Segment(false, 2000, body[2000:])
			pkts = append(pkts, a.Take()...)
			b.Segment(false, 0, body[:500])
			for i := 1; i <= tc.holes; i++ {
				b.Segment(false, 1000*i, body[1000*i:1000*i+500])
			}
			b.Skip(false, 1000*tc.holes+500).Client([]byte("GET /b2 HTTP/1.1\r\n\r\n")) // acknowledges all
			pkts = append(pkts, b.Take()...)
			a.Segment(false, 0, body[:1000]).Skip(false, len(body)).Client([]byte("GET /a2 HTTP/1.1\r\n\r\n"))
			pkts = append(pkts, a.Take()...)
			for i := range pkts {
				pkts[i].Time = t0.Add(time.Duration(i) * time.Microsecond)
			}

			h := newHarness(Options{Midstream: true})
			h.feed(t, pkts)
			if len(h.conn) != 2 {
				t.Fatalf("%d connections", len(h.conn))
			}
			ra, rb := h.conn[0], h.conn[1]
			if ra.gaps != 0 || !bytes.Equal(ra.data[1], body) {
				t.Errorf("reordered connection: %d gaps, %d of %d bytes", ra.gaps, len(ra.data[1]), len(body))
			}
			var want []byte
			want = append(want, body[:500]...)
			for i := 1; i <= tc.holes; i++ {
				want = append(want, body[1000*i:1000*i+500]...)
			}
			if rb.gaps != tc.holes || !bytes.Equal(rb.data[1], want) {
				t.Errorf("lossy connection: %d gaps, want %d; %d bytes, want %d", rb.gaps, tc.holes, len(rb.data[1]), len(want))
			}
			if got, want := h.r.GapBytes, uint64(500*tc.holes); got != want {
				t.Errorf("gap bytes %d, want %d", got, want)
			}
		})
	}
}
