package pcapgen

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestFragmentAndTTL(t *testing.T) {
	c := NewConn(netip.MustParseAddrPort("10.0.0.1:1000"), netip.MustParseAddrPort("10.0.0.2:80"), time.Unix(0, 0)).
		TTL(3).Client(bytes.Repeat([]byte("abcdefgh"), 20))
	frame := c.Packets()[0]
	whole := gopacket.NewPacket(frame.Data, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if whole.TTL != 3 {
		t.Fatalf("ttl %d", whole.TTL)
	}
	frags, err := FragmentEvenly(frame, 48)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for i, f := range frags {
		ip := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		more := ip.Flags&layers.IPv4MoreFragments != 0
		if int(ip.FragOffset)*8 != len(got) || more != (i < len(frags)-1) || ip.Id != whole.Id || ip.TTL != 3 {
			t.Fatalf("fragment %d: offset %d more %v id %d", i, ip.FragOffset, more, ip.Id)
		}
		got = append(got, ip.Payload...)
	}
	if !bytes.Equal(got, whole.Payload) {
		t.Fatal("fragments do not add up to the datagram")
	}
	if _, err := Fragment(frame, []FragmentSpec{{Offset: 3, Len: 8}}); err == nil {
		t.Fatal("offset not a multiple of 8 accepted")
	}
	if _, err := FragmentEvenly(frame, 12); err == nil {
		t.Fatal("size not a multiple of 8 accepted")
	}
}
