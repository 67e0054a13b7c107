// Package stream is the contract between TCP reassembly and the protocol
// parsers: reassembly delivers each connection's two byte streams in
// order, with gaps and times, to a Parser; parsers emit wire records.
package stream

import (
	"net/netip"
	"time"

	"github.com/apiscout/apiscout/wire"
)

// Dir is the direction of a byte stream within a connection.
type Dir uint8

const (
	// ClientToServer carries requests.
	ClientToServer Dir = iota
	// ServerToClient carries responses.
	ServerToClient
)

func (d Dir) String() string {
	if d == ClientToServer {
		return "client"
	}
	return "server"
}

// ConnInfo describes a connection to its parser.
type ConnInfo struct {
	ID     uint64
	Client netip.AddrPort
	Server netip.AddrPort
	Mirror wire.Mirror
	// Midstream is true when the connection's start (SYN) was not seen,
	// so the parser must look for the next message start.
	Midstream bool
	// Start is the packet time of the first packet seen.
	Start time.Time
}

// Parser consumes both directions of one TCP connection.
//
// Call order, all from one goroutine: Data and Gap in any interleaving of
// the two directions, each direction in stream order; Tick whenever packet
// time advances (for response timeouts); Close exactly once at the end
// (FIN, RST, idle timeout, eviction), after which nothing else is called.
//
// data is only valid during the call: a parser that keeps bytes copies
// them (capture buffers are reused).
type Parser interface {
	// Data delivers in-order bytes of one direction; ts is the packet time
	// of the segment that carried them.
	Data(dir Dir, data []byte, ts time.Time)
	// Gap reports that n bytes of dir were lost before the next Data
	// (n < 0 when the size is unknown).
	Gap(dir Dir, n int, ts time.Time)
	// Tick advances packet time without data.
	Tick(now time.Time)
	// Close ends the connection; reason is a fixed word for metrics:
	// fin, rst, idle, evicted, shutdown.
	Close(reason string, ts time.Time)
}

// Emit receives every record a parser produces. Records are owned by the
// receiver from then on.
type Emit func(*wire.Transaction)

// Factory makes the parser of a new connection.
type Factory func(info ConnInfo, emit Emit) Parser
