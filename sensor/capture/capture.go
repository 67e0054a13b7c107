// Package capture reads frames from where mirrored traffic arrives:
// capture files (pcap, pcapng, gzip-compressed, several merged in time
// order), a Linux interface through AF_PACKET (TPACKET_V3 ring, fanout
// group), or a UDP socket receiving VXLAN or GENEVE from a cloud mirror.
package capture

import (
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Encap says how a frame reached a UDP listener; the decoder starts there.
type Encap uint8

const (
	// EncapNone: Data is a frame of LinkType.
	EncapNone Encap = iota
	// EncapVXLAN: Data is a VXLAN header and its Ethernet frame.
	EncapVXLAN
	// EncapGeneve: Data is a GENEVE header and its payload.
	EncapGeneve
)

// Packet is one captured frame. Data may alias a reused buffer: it is
// valid until the next call to Next.
type Packet struct {
	Data  []byte
	CI    gopacket.CaptureInfo
	Link  layers.LinkType
	Encap Encap
}

// Source yields packets. Next returns io.EOF at the end of finite input.
type Source interface {
	Next() (Packet, error)
	Close() error
}
