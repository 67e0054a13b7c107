package httpparse

import (
	"bytes"
	"time"

	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// state is where a direction's parser stands in the message grammar.
type state uint8

const (
	stStart      state = iota // between messages; empty lines are skipped
	stHead                    // start line and header fields
	stBodyLength              // Content-Length body
	stChunkSize               // chunk-size line
	stChunkData               // chunk data
	stChunkEnd                // CRLF after chunk data
	stTrailer                 // trailer section of a chunked body
	stBodyClose               // body delimited by the end of the connection
	stResync                  // looking for the next plausible message start
	stHold                    // client bytes held until the response says whether the protocol switched
	stTunnel                  // switched protocols: bytes go to the parser that took over
	stPeek                    // first bytes of a response body on a lossy connection
)

// statusPrefix is what a response body starting with another response
// looks like: "HTTP/1.d ddd" (d for a digit).
const statusPrefix = "HTTP/1.d ddd"

const maxChunkLine = 4096

// half parses one direction of a connection.
type half struct {
	c   *conn
	dir stream.Dir
	st  state

	// buf accumulates the current head (or trailer section, or chunk-size
	// line) when it spans segments; lineStart is where its last
	// incomplete line starts and nlines counts its complete lines.
	buf       []byte
	lineStart int
	nlines    int
	tentative bool // head found by resync: a bad start line means resync again

	// resync: rskip is true inside a line that cannot start a message;
	// rbuf collects the first bytes of a line to check them.
	rskip bool
	rn    int
	rbuf  [16]byte
	rts   time.Time

	p         *pair // message in progress
	start     time.Time
	remaining int64
	gapNext   bool // bytes were lost before the next message
	body      body
	bufp      *[]byte // pooled backing of buf, nil between messages
	zbufp     *[]byte // pooled buffer of compressed body bytes

	// peek holds the first bytes of a response body on a lossy
	// connection, to tell a body from the next response (a response to
	// a HEAD whose request was lost has no body, whatever it declares).
	peek     [len(statusPrefix)]byte
	npeek    int
	peekNext state

	hold    []byte // client bytes after an Upgrade/CONNECT request
	holdTS  time.Time
	holdFor *pair
	// holdGap is set when bytes were lost while holding: what follows
	// the loss is dropped until the response decides, then the loss is
	// passed on (to the takeover parser, or to HTTP/1 parsing).
	holdGap  bool
	holdGapN int64
}

func (h *half) init(c *conn, d stream.Dir) {
	h.c, h.dir = c, d
}

func (h *half) opts() *Options { return &h.c.f.opts }

// feed runs the state machine over data. Every branch consumes at least
// one byte or changes to a state that will, so the loop ends.
func (h *half) feed(data []byte, ts time.Time) {
	for len(data) > 0 {
		switch h.st {
		case stTunnel:
			h.c.tunnel(h.dir, data, ts)
			return
		case stHold:
			if len(h.hold)+len(data) > h.opts().UpgradeHoldLimit {
				// The response takes too long to decide: give up on the
				// held bytes and resynchronise on what follows.
				h.c.f.m.problem(ReasonUpgradeHold)
				h.c.f.m.skipped.Add(float64(len(h.hold)))
				h.hold, h.holdFor = nil, nil
				h.st, h.rskip, h.rn = stResync, true, 0
				continue
			}
			if h.holdGap {
				h.c.f.m.skipped.Add(float64(len(data)))
				return
			}
			if len(h.hold) == 0 {
				h.holdTS = ts
			}
			h.hold = append(h.hold, data...)
			return
		case stStart:
			i := 0
			for i < len(data) && (data[i] == '\r' || data[i] == '\n') {
				i++
			}
			data = data[i:]
			if len(data) > 0 {
				h.beginHead(ts, false)
			}
		case stHead, stTrailer:
			if n := h.wholeHead(data, ts); n > 0 {
				data = data[n:]
				continue
			}
			// Take lines until the state changes (a head usually ends
			// within one segment).
			for st := h.st; len(data) > 0 && h.st == st; {
				data = data[h.headData(data, ts):]
			}
		case stBodyLength, stChunkData:
			n := int64(len(data))
			if n > h.remaining {
				n = h.remaining
			}
			h.body.write(data[:n], h.opts())
			h.remaining -= n
			data = data[n:]
			if h.remaining == 0 {
				if h.st == stBodyLength {
					h.endMessage(ts)
				} else {
					h.st = stChunkEnd
				}
			}
		case stChunkSize, stChunkEnd:
			data = data[h.chunkLine(data, ts):]
		case stBodyClose:
			h.body.write(data, h.opts())
			return
		case stPeek:
			data = h.peekData(data, ts)
		case stResync:
			data = data[h.resync(data, ts):]
		}
	}
}

func (h *half) beginHead(ts time.Time, tentative bool) {
	h.st = stHead
	h.buf = h.buf[:0]
	h.lineStart, h.nlines = 0, 0
	h.tentative = tentative
	h.start = ts
}

// headData takes bytes of a head or trailer section up to the end of the
// next line and returns how many it took.
func (h *half) headData(data []byte, ts time.Time) int {
	i := bytes.IndexByte(data, '\n')
	piece := data
	if i >= 0 {
		piece = data[:i+1]
	}
	if len(h.buf)+len(piece) > h.opts().MaxHeaderBytes {
		h.c.f.m.problem(ReasonHeaderTooLarge)
		h.headFailed(ts, wire.FlagUnparsable, i < 0)
		return len(piece)
	}
	h.ensureBuf()
	h.buf = append(h.buf, piece...)
	if i < 0 {
		return len(piece)
	}
	line := h.buf[h.lineStart : len(h.buf)-1]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if len(line) == 0 {
		if h.st == stTrailer {
			h.trailerDone(ts)
		} else {
			h.headDone(ts, false, 0)
		}
		return len(piece)
	}
	h.nlines++
	h.lineStart = len(h.buf)
	if h.st == stHead && h.nlines == 1 {
		h.checkStartLine(line, ts)
	} else if h.nlines > h.opts().MaxHeaders+1 {
		h.c.f.m.problem(ReasonTooManyHeaders)
		h.headFailed(ts, wire.FlagUnparsable, false)
	}
	return len(piece)
}

// wholeHead is the fast path for a head that starts and ends within data
// (the usual case): it is parsed in place, without the line-by-line copy
// into buf. It returns the bytes taken, 0 to leave data to the general
// path (a head split across segments, a bad start line, a limit hit),
// which reaches the same result.
func (h *half) wholeHead(data []byte, ts time.Time) int {
	if h.st != stHead || len(h.buf) != 0 || h.tentative {
		return 0
	}
	o := h.opts()
	off, lines := 0, 0
	for {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 || off+i+1 > o.MaxHeaderBytes {
			return 0
		}
		line := data[off : off+i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			h.parseHead(string(data[:off]), ts, false, 0)
			return off + i + 1
		}
		if lines == 0 {
			if h.dir == stream.ClientToServer {
				if _, kind := parseRequestLine(line); kind != lineOK {
					return 0
				}
			} else if _, ok := parseStatusLine(line); !ok {
				return 0
			}
		}
		if lines++; lines > o.MaxHeaders+1 {
			return 0
		}
		off += i + 1
	}
}

// checkStartLine validates the start line as soon as it is complete, so
// garbage is rejected at its first line instead of at the head limit.
func (h *half) checkStartLine(line []byte, ts time.Time) {
	if h.dir == stream.ClientToServer {
		switch _, kind := parseRequestLine(line); kind {
		case lineOK:
			h.tentative = false
			return
		case lineH2Preface:
			preface := append([]byte(nil), h.buf...)
			h.c.switchTo("h2", nil, ts)
			h.c.tunnel(h.dir, preface, h.start)
			return
		}
	} else if _, ok := parseStatusLine(line); ok {
		h.tentative = false
		return
	}
	if !h.tentative {
		h.c.f.m.problem(ReasonBadStartLine)
		h.badMessage(ts, wire.FlagUnparsable)
	} // else: a resync candidate that was not a message after all
	h.st, h.rskip, h.rn = stResync, false, 0
	h.releaseBuf()
}

// badMessage records a message whose start could not be parsed, so that
// pairing stays aligned: a request becomes a placeholder that its
// response (typically 400) answers; a response completes the request it
// answers.
func (h *half) badMessage(ts time.Time, flags wire.Flags) {
	if h.dir == stream.ClientToServer {
		p := h.c.newPair(h.start)
		p.tx.Flags |= flags | h.takeGap()
		p.reqDone = true
		p.tx.RequestEnd = ts
		h.c.push(p)
		return
	}
	p := h.c.answer(h.start)
	if p == nil {
		return
	}
	p.respStarted, p.respDone = true, true
	p.tx.Flags |= flags | h.takeGap()
	p.tx.ResponseStart, p.tx.ResponseEnd = h.start, ts
	h.c.flush()
}

func (h *half) takeGap() wire.Flags {
	if h.gapNext {
		h.gapNext = false
		return wire.FlagGap
	}
	return 0
}

// headFailed ends a head that cannot be completed (too large, too many
// fields, a gap, the end of the connection): the complete lines parsed so
// far make the message, flagged, and the direction resynchronises.
// midLine says whether the failure left us inside a line.
func (h *half) headFailed(ts time.Time, flags wire.Flags, midLine bool) {
	if h.st == stTrailer {
		h.p.tx.Flags |= flags
		h.endMessage(ts)
	} else if h.tentative {
		// nothing trustworthy was found
	} else if h.nlines == 0 {
		h.badMessage(ts, flags)
	} else {
		h.buf = h.buf[:h.lineStart]
		h.headDone(ts, true, flags)
	}
	if h.st == stTunnel {
		return
	}
	h.st, h.rskip, h.rn = stResync, midLine, 0
	h.releaseBuf()
}

// headDone parses a complete head (the empty line seen, or partial after
// headFailed) and chooses the body framing.
//
// A partial head (partial true) ends its message at once with flags, and
// never switches protocols: its framing is unknown.
func (h *half) headDone(ts time.Time, partial bool, flags wire.Flags) {
	s := string(h.buf[:h.lineStart])
	h.releaseBuf()
	h.parseHead(s, ts, partial, flags)
}

// parseHead parses the head s (complete lines, without the empty line).
func (h *half) parseHead(s string, ts time.Time, partial bool, flags wire.Flags) {
	h.lineStart, h.nlines = 0, 0
	line := s
	if i := indexByteString(s, '\n'); i >= 0 {
		line, s = s[:i], s[i+1:]
	} else {
		s = ""
	}
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	var fr framing
	hs := parseFields(s, h.opts().MaxHeaders, &fr)
	if h.dir == stream.ClientToServer {
		h.requestHead(line, hs, &fr, ts, partial)
	} else {
		h.responseHead(line, hs, &fr, ts, partial)
	}
	if partial && h.p != nil {
		h.p.tx.Flags |= flags
		h.body.reset("", 0, h)
		h.endMessage(ts)
	}
}

func (h *half) noteProblems(fr *framing, t *wire.Transaction) {
	m := h.c.f.m
	if fr.ambiguous {
		t.Flags |= wire.FlagAmbiguousFraming
		m.problem(ReasonAmbiguous)
	}
	if fr.badHeader {
		t.Flags |= wire.FlagUnparsable
		m.problem(ReasonBadHeader)
	}
	if fr.tooMany {
		t.Flags |= wire.FlagUnparsable
		m.problem(ReasonTooManyHeaders)
	}
}

func (h *half) requestHead(line string, hs []wire.Header, fr *framing, ts time.Time, partial bool) {
	p := h.c.newPair(h.start)
	t := &p.tx
	t.Flags |= h.takeGap()
	rl, _ := parseRequestLine(line)
	t.Method = line[:rl.mEnd]
	host, path, query := splitTarget(t.Method, line[rl.tStart:rl.tEnd])
	t.Path, t.Query = path, query
	t.Version = line[rl.vStart:]
	t.Protocol = protocolOf(t.Version)
	switch {
	case host != "":
		t.Host = host
	case fr.host != "":
		t.Host = fr.host
	default:
		t.Host = h.c.info.Server.String()
	}
	t.RequestHeaders = hs
	t.RequestContentType = fr.ctype
	p.head = t.Method == "HEAD"
	if partial {
		// framing unknown: no protocol switch either
	} else if t.Method == "CONNECT" {
		p.upgrade = "tunnel"
	} else if fr.upgrade != "" {
		p.upgrade = upgradeProtocol(fr.upgrade)
	}
	h.noteProblems(fr, t)
	h.p = p
	h.c.push(p)
	if !partial {
		h.frame(fr, false, ts)
	}
}

func protocolOf(version string) string {
	if version == "HTTP/1.0" {
		return "http/1.0"
	}
	return "http/1.1"
}

func (h *half) responseHead(line string, hs []wire.Header, fr *framing, ts time.Time, partial bool) {
	status, _ := parseStatusLine(line)
	c := h.c
	if status < 200 && status != 101 {
		// Interim (100 Continue, 103 Early Hints): not the final
		// response; noted on the request it belongs to.
		if p := c.answer(h.start); p != nil {
			p.tx.Extra = append(p.tx.Extra, wire.Header{Name: "interim", Value: line[9:12]})
			p.tx.Flags |= h.takeGap()
		}
		if !partial {
			h.st = stStart
		}
		return
	}
	p := c.answer(h.start)
	if p == nil {
		p = c.newPair(h.start)
		p.orphan, p.reqDone = true, true
		p.tx.Flags |= wire.FlagNoRequest
		c.f.m.problem(ReasonNoRequest)
	}
	p.respStarted = true
	t := &p.tx
	t.Flags |= h.takeGap()
	t.ResponseStart = h.start
	t.Status = status
	if len(line) > 13 {
		t.Reason = line[13:]
	}
	if t.Version == "" {
		t.Version = line[:8]
		t.Protocol = protocolOf(t.Version)
		t.Host = c.info.Server.String()
	}
	t.ResponseHeaders = hs
	t.ResponseContentType = fr.ctype
	h.noteProblems(fr, t)
	h.p = p
	if partial {
		return
	}
	switch {
	case status == 101 && p.upgrade != "" && p.upgrade != "tunnel":
		h.switchAfter(p, p.upgrade, ts)
		return
	case status == 101:
		h.switchAfter(p, upgradeProtocol(fr.upgrade), ts)
		return
	case p.upgrade == "tunnel" && status < 300:
		h.switchAfter(p, "tunnel", ts)
		return
	}
	if c.req.st == stHold && c.req.holdFor == p {
		// The server refused to switch: the held bytes are HTTP/1.
		c.req.release()
	}
	if p.head || status == 204 || status == 304 {
		h.endMessage(ts)
		return
	}
	h.frame(fr, true, ts)
}

// switchAfter completes a response that switched protocols (it has no
// body) and hands the connection over.
func (h *half) switchAfter(p *pair, protocol string, ts time.Time) {
	if protocol == "" {
		protocol = "other"
	}
	p.respDone = true
	p.tx.ResponseEnd = ts
	h.p = nil
	h.c.switchTo(protocol, p, ts)
	if p.orphan {
		h.c.out(p)
	}
}

// frame chooses how the body ends, by RFC 9112 §6.3, with the policy for
// ambiguous framing written in the package doc.
func (h *half) frame(fr *framing, response bool, ts time.Time) {
	t := &h.p.tx
	m := h.c.f.m
	switch {
	case fr.te && fr.hasCL:
		// Transfer-Encoding overrides Content-Length (§6.3 item 3), but
		// a message carrying both is how requests are smuggled.
		t.Flags |= wire.FlagAmbiguousFraming
		m.problem(ReasonAmbiguous)
	case fr.badCL && fr.te:
		t.Flags |= wire.FlagAmbiguousFraming
		m.problem(ReasonAmbiguous)
	case fr.badCL:
		// An invalid Content-Length leaves the length unknown: the
		// message ends at its head and the direction resynchronises.
		t.Flags |= wire.FlagUnparsable
		m.problem(ReasonBadContentLength)
		h.body.reset("", 0, h)
		h.endMessage(ts)
		h.st, h.rskip, h.rn = stResync, false, 0
		return
	}
	switch {
	case fr.te && fr.chunked:
		h.body.reset(fr.encoding, -1, h)
		h.st = stChunkSize
	case fr.te:
		// chunked is not the final coding: only the end of the
		// connection delimits the body (§6.3 item 4; a server answers
		// such a request with 400 and closes).
		if !response {
			t.Flags |= wire.FlagAmbiguousFraming
			m.problem(ReasonAmbiguous)
		}
		h.body.reset(fr.encoding, -1, h)
		h.st = stBodyClose
	case fr.hasCL && fr.cl > 0:
		h.body.reset(fr.encoding, fr.cl, h)
		h.remaining = fr.cl
		h.st = stBodyLength
	case fr.hasCL || !response:
		h.body.reset("", 0, h)
		h.endMessage(ts)
	default:
		h.body.reset(fr.encoding, -1, h)
		h.st = stBodyClose
	}
	if response && h.c.lossy && h.st != stStart && (h.st != stBodyLength || h.remaining >= int64(len(statusPrefix))) {
		h.peekNext, h.st, h.npeek = h.st, stPeek, 0
	}
}

// peekData collects the first bytes of a response body and returns the
// rest of data. If they are a status line, the response had no body (its
// request, a HEAD, was lost) and the bytes start the next response.
func (h *half) peekData(data []byte, ts time.Time) []byte {
	for len(data) > 0 && h.npeek < len(h.peek) {
		c, want := data[0], statusPrefix[h.npeek]
		if want == 'd' && !isDigit(c) || want != 'd' && c != want {
			h.unpeek(ts)
			return data
		}
		h.peek[h.npeek] = c
		h.npeek++
		data = data[1:]
	}
	if h.npeek == len(h.peek) {
		h.c.f.m.problem(ReasonNoBodyGuessed)
		replay := h.peek
		h.npeek = 0
		h.endMessage(ts)
		h.feed(replay[:], ts)
	}
	return data
}

// unpeek returns to the body state and gives it the peeked bytes.
func (h *half) unpeek(ts time.Time) {
	replay, n := h.peek, h.npeek
	h.st, h.npeek = h.peekNext, 0
	h.feed(replay[:n], ts)
}

// chunkLine takes a chunk-size line or the CRLF after chunk data.
func (h *half) chunkLine(data []byte, ts time.Time) int {
	i := bytes.IndexByte(data, '\n')
	piece := data
	if i >= 0 {
		piece = data[:i+1]
	}
	if len(h.buf)+len(piece) > maxChunkLine {
		h.chunkFailed(ts, ReasonBadChunk, i < 0)
		return len(piece)
	}
	var line []byte
	if len(h.buf) == 0 && i >= 0 {
		line = piece[:i] // whole line in this segment: no copy
	} else {
		h.ensureBuf()
		h.buf = append(h.buf, piece...)
		if i < 0 {
			return len(piece)
		}
		line = h.buf[:len(h.buf)-1]
	}
	defer h.releaseBuf() // line may point into buf until the end
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if h.st == stChunkEnd {
		if len(line) != 0 {
			h.chunkFailed(ts, ReasonBadChunk, false)
			return len(piece)
		}
		h.st = stChunkSize
		return len(piece)
	}
	n, ok := parseChunkSize(line)
	switch {
	case !ok:
		h.chunkFailed(ts, ReasonBadChunk, false)
	case n > h.opts().MaxChunkSize:
		h.chunkFailed(ts, ReasonChunkTooLarge, false)
	case n == 0:
		h.st = stTrailer
		h.lineStart, h.nlines = 0, 0
	default:
		h.remaining = n
		h.st = stChunkData
	}
	return len(piece)
}

// chunkFailed ends a chunked message whose framing broke; midLine says
// whether that left us inside a line.
func (h *half) chunkFailed(ts time.Time, reason string, midLine bool) {
	h.c.f.m.problem(reason)
	h.p.tx.Flags |= wire.FlagUnparsable
	h.endMessage(ts)
	h.st, h.rskip, h.rn = stResync, midLine, 0
	h.releaseBuf()
}

func (h *half) trailerDone(ts time.Time) {
	s := string(h.buf[:h.lineStart])
	h.releaseBuf()
	h.lineStart, h.nlines = 0, 0
	var fr framing
	hs := parseFields(s, h.opts().MaxHeaders, &fr)
	if h.dir == stream.ClientToServer {
		h.p.tx.RequestTrailers = hs
	} else {
		h.p.tx.ResponseTrailers = hs
	}
	if fr.badHeader || fr.tooMany {
		h.p.tx.Flags |= wire.FlagUnparsable
	}
	h.endMessage(ts)
}

// endMessage completes the body of the message in progress and hands
// the pair on when both of its halves are done.
func (h *half) endMessage(ts time.Time) {
	p := h.p
	h.p = nil
	h.st = stStart
	t := &p.tx
	b := &h.body
	out, n, flags := h.finishBody(b)
	t.Flags |= flags
	if h.dir == stream.ClientToServer {
		t.RequestBody, t.RequestBodyLen, t.RequestBodyWireLen = out, n, b.wire
		if b.cut {
			t.Flags |= wire.FlagRequestTruncated
		}
		if n > int64(len(out)) && !b.hole {
			t.Flags |= wire.FlagRequestTruncated
		}
		t.RequestEnd = ts
		p.reqDone = true
		if p.upgrade != "" && !p.respDone {
			h.st = stHold
			h.holdFor = p
		}
		h.c.flush()
	} else {
		t.ResponseBody, t.ResponseBodyLen, t.ResponseBodyWireLen = out, n, b.wire
		if b.cut {
			t.Flags |= wire.FlagResponseTruncated
		}
		if n > int64(len(out)) && !b.hole {
			t.Flags |= wire.FlagResponseTruncated
		}
		t.ResponseEnd = ts
		p.respDone = true
		if p.orphan {
			h.c.out(p)
		} else {
			h.c.flush()
		}
	}
	if b.coded && h.zbufp != nil {
		h.c.f.zbufs.put(h.zbufp, b.keep)
		h.zbufp = nil
	}
	*b = body{}
}

// finishBody returns the kept body, its decoded length and the flags its
// decoding earned.
func (h *half) finishBody(b *body) ([]byte, int64, wire.Flags) {
	if b.hole {
		if !b.coded {
			return b.keep, b.wire, wire.FlagGap
		}
	}
	if !b.coded {
		return b.keep, b.wire, 0
	}
	o := h.opts()
	complete := !b.cut && !b.hole
	out, n, res := h.c.f.dec.decode(b.encoding, b.keep, o.BodyLimit, o.DecompressLimit, complete)
	var flags wire.Flags
	if b.hole {
		flags |= wire.FlagGap
	}
	switch res {
	case decodeLimit:
		h.c.f.m.problem(ReasonDecompressLimit)
		flags |= wire.FlagDecodeError
	case decodeError, decodeUnknown:
		h.c.f.m.problem(ReasonDecodeError)
		flags |= wire.FlagDecodeError
		if res == decodeUnknown || n == 0 {
			// Nothing decoded: keep the wire bytes (up to the body
			// limit) so the record still shows what was sent.
			keep := b.keep
			if len(keep) > o.BodyLimit {
				keep = keep[:o.BodyLimit]
			}
			return append([]byte(nil), keep...), b.wire, flags
		}
	}
	return out, n, flags
}

// resync skips bytes until a line that starts like a message: a request
// method followed by a space, or "HTTP/1.". The candidate is then parsed
// as a head; a start line that does not validate sends us back here.
func (h *half) resync(data []byte, ts time.Time) int {
	i := 0
	skipped := 0
	defer func() { h.c.f.m.skipped.Add(float64(skipped)) }()
	for i < len(data) {
		if h.rskip {
			j := bytes.IndexByte(data[i:], '\n')
			if j < 0 {
				skipped += len(data) - i
				return len(data)
			}
			skipped += j + 1
			i += j + 1
			h.rskip, h.rn = false, 0
			continue
		}
		b := data[i]
		i++
		if h.rn == 0 {
			h.rts = ts
		}
		h.rbuf[h.rn] = b
		h.rn++
		switch h.candidate() {
		case candYes:
			start := h.rts
			h.beginHead(start, true)
			h.ensureBuf()
			h.buf = append(h.buf, h.rbuf[:h.rn]...)
			h.rn = 0
			return i
		case candNo:
			skipped += h.rn
			h.rn = 0
			h.rskip = b != '\n'
		}
	}
	return len(data)
}

type cand uint8

const (
	candMore cand = iota
	candYes
	candNo
)

func (h *half) candidate() cand {
	b := h.rbuf[:h.rn]
	last := b[len(b)-1]
	if h.dir == stream.ServerToClient {
		const prefix = "HTTP/1."
		if last != prefix[len(b)-1] {
			return candNo
		}
		if len(b) == len(prefix) {
			return candYes
		}
		return candMore
	}
	switch {
	case last == ' ':
		// Only registered methods: after a gap the first byte may be
		// the middle of a method ("OST /x" from "POST /x").
		if knownMethod(b[:len(b)-1]) {
			return candYes
		}
		return candNo
	case last >= 'A' && last <= 'Z', last == '-', last == '_':
		if len(b) == len(h.rbuf) {
			return candNo
		}
		return candMore
	}
	return candNo
}

// gap handles n lost bytes (n < 0: unknown) before the next data.
func (h *half) gap(n int64, ts time.Time) {
	m := h.c.f.m
	m.problem(ReasonGap)
	if h.st == stPeek {
		h.unpeek(ts)
	}
	switch h.st {
	case stTunnel:
		if h.c.takeover != nil {
			h.c.takeover.Gap(h.dir, int(n), ts)
		}
		return
	case stStart, stResync:
		h.gapNext = true
	case stHold:
		if !h.holdGap {
			h.holdGap, h.holdGapN = true, n
		}
		return
	case stHead:
		h.gapNext = true
		h.headFailed(ts, 0, true)
	case stTrailer:
		h.p.tx.Flags |= wire.FlagGap
		h.endMessage(ts)
		h.gapNext = true
	case stBodyLength, stChunkData:
		if n >= 0 && n < h.remaining {
			h.body.skip(n)
			h.remaining -= n
			return
		}
		if n >= 0 && n == h.remaining {
			// The gap ends exactly where the body (or chunk) does: the
			// framing is intact.
			h.body.skip(n)
			h.remaining = 0
			if h.st == stBodyLength {
				h.endMessage(ts)
			} else {
				h.st = stChunkEnd
			}
			return
		}
		h.body.skip(h.remaining)
		h.p.tx.Flags |= wire.FlagGap
		h.endMessage(ts)
		h.gapNext = true
	case stChunkSize, stChunkEnd:
		h.p.tx.Flags |= wire.FlagGap
		h.body.hole = true
		h.endMessage(ts)
		h.gapNext = true
	case stBodyClose:
		if n >= 0 {
			h.body.skip(n)
		} else {
			h.body.hole = true
		}
		return
	}
	if h.st == stTunnel {
		return
	}
	// Resume at the next plausible message start; the first byte after a
	// gap is taken as a line start, since segments often begin messages.
	h.st, h.rskip, h.rn = stResync, false, 0
	h.releaseBuf()
}

// release parses the bytes held after an Upgrade request as HTTP/1: the
// server did not switch.
func (h *half) release() {
	held, ts := h.hold, h.holdTS
	lost, n := h.holdGap, h.holdGapN
	h.hold, h.holdFor, h.holdGap = nil, nil, false
	h.st = stStart
	h.feed(held, ts)
	if lost {
		h.gap(n, ts)
	}
}

func (h *half) enterTunnel() {
	h.st = stTunnel
	h.hold, h.holdFor, h.holdGap = nil, nil, false
	h.releaseBuf()
	h.p = nil
}

// ensureBuf takes a head buffer from the pool: a connection holds one
// only while a head or line spans segments, so idle connections cost no
// buffer at all.
func (h *half) ensureBuf() {
	if h.bufp == nil {
		h.bufp = h.c.f.heads.get()
		h.buf = (*h.bufp)[:0]
	}
}

func (h *half) releaseBuf() {
	if h.bufp != nil {
		h.c.f.heads.put(h.bufp, h.buf)
		h.bufp = nil
	}
	h.buf = nil
}

// close ends the direction at the end of the connection.
func (h *half) close(ts time.Time) {
	if h.st == stPeek {
		h.unpeek(ts)
	}
	switch h.st {
	case stBodyClose:
		h.endMessage(ts)
	case stBodyLength, stChunkSize, stChunkData, stChunkEnd, stTrailer:
		h.c.f.m.problem(ReasonIncomplete)
		if h.dir == stream.ClientToServer {
			h.p.tx.Flags |= wire.FlagRequestTruncated
		} else {
			h.p.tx.Flags |= wire.FlagResponseTruncated
		}
		h.endMessage(ts)
	case stHead:
		if h.tentative {
			return
		}
		h.c.f.m.problem(ReasonIncomplete)
		trunc := wire.FlagRequestTruncated
		if h.dir == stream.ServerToClient {
			trunc = wire.FlagResponseTruncated
		}
		h.headFailed(ts, trunc, true)
	}
}

func indexByteString(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// knownMethod reports whether m is a method registered with IANA (RFC
// 9110, WebDAV, and the common extensions); resync trusts only these.
func knownMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PRI",
		"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH",
		"MKACTIVITY", "CHECKOUT", "MERGE", "MKCALENDAR", "ACL", "BIND", "UNBIND", "REBIND",
		"LINK", "UNLINK", "PURGE", "QUERY", "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE":
		return true
	}
	return false
}
