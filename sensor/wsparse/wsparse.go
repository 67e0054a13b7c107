// Package wsparse follows a WebSocket connection after its upgrade: it
// parses frames in both directions (masking, fragmentation, control
// opcodes, permessage-deflate) and emits one summary record per connection
// with message and byte counts each way and a few text message samples, so
// the inventory can list WebSocket endpoints and infer their JSON schemas.
package wsparse

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// Options bound the parser's memory.
type Options struct {
	// MaxMessage caps the bytes of one message kept for decompression and
	// sampling; longer messages are counted, not kept.
	MaxMessage int
	// Samples is how many text messages per direction are kept.
	Samples int
	// SampleBytes caps each sample.
	SampleBytes int
}

// DefaultOptions keep at most 1 MiB per direction in flight and 4 samples
// of 4 KiB each way.
func DefaultOptions() Options { return Options{MaxMessage: 1 << 20, Samples: 4, SampleBytes: 4 << 10} }

// Start describes the upgrade that opened the WebSocket.
type Start struct {
	Conn  stream.ConnInfo
	Index uint32
	Host  string
	Path  string
	Query string
	Time  time.Time
	// Deflate is true when the handshake negotiated permessage-deflate;
	// NoContextTakeover per direction when it said so.
	Deflate                 bool
	ClientNoContextTakeover bool
	ServerNoContextTakeover bool
	RequestHeaders          []wire.Header
}

// Metrics counts frames and problems.
type Metrics struct {
	Frames *prometheus.CounterVec
	Errors *prometheus.CounterVec
}

// NewMetrics registers on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Frames: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_websocket_frames_total",
			Help: "WebSocket frames parsed, by opcode."}, []string{"opcode"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_websocket_errors_total",
			Help: "WebSocket parsing problems, by reason."}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.Frames, m.Errors)
	}
	return m
}

// Conn parses one WebSocket connection.
type Conn struct {
	start Start
	opts  Options
	m     *Metrics
	emit  stream.Emit
	dirs  [2]wsDir
	flags wire.Flags
	last  time.Time
	done  bool
}

type wsDir struct {
	buf        []byte
	msg        []byte
	msgLen     int
	msgOp      byte
	compressed bool
	inMsg      bool
	messages   int
	bytes      int64
	frames     int
	dict       []byte // last 32 KiB of decompressed output (context takeover)
	samples    []string
	lost       bool
	closeCode  int
}

// New returns the parser of the connection's bytes after the 101.
func New(s Start, opts Options, m *Metrics, emit stream.Emit) *Conn {
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Conn{start: s, opts: opts, m: m, emit: emit, last: s.Time}
}

var opNames = map[byte]string{0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}

// Data implements stream.Parser.
func (c *Conn) Data(d stream.Dir, data []byte, ts time.Time) {
	dir := &c.dirs[d]
	c.last = ts
	if dir.lost {
		return
	}
	dir.buf = append(dir.buf, data...)
	b := dir.buf
	for {
		n, ok := c.frame(d, b)
		if !ok {
			break
		}
		b = b[n:]
		if dir.lost {
			b = nil
			break
		}
	}
	dir.buf = append(dir.buf[:0], b...)
}

// frame parses one frame at the start of b; ok is false when incomplete.
func (c *Conn) frame(d stream.Dir, b []byte) (int, bool) {
	dir := &c.dirs[d]
	if len(b) < 2 {
		return 0, false
	}
	fin, rsv1, op := b[0]&0x80 != 0, b[0]&0x40 != 0, b[0]&0x0f
	masked := b[1]&0x80 != 0
	n := uint64(b[1] & 0x7f)
	off := 2
	switch n {
	case 126:
		if len(b) < 4 {
			return 0, false
		}
		n = uint64(binary.BigEndian.Uint16(b[2:]))
		off = 4
	case 127:
		if len(b) < 10 {
			return 0, false
		}
		n = binary.BigEndian.Uint64(b[2:])
		off = 10
	}
	var key [4]byte
	if masked {
		if len(b) < off+4 {
			return 0, false
		}
		copy(key[:], b[off:])
		off += 4
	}
	if n > uint64(c.opts.MaxMessage) && n > 1<<24 {
		// A frame this large is a desync or an attack; stop this direction.
		c.m.Errors.WithLabelValues("frame_too_large").Inc()
		dir.lost = true
		return 0, true
	}
	if uint64(len(b)-off) < n {
		return 0, false
	}
	payload := b[off : off+int(n)]
	if masked {
		unmasked := make([]byte, len(payload))
		for i := range payload {
			unmasked[i] = payload[i] ^ key[i&3]
		}
		payload = unmasked
	}
	name, known := opNames[op]
	if !known {
		c.m.Errors.WithLabelValues("bad_opcode").Inc()
		c.flags |= wire.FlagUnparsable
		dir.lost = true
		return off + int(n), true
	}
	c.m.Frames.WithLabelValues(name).Inc()
	dir.frames++
	switch {
	case op == 8:
		if len(payload) >= 2 {
			dir.closeCode = int(binary.BigEndian.Uint16(payload))
		}
	case op >= 8: // ping, pong
	case op == 0 && !dir.inMsg:
		c.m.Errors.WithLabelValues("orphan_continuation").Inc()
	default:
		if op != 0 {
			dir.inMsg, dir.msgOp, dir.compressed = true, op, rsv1
			dir.msg, dir.msgLen = dir.msg[:0], 0
		}
		dir.msgLen += len(payload)
		if len(dir.msg)+len(payload) <= c.opts.MaxMessage {
			dir.msg = append(dir.msg, payload...)
		}
		if fin {
			c.message(d)
		}
	}
	return off + int(n), true
}

