package capture

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/gopacket/gopacket"
)

// UDP receives mirrored frames encapsulated in VXLAN or GENEVE on an
// ordinary UDP socket: how AWS VPC Traffic Mirroring, Azure virtual
// network TAP and GCP deliver them. No privilege is needed.
type UDP struct {
	conn  net.PacketConn
	encap Encap
	buf   []byte
	name  string
}

// ListenUDP binds addr (":4789" for VXLAN, ":6081" for GENEVE).
func ListenUDP(addr string, encap Encap) (*UDP, error) {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("mirror listener %s: %w", addr, err)
	}
	if uc, ok := c.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(16 << 20) // bursts from a mirror outrun a default buffer
	}
	return &UDP{conn: c, encap: encap, buf: make([]byte, 65536), name: addr}, nil
}

// Addr is the bound address.
func (u *UDP) Addr() net.Addr { return u.conn.LocalAddr() }

// Next waits up to 100 ms for a datagram; packet time is the arrival time,
// the only clock a live mirror has.
func (u *UDP) Next() (Packet, error) {
	_ = u.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	n, _, err := u.conn.ReadFrom(u.buf)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return Packet{}, ErrTimeout
		}
		return Packet{}, err
	}
	ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: n, Length: n}
	return Packet{Data: u.buf[:n], CI: ci, Encap: u.encap}, nil
}

// Close closes the socket.
func (u *UDP) Close() error { return u.conn.Close() }
