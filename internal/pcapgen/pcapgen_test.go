package pcapgen

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func TestConversationReadsBack(t *testing.T) {
	req := bytes.Repeat([]byte("a"), 3000)
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	c := NewConn(netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:80"),
		time.Unix(1700000000, 0)).Handshake().Client(req).Server(resp).Close()
	path := filepath.Join(t.TempDir(), "c.pcap.gz")
	if err := WriteFile(path, c.Packets()); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	gz, err := gzipReader(f)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewReader(gz)
	if err != nil {
		t.Fatal(err)
	}
	var fromClient, fromServer []byte
	n := 0
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		n++
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil {
			t.Fatalf("packet %d has no TCP layer", n)
		}
		if err := tcp.SetNetworkLayerForChecksum(p.NetworkLayer()); err != nil {
			t.Fatal(err)
		}
		if tcp.DstPort == 80 {
			fromClient = append(fromClient, tcp.Payload...)
		} else {
			fromServer = append(fromServer, tcp.Payload...)
		}
	}
	if !bytes.Equal(fromClient, req) || !bytes.Equal(fromServer, resp) {
		t.Fatalf("payloads differ: %d/%d bytes", len(fromClient), len(fromServer))
	}
	// 3 handshake + 3 client segments + ack + 1 server + ack + 3 close
	if n != 12 {
		t.Fatalf("%d packets", n)
	}
}

func TestIPv6AndDeterminism(t *testing.T) {
	mk := func() []Packet {
		return NewConn(netip.MustParseAddrPort("[2001:db8::1]:5000"), netip.MustParseAddrPort("[2001:db8::2]:8080"),
			time.Unix(1, 0)).Handshake().Client([]byte("x")).Packets()
	}
	a, b := mk(), mk()
	for i := range a {
		if !bytes.Equal(a[i].Data, b[i].Data) {
			t.Fatal("not deterministic")
		}
	}
	p := gopacket.NewPacket(a[3].Data, layers.LayerTypeEthernet, gopacket.Default)
	if p.Layer(layers.LayerTypeIPv6) == nil || p.ErrorLayer() != nil {
		t.Fatalf("bad IPv6 frame: %v", p)
	}
}

func TestSYN(t *testing.T) {
	src, dst := netip.MustParseAddrPort("172.16.3.4:5555"), netip.MustParseAddrPort("10.0.0.2:80")
	p := SYN(time.Unix(1700000000, 0), src, dst, 12345)
	pkt := gopacket.NewPacket(p.Data, layers.LayerTypeEthernet, gopacket.Default)
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if ip == nil || tcp == nil || pkt.ErrorLayer() != nil {
		t.Fatalf("not a TCP/IPv4 frame: %v", pkt)
	}
	if !tcp.SYN || tcp.ACK || tcp.RST || tcp.FIN || tcp.Seq != 12345 || len(tcp.Payload) != 0 ||
		ip.SrcIP.String() != "172.16.3.4" || tcp.SrcPort != 5555 || tcp.DstPort != 80 {
		t.Fatalf("frame %v", pkt)
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	// Summed over the header with its checksum, a correct one folds to 0.
	if sum, err := tcp.ComputeChecksum(); err != nil || sum != 0 {
		t.Fatalf("checksum %#x does not verify (%#x, %v)", tcp.Checksum, sum, err)
	}
}
