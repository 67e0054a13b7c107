// Package http2parse turns a cleartext HTTP/2 connection (prior-knowledge
// h2c, or the frames after an h2c upgrade) into one transaction per stream,
// gRPC calls included. It implements stream.Parser.
//
// HPACK is decoded with golang.org/x/net/http2/hpack, one decoder per
// direction, fed every header block in order so the dynamic tables stay in
// step with the peers'. A sensor that joins mid-connection starts with
// empty tables: a header block that references an entry added before the
// capture began cannot be decoded, and the stream is reported with the
// reason "hpack: entry from before capture" instead of guessed headers.
// Entries added after the join sit at the front of the real table, so every
// block that does decode is decoded correctly. After any decoding error the
// direction's decoder starts afresh for the same reason.
package http2parse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2/hpack"

	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// Preface is what a client sends first on a prior-knowledge connection.
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Frame types (RFC 9113 section 6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9
)

const (
	flagEndStream  = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

// Options bound what one connection may hold.
type Options struct {
	// BodyLimit caps the body bytes kept per message.
	BodyLimit int
	// MaxStreams caps concurrently tracked streams per connection; past
	// it new streams are counted and ignored.
	MaxStreams int
	// MaxFrameSize caps a frame the parser will buffer (RFC maximum 16 MiB;
	// beyond what peers negotiate it is a desync or an attack).
	MaxFrameSize int
	// MaxHeaderBlock caps a header block across CONTINUATION frames.
	MaxHeaderBlock int
	// StreamReportAfter reports a stream whose response is still open this
	// much packet time after it started (gRPC server streaming, SSE over
	// HTTP/2), flagged wire.FlagStreaming, and not again. Zero: only when
	// it ends.
	StreamReportAfter time.Duration
}

// DefaultOptions: 64 KiB bodies, 1000 streams, 1 MiB frames, 256 KiB
// header blocks — at most ~65 MiB per connection in the worst case, far
// less in practice since bodies are only buffered up to BodyLimit.
func DefaultOptions() Options {
	return Options{BodyLimit: 64 << 10, MaxStreams: 1000, MaxFrameSize: 1 << 20, MaxHeaderBlock: 256 << 10,
		StreamReportAfter: time.Minute}
}

// Metrics counts what the parser could not handle, by reason.
type Metrics struct {
	Frames    *prometheus.CounterVec
	Streams   *prometheus.CounterVec
	Errors    *prometheus.CounterVec
	Streaming prometheus.Counter
}

// NewMetrics registers the parser's counters on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_http2_frames_total", Help: "HTTP/2 frames parsed, by type."}, []string{"type"}),
		Streams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_http2_streams_total", Help: "HTTP/2 streams emitted, by protocol (h2, grpc)."}, []string{"protocol"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_http2_errors_total", Help: "HTTP/2 parsing problems, by reason."}, []string{"reason"}),
		Streaming: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apiscout_http2_streaming_reported_total",
			Help: "HTTP/2 streams reported while their response was still open (sensor.stream_report_after); each is one of the streams."}),
	}
	if reg != nil {
		reg.MustRegister(m.Frames, m.Streams, m.Errors, m.Streaming)
	}
	return m
}

// Error reasons (fixed set, used as metric labels and in records).
const (
	ReasonBadPreface     = "bad_preface"
	ReasonFrameTooLarge  = "frame_too_large"
	ReasonHPACKEarlier   = "hpack_entry_from_before_capture"
	ReasonHPACK          = "hpack_error"
	ReasonHeaderTooLarge = "header_block_too_large"
	ReasonTooManyStreams = "too_many_streams"
	ReasonGap            = "gap"
	ReasonProtocol       = "protocol_error"
)

var frameNames = [...]string{"data", "headers", "priority", "rst_stream", "settings",
	"push_promise", "ping", "goaway", "window_update", "continuation"}

// NewFactory returns a stream.Factory for prior-knowledge h2c connections.
func NewFactory(opts Options, m *Metrics) stream.Factory {
	return func(info stream.ConnInfo, emit stream.Emit) stream.Parser {
		return New(info, opts, m, emit, !info.Midstream)
	}
}

