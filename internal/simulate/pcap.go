package simulate

import (
	"container/heap"
	"io"
	"slices"
	"time"

	"github.com/apiscout/apiscout/internal/pcapgen"
)

// PcapWriter turns exchanges, given in start order, into TCP
// conversations written as pcap: a handshake before a connection's first
// exchange, each message in segments of at most 1448 bytes (1514-byte
// frames) with the receiver's ACK after it, and FIN once the connection
// has been idle for longer than the generator keeps connections alive.
// Packets of concurrent connections are interleaved in time order;
// memory holds only connections in flight.
type PcapWriter struct {
	w     *pcapgen.Writer
	conns map[uint64]*pconn
	q     packetHeap
	seq   int
	// written is the time of the last packet written: nothing may be
	// pushed before it.
	written time.Time
	checked time.Time
}

type pconn struct {
	c    *pcapgen.Conn
	last time.Time
}

// NewPcapWriter writes the pcap header to w.
func NewPcapWriter(w io.Writer) (*PcapWriter, error) {
	pw, err := pcapgen.NewWriter(w)
	if err != nil {
		return nil, err
	}
	return &PcapWriter{w: pw, conns: map[uint64]*pconn{}}, nil
}

// Add appends an exchange's packets.
func (p *PcapWriter) Add(ex *Exchange) error {
	// Close connections idle for longer than the generator keeps them
	// (checked every 100 ms of packet time: the scan costs).
	var idle []uint64
	if ex.Start.Sub(p.checked) > 100*time.Millisecond {
		idle, p.checked = p.idle(ex.Start), ex.Start
	}
	for _, id := range idle {
		c := p.conns[id]
		p.push(c.c.At(c.last.Add(keepAlive)).At(p.written).Close().Take())
		delete(p.conns, id)
	}
	// Everything before this exchange's handshake can be written: later
	// exchanges start no earlier.
	if err := p.flushBefore(ex.Start.Add(-2 * time.Millisecond)); err != nil {
		return err
	}
	pc := p.conns[ex.Conn]
	if pc == nil {
		pc = &pconn{c: pcapgen.NewConn(ex.Client, ex.Server, ex.Start.Add(-time.Millisecond)).Handshake()}
		p.conns[ex.Conn] = pc
	}
	resp := ResponseBytes(ex)
	pc.c.At(ex.Start).Client(RequestBytes(ex)).Wait(ex.Latency)
	if from, n := lossSpan(ex, resp); n > 0 {
		// The capture misses n bytes the client receives and
		// acknowledges: the hole a blind sensor sees.
		pc.c.Server(resp[:from]).Skip(false, n).Server(resp[from+n:])
	} else {
		pc.c.Server(resp)
	}
	pc.last = pc.c.Now()
	p.push(pc.c.Take())
	return nil
}

// idle lists, in id order, connections idle at t for longer than the
// generator keeps a connection alive.
func (p *PcapWriter) idle(t time.Time) []uint64 {
	var ids []uint64
	for id, c := range p.conns {
		if t.Sub(c.last) > keepAlive+time.Second {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (p *PcapWriter) push(pkts []pcapgen.Packet) {
	for _, pk := range pkts {
		p.seq++
		heap.Push(&p.q, qpkt{pk, p.seq})
	}
}

func (p *PcapWriter) flushBefore(t time.Time) error {
	for len(p.q) > 0 && p.q[0].p.Time.Before(t) {
		pk := heap.Pop(&p.q).(qpkt).p
		p.written = pk.Time
		if err := p.w.Write(pk); err != nil {
			return err
		}
	}
	return nil
}

// Close closes every connection and writes what is left.
func (p *PcapWriter) Close() error {
	ids := make([]uint64, 0, len(p.conns))
	for id := range p.conns {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		c := p.conns[id]
		p.push(c.c.At(c.last.Add(time.Second)).At(p.written).Close().Take())
		delete(p.conns, id)
	}
	for len(p.q) > 0 {
		if err := p.w.Write(heap.Pop(&p.q).(qpkt).p); err != nil {
			return err
		}
	}
	return p.w.Flush()
}

type qpkt struct {
	p   pcapgen.Packet
	seq int
}

type packetHeap []qpkt

func (h packetHeap) Len() int { return len(h) }
func (h packetHeap) Less(i, j int) bool {
	if h[i].p.Time.Equal(h[j].p.Time) {
		return h[i].seq < h[j].seq
	}
	return h[i].p.Time.Before(h[j].p.Time)
}
func (h packetHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *packetHeap) Push(x any)   { *h = append(*h, x.(qpkt)) }
func (h *packetHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
