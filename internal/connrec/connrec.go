// Package connrec records the bytes a real server reads and writes on its
// connections, in order, so protocol parsers can be tested against real
// peers (Go's HTTP/2, TLS and WebSocket stacks) without packet capture.
package connrec

import (
	"net"
	"sync"
	"time"

	"github.com/apiscout/apiscout/sensor/stream"
)

// Chunk is one read (client to server) or write (server to client).
type Chunk struct {
	Dir  stream.Dir
	Data []byte
}

// Recorder collects the chunks of every connection a Listener accepts.
type Recorder struct {
	mu    sync.Mutex
	conns [][]Chunk
}

// Conns returns a copy of the recorded connections in accept order.
func (r *Recorder) Conns() [][]Chunk {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]Chunk, len(r.conns))
	for i, c := range r.conns {
		out[i] = append([]Chunk(nil), c...)
	}
	return out
}

func (r *Recorder) add(i int, d stream.Dir, b []byte) {
	r.mu.Lock()
	r.conns[i] = append(r.conns[i], Chunk{d, append([]byte(nil), b...)})
	r.mu.Unlock()
}

// Listener wraps a net.Listener so that every accepted conn is recorded.
type Listener struct {
	net.Listener
	Rec *Recorder
}

// Listen opens a loopback listener that records.
func Listen() (*Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &Listener{Listener: ln, Rec: &Recorder{}}, nil
}

// Accept implements net.Listener.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.Rec.mu.Lock()
	l.Rec.conns = append(l.Rec.conns, nil)
	i := len(l.Rec.conns) - 1
	l.Rec.mu.Unlock()
	return &conn{Conn: c, rec: l.Rec, i: i}, nil
}

type conn struct {
	net.Conn
	rec *Recorder
	i   int
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.rec.add(c.i, stream.ClientToServer, b[:n])
	}
	return n, err
}

func (c *conn) Write(b []byte) (int, error) {
	c.rec.add(c.i, stream.ServerToClient, b)
	return c.Conn.Write(b)
}

// Replay feeds recorded chunks to a parser with packet times 1 ms apart
// from start, then closes it.
func Replay(p stream.Parser, chunks []Chunk, start time.Time) time.Time {
	ts := start
	for _, c := range chunks {
		ts = ts.Add(time.Millisecond)
		p.Data(c.Dir, c.Data, ts)
	}
	p.Close("fin", ts)
	return ts
}