// Conn parses one HTTP/2 connection.
type Conn struct {
	info    stream.ConnInfo
	opts    Options
	m       *Metrics
	emit    stream.Emit
	dirs    [2]direction
	streams map[uint32]*h2stream
	index   uint32
	dead    bool // both directions unusable
}

type direction struct {
	buf      []byte
	preface  int // bytes of the client preface still expected
	dec      *hpack.Decoder
	fields   []wire.Header
	block    []byte // header block being assembled across CONTINUATION
	blockSID uint32
	blockEnd bool // END_STREAM seen on the HEADERS that opened the block
	lost     bool // a gap made this direction unparsable
	tableMax uint32
	lastTS   time.Time
}

type h2stream struct {
	id                uint32
	req, resp         msg
	reqDone, respDone bool
	reset             bool
	errReason         string
	grpc              bool
	flags             wire.Flags
	reported          bool // reported while its response streamed: not again
}

type msg struct {
	headers, trailers []wire.Header
	body              []byte
	bodyLen           int64
	start, end        time.Time
	gotHeaders        bool
	grpcMsgs          int
	grpcPending       int // bytes left of the current length-prefixed message
	grpcHdr           []byte
}

// New returns a parser for one connection. expectPreface is true when the
// connection's start was seen (the client must send the preface first).
func New(info stream.ConnInfo, opts Options, m *Metrics, emit stream.Emit, expectPreface bool) *Conn {
	if m == nil {
		m = NewMetrics(nil)
	}
	c := &Conn{info: info, opts: opts, m: m, emit: emit, streams: map[uint32]*h2stream{}}
	for i := range c.dirs {
		c.dirs[i].tableMax = 4096
		c.dirs[i].dec = c.newDecoder(stream.Dir(i))
	}
	if expectPreface {
		c.dirs[stream.ClientToServer].preface = len(Preface)
	}
	return c
}

// NewUpgraded returns a parser for the HTTP/2 frames that follow an h2c
// upgrade (RFC 7540 3.2): the upgrade request itself is stream 1, already
// complete, whose response arrives as HTTP/2 on stream 1. req carries the
// request's pseudo-headers (:method, :path, :authority) and headers.
func NewUpgraded(info stream.ConnInfo, opts Options, m *Metrics, emit stream.Emit, index uint32, req []wire.Header, ts time.Time) *Conn {
	c := New(info, opts, m, emit, true)
	c.index = index
	c.streams[1] = &h2stream{id: 1, reqDone: true,
		req: msg{headers: req, gotHeaders: true, start: ts, end: ts}}
	return c
}

func (c *Conn) newDecoder(d stream.Dir) *hpack.Decoder {
	dir := &c.dirs[d]
	dec := hpack.NewDecoder(dir.tableMax, func(f hpack.HeaderField) {
		dir.fields = append(dir.fields, wire.Header{Name: f.Name, Value: f.Value})
	})
	dec.SetMaxStringLength(c.opts.MaxHeaderBlock)
	// Peers may announce a larger table in SETTINGS; accept up to 64 KiB
	// rather than fail every block after such an announcement.
	dec.SetAllowedMaxDynamicTableSize(64 << 10)
	return dec
}

// Data implements stream.Parser.
func (c *Conn) Data(d stream.Dir, data []byte, ts time.Time) {
	dir := &c.dirs[d]
	if dir.lost || c.dead {
		return
	}
	dir.lastTS = ts
	if dir.preface > 0 {
		off := len(Preface) - dir.preface
		n := min(dir.preface, len(data))
		if string(data[:n]) != Preface[off:off+n] {
			c.m.Errors.WithLabelValues(ReasonBadPreface).Inc()
			dir.lost = true
			return
		}
		dir.preface -= n
		data = data[n:]
	}
	if len(dir.buf) > 0 {
		dir.buf = append(dir.buf, data...)
		data = dir.buf
	}
	for len(data) >= 9 {
		length := int(data[0])<<16 | int(data[1])<<8 | int(data[2])
		if length > c.opts.MaxFrameSize {
			c.m.Errors.WithLabelValues(ReasonFrameTooLarge).Inc()
			dir.lost = true
			dir.buf = nil
			return
		}
		if len(data) < 9+length {
			break
		}
		typ, flags := data[3], data[4]
		sid := binary.BigEndian.Uint32(data[5:9]) & 0x7fffffff
		c.frame(d, typ, flags, sid, data[9:9+length], ts)
		data = data[9+length:]
		if dir.lost {
			return
		}
	}
	// Keep the incomplete frame; copy since data may alias the caller's.
	dir.buf = append(dir.buf[:0], data...)
}

