package httpparse

import (
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

type factory struct {
	opts Options
	log  *zap.Logger
	m    *Metrics
	dec  decoders
	// heads and zbufs pool head buffers and compressed-body buffers
	// across connections.
	heads bufPool
	zbufs bufPool
}

// NewFactory returns the stream.Factory that parses HTTP/1.x on every new
// connection. Zero option fields take their defaults; m and log may be nil.
// The factory may be shared by several reassembly goroutines: connections
// share only the metrics and the pooled content decoders.
func NewFactory(opts Options, log *zap.Logger, m *Metrics) stream.Factory {
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = zap.NewNop()
	}
	f := &factory{opts: opts.withDefaults(), log: log, m: m,
		heads: bufPool{initial: 1 << 10, max: 16 << 10},
		zbufs: bufPool{initial: 4 << 10, max: 256 << 10}}
	f.log.Debug("http/1 parser ready",
		zap.Int("body_limit", f.opts.BodyLimit),
		zap.Int64("inspection_depth", f.opts.InspectionDepth),
		zap.Int64("decompress_limit", f.opts.DecompressLimit),
		zap.Duration("response_timeout", f.opts.ResponseTimeout),
		zap.Bool("midstream", f.opts.Midstream))
	return f.newConn
}

func (f *factory) newConn(info stream.ConnInfo, emit stream.Emit) stream.Parser {
	if info.Midstream && !f.opts.Midstream {
		f.m.problem(ReasonMidstreamIgnored)
		return ignored{}
	}
	c := &conn{f: f, info: info, emit: emit}
	c.req.init(c, stream.ClientToServer)
	c.resp.init(c, stream.ServerToClient)
	if info.Midstream {
		c.lossy = true
		c.flags = wire.FlagMidstream
		c.req.st, c.resp.st = stResync, stResync
	}
	return c
}

// ignored is the parser of a connection the sensor chose not to parse.
type ignored struct{}

func (ignored) Data(stream.Dir, []byte, time.Time) {}
func (ignored) Gap(stream.Dir, int, time.Time)     {}
func (ignored) Tick(time.Time)                     {}
func (ignored) Close(string, time.Time)            {}

// pair is one request and its response on their way to a record.
type pair struct {
	tx          wire.Transaction
	reqDone     bool
	respStarted bool
	respDone    bool
	orphan      bool   // response without a request: not in the queue
	upgrade     string // protocol the request asks to switch to; "tunnel" for CONNECT
	head        bool   // HEAD request: the response has no body
	reported    bool   // reported while its response streamed: not again
}

// conn is the parser of one connection: a state machine per direction and
// the queue of requests waiting for their responses, in wire order.
type conn struct {
	f        *factory
	info     stream.ConnInfo
	emit     stream.Emit
	req      half
	resp     half
	queue    []*pair
	next     uint32
	flags    wire.Flags // on every record of the connection (midstream)
	takeover stream.Parser
	closed   bool
	lossy    bool // midstream or a gap: pairing also checks times
}

func (c *conn) half(d stream.Dir) *half {
	if d == stream.ClientToServer {
		return &c.req
	}
	return &c.resp
}

// Data implements stream.Parser.
func (c *conn) Data(d stream.Dir, data []byte, ts time.Time) {
	if c.closed {
		return
	}
	c.half(d).feed(data, ts)
	c.expire(ts)
}

// Gap implements stream.Parser.
func (c *conn) Gap(d stream.Dir, n int, ts time.Time) {
	if c.closed {
		return
	}
	c.lossy = true
	c.half(d).gap(int64(n), ts)
}

// Tick implements stream.Parser.
func (c *conn) Tick(now time.Time) {
	if c.closed {
		return
	}
	if c.takeover != nil {
		c.takeover.Tick(now)
	}
	c.expire(now)
}

// Close implements stream.Parser.
func (c *conn) Close(reason string, ts time.Time) {
	if c.closed {
		return
	}
	if c.req.st == stHold {
		c.req.release()
	}
	c.req.close(ts)
	c.resp.close(ts)
	c.closed = true
	for _, p := range c.queue {
		if !p.respStarted {
			p.tx.Flags |= wire.FlagNoResponse
			c.f.m.problem(ReasonNoResponse)
		}
		c.out(p)
	}
	c.queue = nil
	if c.takeover != nil {
		c.takeover.Close(reason, ts)
	}
}

func (c *conn) newPair(ts time.Time) *pair {
	p := &pair{}
	t := &p.tx
	t.ConnID = c.info.ID
	t.Index = c.next
	c.next++
	t.Client = c.info.Client
	t.Server = c.info.Server
	t.Mirror = c.info.Mirror
	t.Flags = c.flags
	t.RequestStart = ts
	return p
}

// push queues a request that waits for its response. Past MaxPending the
// oldest unanswered one leaves without its response.
func (c *conn) push(p *pair) {
	if len(c.queue) >= c.f.opts.MaxPending {
		for i, q := range c.queue {
			if !q.respStarted && q.reqDone {
				q.tx.Flags |= wire.FlagNoResponse
				c.f.m.problem(ReasonPendingOverflow)
				c.remove(i)
				c.out(q)
				break
			}
		}
	}
	c.queue = append(c.queue, p)
}

func (c *conn) remove(i int) {
	copy(c.queue[i:], c.queue[i+1:])
	c.queue[len(c.queue)-1] = nil
	c.queue = c.queue[:len(c.queue)-1]
}