func (c *Conn) message(d stream.Dir) {
	dir := &c.dirs[d]
	dir.inMsg = false
	dir.messages++
	dir.bytes += int64(dir.msgLen)
	complete := len(dir.msg) == dir.msgLen
	text := dir.msg
	if dir.compressed && c.start.Deflate {
		if !complete {
			dir.dict = nil // the window is unknown from here on
			return
		}
		out, err := c.inflate(d, dir.msg)
		if err != nil {
			c.m.Errors.WithLabelValues("inflate").Inc()
			c.flags |= wire.FlagDecodeError
			return
		}
		text = out
	}
	if dir.msgOp == 1 && len(dir.samples) < c.opts.Samples {
		dir.samples = append(dir.samples, string(text[:min(len(text), c.opts.SampleBytes)]))
	}
}

// inflate decompresses one permessage-deflate message (RFC 7692). Every
// message ends on a block boundary, so a fresh reader primed with the
// previous 32 KiB of output as its dictionary is equivalent to a reader
// kept across messages, and cannot be wedged by a lost message.
func (c *Conn) inflate(d stream.Dir, p []byte) ([]byte, error) {
	dir := &c.dirs[d]
	noTakeover := c.start.ClientNoContextTakeover
	if d == stream.ServerToClient {
		noTakeover = c.start.ServerNoContextTakeover
	}
	in := io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff}))
	var r io.ReadCloser
	if noTakeover || dir.dict == nil {
		r = flate.NewReader(in)
	} else {
		r = flate.NewReaderDict(in, dir.dict)
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(c.opts.MaxMessage)+1))
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	if len(out) > c.opts.MaxMessage {
		return nil, io.ErrShortBuffer
	}
	if !noTakeover {
		dir.dict = append(dir.dict, out...)
		if len(dir.dict) > 32<<10 {
			dir.dict = append([]byte(nil), dir.dict[len(dir.dict)-32<<10:]...)
		}
	}
	return out, nil
}

// Gap implements stream.Parser: frames cannot be re-found after a loss.
func (c *Conn) Gap(d stream.Dir, n int, ts time.Time) {
	c.flags |= wire.FlagGap
	c.dirs[d].lost = true
	c.dirs[d].buf = nil
}

// Tick implements stream.Parser.
func (c *Conn) Tick(time.Time) {}

// Close implements stream.Parser and emits the summary.
func (c *Conn) Close(reason string, ts time.Time) {
	if c.done {
		return
	}
	c.done = true
	cl, sv := &c.dirs[stream.ClientToServer], &c.dirs[stream.ServerToClient]
	tx := &wire.Transaction{
		ConnID: c.start.Conn.ID, Index: c.start.Index, Client: c.start.Conn.Client, Server: c.start.Conn.Server,
		Mirror: c.start.Conn.Mirror, Protocol: "websocket", Method: "GET", Host: c.start.Host, Path: c.start.Path,
		Query: c.start.Query, Version: "HTTP/1.1", Status: 101,
		RequestStart: c.start.Time, RequestEnd: ts, ResponseStart: c.start.Time, ResponseEnd: ts,
		RequestHeaders:     c.start.RequestHeaders,
		RequestBodyWireLen: cl.bytes, RequestBodyLen: cl.bytes,
		ResponseBodyWireLen: sv.bytes, ResponseBodyLen: sv.bytes,
		Flags: c.flags,
	}
	// Samples travel as JSON-lines bodies: one text message per line.
	tx.RequestBody = []byte(strings.Join(cl.samples, "\n"))
	tx.ResponseBody = []byte(strings.Join(sv.samples, "\n"))
	if looksJSON(cl.samples) {
		tx.RequestContentType = "application/x-ndjson"
	}
	if looksJSON(sv.samples) {
		tx.ResponseContentType = "application/x-ndjson"
	}
	add := func(k string, v int) {
		tx.Extra = append(tx.Extra, wire.Header{Name: k, Value: strconv.Itoa(v)})
	}
	add("ws.client_messages", cl.messages)
	add("ws.server_messages", sv.messages)
	add("ws.client_frames", cl.frames)
	add("ws.server_frames", sv.frames)
	if code := max(cl.closeCode, sv.closeCode); code != 0 {
		add("ws.close_code", code)
	}
	tx.Extra = append(tx.Extra, wire.Header{Name: "ws.end", Value: reason})
	c.emit(tx)
}

func looksJSON(samples []string) bool {
	if len(samples) == 0 {
		return false
	}
	for _, s := range samples {
		s = strings.TrimSpace(s)
		if s == "" || (s[0] != '{' && s[0] != '[') {
			return false
		}
	}
	return true
}

// StartFromHandshake fills Start from the upgrade request headers and the
// 101 response headers (the negotiated extensions are the server's).
func StartFromHandshake(info stream.ConnInfo, index uint32, host, path, query string, ts time.Time,
	reqHeaders, respHeaders []wire.Header) Start {
	s := Start{Conn: info, Index: index, Host: host, Path: path, Query: query, Time: ts, RequestHeaders: reqHeaders}
	for _, h := range respHeaders {
		if !strings.EqualFold(h.Name, "Sec-WebSocket-Extensions") {
			continue
		}
		for _, ext := range strings.Split(h.Value, ",") {
			parts := strings.Split(ext, ";")
			if strings.TrimSpace(parts[0]) != "permessage-deflate" {
				continue
			}
			s.Deflate = true
			for _, p := range parts[1:] {
				switch strings.TrimSpace(p) {
				case "client_no_context_takeover":
					s.ClientNoContextTakeover = true
				case "server_no_context_takeover":
					s.ServerNoContextTakeover = true
				}
			}
		}
	}
	return s
}