func (c *Conn) frame(d stream.Dir, typ, flags byte, sid uint32, p []byte, ts time.Time) {
	dir := &c.dirs[d]
	if int(typ) < len(frameNames) {
		c.m.Frames.WithLabelValues(frameNames[typ]).Inc()
	} else {
		c.m.Frames.WithLabelValues("unknown").Inc()
		return // unknown frame types are ignored (RFC 9113 5.5)
	}
	if dir.block != nil && typ != frameContinuation {
		// A header block must be continued by CONTINUATION only.
		c.m.Errors.WithLabelValues(ReasonProtocol).Inc()
		dir.block = nil
	}
	switch typ {
	case frameData:
		body, ok := unpad(flags, p)
		if !ok {
			c.m.Errors.WithLabelValues(ReasonProtocol).Inc()
			return
		}
		if s := c.stream(sid, d, false); s != nil {
			c.appendBody(s, d, body, ts)
			if flags&flagEndStream != 0 {
				c.endMessage(s, d, ts)
			}
		}
	case frameHeaders:
		frag, ok := unpad(flags, p)
		if ok && flags&flagPriority != 0 {
			if len(frag) < 5 {
				ok = false
			} else {
				frag = frag[5:]
			}
		}
		if !ok {
			c.m.Errors.WithLabelValues(ReasonProtocol).Inc()
			return
		}
		dir.block = append(dir.block[:0:0], frag...)
		dir.blockSID = sid
		dir.blockEnd = flags&flagEndStream != 0
		if flags&flagEndHeaders != 0 {
			c.headerBlock(d, ts)
		}
	case frameContinuation:
		if dir.block == nil || sid != dir.blockSID {
			c.m.Errors.WithLabelValues(ReasonProtocol).Inc()
			return
		}
		if len(dir.block)+len(p) > c.opts.MaxHeaderBlock {
			c.m.Errors.WithLabelValues(ReasonHeaderTooLarge).Inc()
			dir.block = nil
			c.resetDecoder(d) // the skipped block may have changed the table
			if s := c.stream(sid, d, true); s != nil {
				s.errReason = ReasonHeaderTooLarge
			}
			return
		}
		dir.block = append(dir.block, p...)
		if flags&flagEndHeaders != 0 {
			c.headerBlock(d, ts)
		}
	case framePushPromise:
		// The promised request's headers are in the server's HPACK context:
		// decode them to keep the table in step, then drop them.
		frag, ok := unpad(flags, p)
		if ok && len(frag) >= 4 {
			dir.fields = dir.fields[:0]
			if _, err := dir.dec.Write(frag[4:]); err != nil {
				c.resetDecoder(d)
			}
			dir.fields = dir.fields[:0]
		}
	case frameRSTStream:
		if s := c.streams[sid]; s != nil {
			s.reset = true
			code := uint32(0)
			if len(p) >= 4 {
				code = binary.BigEndian.Uint32(p)
			}
			s.resp.trailers = append(s.resp.trailers, wire.Header{Name: "h2.rst_stream", Value: strconv.FormatUint(uint64(code), 10)})
			c.finish(s, ts)
		}
	case frameSettings:
		if flags&0x1 != 0 { // ACK
			return
		}
		for i := 0; i+6 <= len(p); i += 6 {
			id := binary.BigEndian.Uint16(p[i:])
			val := binary.BigEndian.Uint32(p[i+2:])
			if id == 0x1 { // SETTINGS_HEADER_TABLE_SIZE: bounds the peer's encoder
				other := &c.dirs[1-d]
				other.tableMax = val
			}
		}
	case frameGoAway:
		// Streams above the last id were never processed by the sender.
		if len(p) >= 8 {
			last := binary.BigEndian.Uint32(p) & 0x7fffffff
			for id, s := range c.streams {
				if id > last && (id%2 == 1) == (d == stream.ServerToClient) {
					s.flags |= wire.FlagNoResponse
				}
			}
		}
	case framePriority, framePing, frameWindowUpdate:
		// Flow control is the peers' business; the parser never waits on it.
	}
}

