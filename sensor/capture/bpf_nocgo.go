//go:build !cgo

package capture

import (
	"errors"

	"golang.org/x/net/bpf"
)

// CompileBPF needs libpcap's compiler, which a build without cgo lacks.
func CompileBPF(expr string, snaplen int) ([]bpf.RawInstruction, error) {
	return nil, errors.New("sensor.bpf needs a build with cgo and libpcap (make build does that)")
}