// answer returns the request a response that started at ts answers: the
// oldest one without a response. On a connection joined midstream or with
// a gap, that request must also have started no later than the response
// (a response cannot precede its request), so a response whose request
// was lost is not paired with a later one. Elsewhere order alone decides,
// so timestamps skewed between the two capture ports of a split tap do
// not break pairing.
func (c *conn) answer(ts time.Time) *pair {
	for _, p := range c.queue {
		if p.respStarted {
			continue
		}
		if c.lossy && p.tx.RequestStart.After(ts) {
			return nil
		}
		return p
	}
	return nil
}

// flush emits the complete pairs at the head of the queue, in order.
func (c *conn) flush() {
	for len(c.queue) > 0 {
		p := c.queue[0]
		if !p.reqDone || !p.respDone {
			return
		}
		c.remove(0)
		c.out(p)
	}
}

func (c *conn) out(p *pair) {
	if p.reported {
		return
	}
	c.f.m.transactions.Inc()
	c.emit(&p.tx)
}

// reportStreaming emits a copy of p, whose response is still arriving, as
// it stands at now: headers, the body kept so far when it is not
// compressed (a compressed one cannot be decoded before its end without
// the decoder's state), and flags saying so. The parser goes on framing
// the response and drops the pair when it ends.
func (c *conn) reportStreaming(p *pair, now time.Time) {
	t := p.tx
	t.Flags |= wire.FlagStreaming | wire.FlagResponseTruncated
	t.RequestHeaders = slices.Clone(t.RequestHeaders)
	t.ResponseHeaders = slices.Clone(t.ResponseHeaders)
	t.Extra = slices.Clone(t.Extra)
	t.ResponseEnd = now
	if h := &c.resp; h.p == p {
		b := &h.body
		t.ResponseBodyWireLen = b.wire
		if !b.coded {
			keep := b.keep[:min(len(b.keep), c.f.opts.BodyLimit)]
			t.ResponseBody, t.ResponseBodyLen = slices.Clone(keep), b.wire
		}
	}
	p.reported = true
	c.f.m.transactions.Inc()
	c.f.m.streaming.Inc()
	c.emit(&t)
}

// expire emits requests whose response did not start within the response
// timeout, and reports responses that have streamed for
// StreamReportAfter, in packet time.
func (c *conn) expire(now time.Time) {
	for _, p := range c.queue {
		if !p.respStarted {
			break
		}
		if !p.reported && !p.respDone && now.Sub(p.tx.ResponseStart) >= c.f.opts.StreamReportAfter {
			c.reportStreaming(p, now)
		}
	}
	for len(c.queue) > 0 {
		p := c.queue[0]
		if p.respStarted || !p.reqDone || now.Sub(p.tx.RequestEnd) < c.f.opts.ResponseTimeout {
			return
		}
		p.tx.Flags |= wire.FlagNoResponse
		c.f.m.problem(ReasonNoResponse)
		c.remove(0)
		c.out(p)
		if c.req.st == stHold && c.req.holdFor == p {
			c.req.release()
		}
	}
}

// switchTo ends HTTP/1 on the connection: p (nil for prior knowledge) is
// the transaction that switched; later bytes of both directions go to the
// parser OnUpgrade supplies.
func (c *conn) switchTo(protocol string, p *pair, ts time.Time) {
	c.f.m.upgrade(protocol)
	var reqHeaders []wire.Header
	up := Upgrade{Protocol: protocol, Conn: c.info, Emit: c.emit, NextIndex: c.next, Time: ts}
	if p != nil {
		up.Method, up.Host, up.Path, up.Query = p.tx.Method, p.tx.Host, p.tx.Path, p.tx.Query
		up.ResponseHeaders = append([]wire.Header(nil), p.tx.ResponseHeaders...)
		p.tx.Flags |= wire.FlagUpgrade
		p.tx.Extra = append(p.tx.Extra, wire.Header{Name: "upgrade", Value: protocol})
		if !p.reqDone {
			p.reqDone = true
			p.tx.RequestEnd = ts
		}
		reqHeaders = append([]wire.Header(nil), p.tx.RequestHeaders...)
	}
	held, heldTS := c.req.hold, c.req.holdTS
	heldGap, heldGapN := c.req.holdGap, c.req.holdGapN
	c.req.enterTunnel()
	c.resp.enterTunnel()
	// Requests pipelined behind the switch cannot be answered in HTTP/1.
	for i := 0; i < len(c.queue); {
		q := c.queue[i]
		if q == p || q.respStarted {
			i++
			continue
		}
		q.tx.Flags |= wire.FlagNoResponse
		c.f.m.problem(ReasonNoResponse)
		c.remove(i)
		c.out(q)
	}
	if c.f.opts.OnUpgrade != nil {
		up.RequestHeaders = reqHeaders
		c.takeover = c.f.opts.OnUpgrade(up)
	}
	if c.takeover == nil {
		c.f.m.problem(ReasonTunnelDropped)
	}
	if p != nil && p.respDone {
		c.flush()
	}
	if len(held) > 0 {
		c.tunnel(stream.ClientToServer, held, heldTS)
	}
	if heldGap && c.takeover != nil {
		c.takeover.Gap(stream.ClientToServer, int(heldGapN), heldTS)
	}
}

func (c *conn) tunnel(d stream.Dir, data []byte, ts time.Time) {
	if c.takeover != nil {
		c.takeover.Data(d, data, ts)
	}
}