func unpad(flags byte, p []byte) ([]byte, bool) {
	if flags&flagPadded == 0 {
		return p, true
	}
	if len(p) < 1 {
		return nil, false
	}
	pad := int(p[0])
	if pad > len(p)-1 {
		return nil, false
	}
	return p[1 : len(p)-pad], true
}

func (c *Conn) resetDecoder(d stream.Dir) {
	c.dirs[d].dec = c.newDecoder(d)
}

func (c *Conn) headerBlock(d stream.Dir, ts time.Time) {
	dir := &c.dirs[d]
	block, sid, end := dir.block, dir.blockSID, dir.blockEnd
	dir.block = nil
	dir.fields = dir.fields[:0]
	_, err := dir.dec.Write(block)
	if err == nil {
		err = dir.dec.Close()
	}
	s := c.stream(sid, d, true)
	if err != nil {
		reason := ReasonHPACK
		if invalidIndex(err) && c.info.Midstream {
			reason = ReasonHPACKEarlier
		}
		c.m.Errors.WithLabelValues(reason).Inc()
		c.resetDecoder(d)
		if s != nil {
			s.errReason = reason
			s.flags |= wire.FlagUnparsable
			if end {
				c.endMessage(s, d, ts)
			}
		}
		return
	}
	if s == nil {
		return
	}
	m := &s.req
	if d == stream.ServerToClient {
		m = &s.resp
	}
	fields := append([]wire.Header(nil), dir.fields...)
	switch {
	case !m.gotHeaders:
		// A 1xx response is informational: the final headers follow.
		if d == stream.ServerToClient && isInformational(fields) {
			break
		}
		m.headers = fields
		m.gotHeaders = true
		if m.start.IsZero() {
			m.start = ts
		}
		if d == stream.ClientToServer || s.grpc {
			if ct := value(fields, "content-type"); strings.HasPrefix(ct, "application/grpc") {
				s.grpc = true
			}
		}
	default:
		m.trailers = append(m.trailers, fields...)
	}
	m.end = ts
	if end {
		c.endMessage(s, d, ts)
	}
}

// invalidIndex reports whether err is hpack's InvalidIndexError, which its
// DecodingError wraps without an Unwrap method.
func invalidIndex(err error) bool {
	var de hpack.DecodingError
	if errors.As(err, &de) {
		err = de.Err
	}
	var ie hpack.InvalidIndexError
	return errors.As(err, &ie)
}

func isInformational(fs []wire.Header) bool {
	st := value(fs, ":status")
	return len(st) == 3 && st[0] == '1'
}

