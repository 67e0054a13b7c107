package capture

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/gopacket/gopacket/afpacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
)

// Interface captures from a Linux interface with a TPACKET_V3 ring. With
// Fanout > 1 several Interface values join one fanout group; the kernel
// hashes both directions of a flow to the same member, so each member's
// reassembler sees whole connections.
type Interface struct {
	h     *afpacket.TPacket
	name  string
	drops uint64
	pkts  uint64
}

// InterfaceOptions configure one ring.
type InterfaceOptions struct {
	Name     string
	RingSize int64
	Snaplen  int
	// FanoutGroup joins a fanout group when not zero.
	FanoutGroup uint16
	// BPF is a compiled filter (see CompileBPF); nil: everything.
	BPF []bpf.RawInstruction
}

// OpenInterface opens the ring; it needs CAP_NET_RAW (and CAP_NET_ADMIN
// for promiscuous mode on some drivers).
func OpenInterface(o InterfaceOptions) (*Interface, error) {
	frame := 1 << 16 // TPACKET_V3 frames are hints; blocks hold many
	for frame < o.Snaplen && frame < 1<<18 {
		frame <<= 1
	}
	block := 1 << 20
	if block < frame {
		block = frame
	}
	n := int(o.RingSize / int64(block))
	if n < 2 {
		n = 2
	}
	h, err := afpacket.NewTPacket(
		afpacket.OptInterface(o.Name),
		afpacket.OptFrameSize(frame),
		afpacket.OptBlockSize(block),
		afpacket.OptNumBlocks(n),
		afpacket.OptTPacketVersion(afpacket.TPacketVersion3),
		afpacket.OptPollTimeout(100*time.Millisecond),
		afpacket.OptBlockTimeout(10*time.Millisecond),
	)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("capture on %s: %w (needs root or CAP_NET_RAW)", o.Name, err)
		}
		return nil, fmt.Errorf("capture on %s: %w", o.Name, err)
	}
	if o.BPF != nil {
		if err := h.SetBPF(o.BPF); err != nil {
			h.Close()
			return nil, fmt.Errorf("capture on %s: filter: %w", o.Name, err)
		}
	}
	if o.FanoutGroup != 0 {
		if err := h.SetFanout(afpacket.FanoutHashWithDefrag, o.FanoutGroup); err != nil {
			h.Close()
			return nil, fmt.Errorf("capture on %s: fanout group %d: %w", o.Name, o.FanoutGroup, err)
		}
	}
	if err := h.InitSocketStats(); err != nil {
		h.Close()
		return nil, fmt.Errorf("capture on %s: stats: %w", o.Name, err)
	}
	return &Interface{h: h, name: o.Name}, nil
}

// ErrTimeout is returned by Next when no packet came within the poll
// timeout; the caller uses it to advance time and check for shutdown.
var ErrTimeout = errors.New("capture: poll timeout")

// Next returns the next frame; Data aliases the ring until the next call.
func (i *Interface) Next() (Packet, error) {
	data, ci, err := i.h.ZeroCopyReadPacketData()
	if err != nil {
		if errors.Is(err, afpacket.ErrTimeout) || errors.Is(err, afpacket.ErrPoll) {
			return Packet{}, ErrTimeout
		}
		return Packet{}, err
	}
	return Packet{Data: data, CI: ci, Link: layers.LinkTypeEthernet}, nil
}

// Drops returns the packets the kernel dropped and delivered since the
// ring was opened. The kernel resets its counters on every read;
// gopacket's SocketStats already sums them into running totals.
func (i *Interface) Drops() (drops, packets uint64) {
	_, v3, err := i.h.SocketStats()
	if err == nil {
		i.drops, i.pkts = uint64(v3.Drops()), uint64(v3.Packets())
	}
	return i.drops, i.pkts
}

// Close releases the ring.
func (i *Interface) Close() error {
	i.h.Close()
	return nil
}
