package sensor

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/pcapgen"
	"github.com/apiscout/apiscout/wire"
)

// vxlan wraps an Ethernet frame in a VXLAN header with vni (RFC 7348).
func vxlan(vni uint32, frame []byte) []byte {
	b := make([]byte, 8, 8+len(frame))
	b[0] = 0x08 // I flag: the VNI is valid
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	return append(b, frame...)
}

// TestLiveVXLAN sends real VXLAN datagrams, as a cloud traffic mirror
// does, to the sensor's UDP listener on loopback: every transaction is
// reported with the VNI of the mirror session it came through.
func TestLiveVXLAN(t *testing.T) {
	// A free port: bind, note, release.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	cfg := config.Default().Sensor
	cfg.VXLANListen = addr
	s := startLive(t, "", cfg)
	out, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	send := func(vni uint32, pkts []pcapgen.Packet) error {
		for _, p := range pkts {
			if _, err := out.Write(vxlan(vni, p.Data)); err != nil {
				return err
			}
		}
		return nil
	}
	now := time.Now()
	s.ready(t, func(path string) error {
		req, resp := exchange("GET", path, "", 200, "{}")
		c := pcapgen.NewConn(netip.MustParseAddrPort("10.203.0.9:41000"), netip.MustParseAddrPort("10.203.1.1:80"), now).
			Handshake().Client(req).Server(resp).Close()
		return send(1, c.Packets())
	})

	type want struct {
		path    string
		vni     uint32
		status  int
		reqLen  int64
		respLen int64
	}
	var wants []want
	for i := 0; i < 40; i++ {
		vni := uint32(4242)
		if i%2 == 1 {
			vni = 77
		}
		c := pcapgen.NewConn(netip.MustParseAddrPort(fmt.Sprintf("10.203.0.%d:%d", i+10, 42000+i)),
			netip.MustParseAddrPort("10.203.1.1:8080"), now).Handshake()
		for j := 0; j < 3; j++ {
			w := want{path: fmt.Sprintf("/vx/%d/%d", i, j), vni: vni, status: []int{200, 201, 404}[j],
				reqLen: int64(10 * j), respLen: int64(1000*i + j)}
			req, resp := exchange("POST", w.path, strings.Repeat("r", int(w.reqLen)), w.status, strings.Repeat("s", int(w.respLen)))
			c.Client(req).Server(resp)
			wants = append(wants, w)
		}
		if err := send(vni, c.Close().Packets()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // a mirror's pace, not a burst into one socket buffer
	}
	s.waitFor(func(txs []*wire.Transaction) bool {
		n := 0
		for _, tx := range txs {
			if strings.HasPrefix(tx.Path, "/vx/") {
				n++
			}
		}
		return n >= len(wants)
	})
	st := s.stop(t)
	got := byPath(s.sink.snapshot(), "")
	for _, w := range wants {
		tx := got[w.path]
		if tx == nil {
			t.Errorf("%s not reported (stats %+v)", w.path, st)
			continue
		}
		if tx.Mirror.VNI != w.vni || tx.Method != "POST" || tx.Status != w.status ||
			tx.RequestBodyLen != w.reqLen || tx.ResponseBodyLen != w.respLen || tx.Flags != 0 {
			t.Errorf("%s: VNI %d %s %d request %d response %d flags %v; want VNI %d status %d request %d response %d",
				w.path, tx.Mirror.VNI, tx.Method, tx.Status, tx.RequestBodyLen, tx.ResponseBodyLen, tx.Flags, w.vni, w.status, w.reqLen, w.respLen)
		}
	}
	if st.DecodeErrors != 0 || st.Dropped != 0 {
		t.Errorf("decode errors %d, dropped %d", st.DecodeErrors, st.Dropped)
	}
}