func value(fs []wire.Header, name string) string {
	for _, f := range fs {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// stream finds or (for client HEADERS) creates a stream.
func (c *Conn) stream(sid uint32, d stream.Dir, create bool) *h2stream {
	if sid == 0 {
		return nil
	}
	if s := c.streams[sid]; s != nil {
		return s
	}
	if !create {
		return nil
	}
	if len(c.streams) >= c.opts.MaxStreams {
		c.m.Errors.WithLabelValues(ReasonTooManyStreams).Inc()
		return nil
	}
	s := &h2stream{id: sid}
	if d == stream.ServerToClient {
		s.flags |= wire.FlagNoRequest
	}
	if c.info.Midstream {
		s.flags |= wire.FlagMidstream
	}
	c.streams[sid] = s
	return s
}

func (c *Conn) appendBody(s *h2stream, d stream.Dir, p []byte, ts time.Time) {
	m := &s.req
	if d == stream.ServerToClient {
		m = &s.resp
	}
	if m.start.IsZero() {
		m.start = ts
	}
	m.end = ts
	m.bodyLen += int64(len(p))
	if room := c.opts.BodyLimit - len(m.body); room > 0 {
		m.body = append(m.body, p[:min(room, len(p))]...)
	} else if len(p) > 0 {
		if d == stream.ClientToServer {
			s.flags |= wire.FlagRequestTruncated
		} else {
			s.flags |= wire.FlagResponseTruncated
		}
	}
	if s.grpc {
		countGRPC(m, p)
	}
}

// countGRPC splits the length-prefixed messages of a gRPC body (1 byte
// compressed flag, 4 bytes length) without buffering them.
func countGRPC(m *msg, p []byte) {
	for len(p) > 0 {
		if m.grpcPending > 0 {
			n := min(m.grpcPending, len(p))
			m.grpcPending -= n
			p = p[n:]
			continue
		}
		need := 5 - len(m.grpcHdr)
		n := min(need, len(p))
		m.grpcHdr = append(m.grpcHdr, p[:n]...)
		p = p[n:]
		if len(m.grpcHdr) == 5 {
			m.grpcMsgs++
			m.grpcPending = int(binary.BigEndian.Uint32(m.grpcHdr[1:]))
			m.grpcHdr = m.grpcHdr[:0]
		}
	}
}

func (c *Conn) endMessage(s *h2stream, d stream.Dir, ts time.Time) {
	if d == stream.ClientToServer {
		s.reqDone = true
		if s.req.end.IsZero() {
			s.req.end = ts
		}
	} else {
		s.respDone = true
		if s.resp.end.IsZero() {
			s.resp.end = ts
		}
	}
	if s.respDone && (s.reqDone || s.flags.Has(wire.FlagNoRequest)) {
		c.finish(s, ts)
	}
}

func (c *Conn) finish(s *h2stream, ts time.Time) {
	delete(c.streams, s.id)
	if s.reported {
		return
	}
	tx := c.record(s)
	c.emit(tx)
}

func (c *Conn) record(s *h2stream) *wire.Transaction {
	tx := &wire.Transaction{
		ConnID: c.info.ID, Index: c.index,
		Client: c.info.Client, Server: c.info.Server, Mirror: c.info.Mirror,
		Protocol: "h2", Version: "HTTP/2",
		RequestStart: s.req.start, RequestEnd: s.req.end,
		ResponseStart: s.resp.start, ResponseEnd: s.resp.end,
		RequestBody: s.req.body, ResponseBody: s.resp.body,
		RequestBodyWireLen: s.req.bodyLen, RequestBodyLen: s.req.bodyLen,
		ResponseBodyWireLen: s.resp.bodyLen, ResponseBodyLen: s.resp.bodyLen,
		Flags: s.flags,
	}
	c.index++
	for _, h := range s.req.headers {
		switch h.Name {
		case ":method":
			tx.Method = h.Value
		case ":path":
			tx.Path, tx.Query, _ = strings.Cut(h.Value, "?")
		case ":authority":
			tx.Host = h.Value
		case "content-type":
			tx.RequestContentType = h.Value
		}
		if !strings.HasPrefix(h.Name, ":") {
			tx.RequestHeaders = append(tx.RequestHeaders, h)
		}
	}
	if tx.Host == "" {
		if h := value(s.req.headers, "host"); h != "" {
			tx.Host = h
		} else {
			tx.Host = hostOf(c.info.Server)
		}
	}
	for _, h := range s.resp.headers {
		switch h.Name {
		case ":status":
			tx.Status, _ = strconv.Atoi(h.Value)
		case "content-type":
			tx.ResponseContentType = h.Value
		}
		if !strings.HasPrefix(h.Name, ":") {
			tx.ResponseHeaders = append(tx.ResponseHeaders, h)
		}
	}
	tx.RequestTrailers = s.req.trailers
	tx.ResponseTrailers = s.resp.trailers
	if !s.resp.gotHeaders {
		tx.Flags |= wire.FlagNoResponse
	}
	if s.req.start.IsZero() {
		tx.RequestStart = s.resp.start
		tx.RequestEnd = s.resp.start
	}
	if s.errReason != "" {
		tx.Extra = append(tx.Extra, wire.Header{Name: "h2.error", Value: s.errReason})
	}
	if s.reset {
		tx.Extra = append(tx.Extra, wire.Header{Name: "h2.reset", Value: "true"})
	}
	if s.grpc {
		tx.Protocol = "grpc"
		svc, method := grpcMethod(tx.Path)
		tx.Extra = append(tx.Extra,
			wire.Header{Name: "grpc.service", Value: svc},
			wire.Header{Name: "grpc.method", Value: method},
			wire.Header{Name: "grpc.request_messages", Value: strconv.Itoa(s.req.grpcMsgs)},
			wire.Header{Name: "grpc.response_messages", Value: strconv.Itoa(s.resp.grpcMsgs)})
		// Trailers-only responses carry grpc-status in the headers.
		st := value(s.resp.trailers, "grpc-status")
		msgText := value(s.resp.trailers, "grpc-message")
		if st == "" {
			st = value(s.resp.headers, "grpc-status")
			msgText = value(s.resp.headers, "grpc-message")
		}
		if st != "" {
			tx.Extra = append(tx.Extra, wire.Header{Name: "grpc.status", Value: st})
		}
		if msgText != "" {
			tx.Extra = append(tx.Extra, wire.Header{Name: "grpc.message", Value: msgText})
		}
	}
	c.m.Streams.WithLabelValues(tx.Protocol).Inc()
	return tx
}

// grpcMethod splits "/pkg.Service/Method".
func grpcMethod(path string) (service, method string) {
	p := strings.TrimPrefix(path, "/")
	service, method, _ = strings.Cut(p, "/")
	return service, method
}

func hostOf(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return ""
	}
	return ap.String()
}

// Gap implements stream.Parser. HTTP/2 frames cannot be resynchronised
// after a loss (no delimiter, HPACK state lost), so the direction stops;
// open streams are emitted with the gap flag.
func (c *Conn) Gap(d stream.Dir, n int, ts time.Time) {
	c.m.Errors.WithLabelValues(ReasonGap).Inc()
	c.dirs[d].lost = true
	c.dirs[d].buf = nil
	for _, s := range c.streams {
		s.flags |= wire.FlagGap
	}
	if c.dirs[0].lost && c.dirs[1].lost {
		c.dead = true
	}
}

// Tick implements stream.Parser. Streams wait for their END_STREAM or the
// connection's end, as long-lived streams (gRPC streaming) are normal;
// one whose response has been open for StreamReportAfter is reported
// then, as it stands, so that it shows before it ends.
func (c *Conn) Tick(now time.Time) {
	after := c.opts.StreamReportAfter
	if after <= 0 {
		return
	}
	var due []uint32
	for id, s := range c.streams {
		if !s.reported && s.resp.gotHeaders && !s.respDone && now.Sub(s.resp.start) >= after {
			due = append(due, id)
		}
	}
	slices.Sort(due) // several at once: in stream order, as replays compare
	for _, id := range due {
		s := c.streams[id]
		tx := c.record(s)
		tx.Flags |= wire.FlagStreaming | wire.FlagResponseTruncated
		tx.ResponseEnd = now
		tx.RequestBody, tx.ResponseBody = slices.Clone(tx.RequestBody), slices.Clone(tx.ResponseBody)
		s.reported = true
		c.m.Streaming.Inc()
		c.emit(tx)
	}
}

// Close implements stream.Parser: every open stream is emitted, flagged
// for what it lacks, in stream-id order.
func (c *Conn) Close(reason string, ts time.Time) {
	ids := make([]uint32, 0, len(c.streams))
	for id := range c.streams {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s := c.streams[id]
		if !s.respDone {
			s.flags |= wire.FlagNoResponse
		}
		c.finish(s, ts)
	}
}

// LooksLikePreface reports whether b starts like the client preface.
func LooksLikePreface(b []byte) bool {
	n := min(len(b), len(Preface))
	return n > 0 && bytes.Equal(b[:n], []byte(Preface[:n]))
}
