//go:build cgo

package capture

import (
	"fmt"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcap"
	"golang.org/x/net/bpf"
)

// CompileBPF compiles a tcpdump-syntax filter with libpcap for Ethernet
// frames of snaplen bytes.
func CompileBPF(expr string, snaplen int) ([]bpf.RawInstruction, error) {
	ins, err := pcap.CompileBPFFilter(layers.LinkTypeEthernet, snaplen, expr)
	if err != nil {
		return nil, fmt.Errorf("sensor.bpf %q: %w", expr, err)
	}
	out := make([]bpf.RawInstruction, len(ins))
	for i, in := range ins {
		out[i] = bpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	return out, nil
}
