//go:build linux

package capture

import (
	"net"
	"testing"
	"time"

	"github.com/apiscout/apiscout/internal/netns"
)

// TestInterfaceDropsCountedOnce overflows a small ring nobody reads and
// asks for the drop count several times: the kernel's count is read and
// reset by each call, and the total must not grow (but for a few stray
// frames) when no more traffic comes
// (summing running totals once multiplied every drop by the number of
// one-second reads that followed it).
func TestInterfaceDropsCountedOnce(t *testing.T) {
	if err := netns.Check(); err != nil {
		t.Fatal(err)
	}
	p, err := netns.NewPair("as-cap-1", 202, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	var in *Interface
	if err := netns.Do(p.NSA, func() (err error) {
		in, err = OpenInterface(InterfaceOptions{Name: p.DevA, RingSize: 2 << 20, Snaplen: 2048})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var pc net.PacketConn
	if err := netns.Do(p.NSB, func() (err error) {
		pc, err = net.ListenPacket("udp4", p.AddrB+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst := &net.UDPAddr{IP: net.ParseIP(p.AddrA), Port: 9}
	const sent = 20000 // 20 MB into a 2 MiB ring
	payload := make([]byte, 1000)
	for i := 0; i < sent; i++ {
		if _, err := pc.WriteTo(payload, dst); err != nil {
			t.Fatal(err)
		}
	}
	// The datagrams are delivered to the ring synchronously by the veth;
	// the sleep only lets stray frames (neighbour discovery) pass.
	time.Sleep(200 * time.Millisecond)
	d1, p1 := in.Drops()
	d2, p2 := in.Drops()
	time.Sleep(100 * time.Millisecond)
	d3, p3 := in.Drops()
	t.Logf("sent %d: drops %d, packets %d", sent, d1, p1)
	if d1 == 0 {
		t.Fatalf("no drop counted after %d datagrams into a 2 MiB ring nobody reads", sent)
	}
	// Port unreachable replies (rate-limited) pass the same interface.
	if d1 > 2*sent {
		t.Errorf("%d drops counted for %d datagrams", d1, sent)
	}
	// Stray frames (rate-limited port-unreachable replies, neighbour
	// discovery) may still pass; counting again would add thousands.
	const stray = 50
	if d2 < d1 || d3 < d2 || d3-d1 > stray || p2 < p1 || p3 < p2 || p3-p1 > stray {
		t.Errorf("counts grew without traffic: drops %d, %d, %d; packets %d, %d, %d", d1, d2, d3, p1, p2, p3)
	}
}
