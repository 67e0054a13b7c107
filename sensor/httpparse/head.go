package httpparse

import (
	"strings"

	"github.com/apiscout/apiscout/wire"
)

// lineKind says what a start line is.
type lineKind uint8

const (
	lineBad lineKind = iota
	lineOK
	lineH2Preface // "PRI * HTTP/2.0": HTTP/2 with prior knowledge
)

// requestLine holds offsets into a request line: method, target, version.
type requestLine struct{ mEnd, tStart, tEnd, vStart int }

// parseRequestLine checks "METHOD SP target SP HTTP/1.d" strictly: one
// space each, a token method, a target without spaces or controls. A
// strict start line is what lets resynchronisation trust a match.
func parseRequestLine[T string | []byte](line T) (requestLine, lineKind) {
	var rl requestLine
	i := 0
	for i < len(line) && isTchar(line[i]) {
		i++
	}
	if i == 0 || i >= len(line) || line[i] != ' ' {
		return rl, lineBad
	}
	rl.mEnd = i
	rl.tStart = i + 1
	j := rl.tStart
	for j < len(line) && line[j] > ' ' && line[j] != 0x7f {
		j++
	}
	if j == rl.tStart || j >= len(line) || line[j] != ' ' {
		return rl, lineBad
	}
	rl.tEnd = j
	rl.vStart = j + 1
	v := line[rl.vStart:]
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' || !isDigit(v[5]) || !isDigit(v[7]) {
		return rl, lineBad
	}
	if v[5] == '1' {
		return rl, lineOK
	}
	if string(v) == "HTTP/2.0" && string(line[:rl.mEnd]) == "PRI" && string(line[rl.tStart:rl.tEnd]) == "*" {
		return rl, lineH2Preface
	}
	return rl, lineBad
}

// parseStatusLine checks "HTTP/1.d SP ddd [SP reason]" and returns the
// status code.
func parseStatusLine[T string | []byte](line T) (status int, ok bool) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || !isDigit(line[7]) || line[8] != ' ' {
		return 0, false
	}
	if !isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) {
		return 0, false
	}
	if len(line) > 12 && line[12] != ' ' {
		return 0, false
	}
	status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	return status, status >= 100
}

// framing is what the header fields say about the message body and the
// connection.
type framing struct {
	hasCL     bool
	cl        int64
	badCL     bool
	te        bool // Transfer-Encoding present
	chunked   bool // chunked is the final transfer coding
	ambiguous bool // CL+TE, conflicting CLs, obs-fold, space before colon, two Hosts, chunked not final
	badHeader bool
	tooMany   bool
	host      string
	hosts     int
	encoding  string
	ctype     string
	upgrade   string
}

// parseFields parses the header (or trailer) lines of s, which holds
// complete lines separated by "\n" (optionally "\r\n"). Names and values
// are substrings of s, so the whole section costs one allocation for the
// string and one for the slice.
func parseFields(s string, maxFields int, fr *framing) []wire.Header {
	n := strings.Count(s, "\n")
	if n > maxFields {
		n = maxFields
		fr.tooMany = true
	}
	if n == 0 {
		return nil
	}
	hs := make([]wire.Header, 0, n)
	for len(s) > 0 {
		var line string
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			line, s = s, ""
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold: RFC 9112 §5.2 lets a recipient replace it with a
			// space; proxies disagree on it, so it is flagged.
			fr.ambiguous = true
			if len(hs) > 0 {
				last := &hs[len(hs)-1]
				last.Value = last.Value + " " + trimOWS(line)
				fr.note(last.Name, last.Value, true)
			}
			continue
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			fr.badHeader = true
			continue
		}
		name := line[:colon]
		if c := name[len(name)-1]; c == ' ' || c == '\t' {
			// "Name : value" is rejected by RFC 9112 §5.1 and read as the
			// name by some servers: a smuggling vector.
			fr.ambiguous = true
			name = strings.TrimRight(name, " \t")
		}
		if !isToken(name) {
			fr.badHeader = true
			continue
		}
		if len(hs) == maxFields {
			fr.tooMany = true
			break
		}
		value := trimOWS(line[colon+1:])
		hs = append(hs, wire.Header{Name: name, Value: value})
		fr.note(name, value, false)
	}
	return hs
}

// note records what a header field means for framing. folded is true when
// value replaces an earlier value of the same field.
func (fr *framing) note(name, value string, folded bool) {
	if len(name) < 4 || len(name) > 17 {
		return
	}
	switch {
	case equalFold(name, "content-length"):
		fr.noteCL(value, folded)
	case equalFold(name, "transfer-encoding"):
		fr.noteTE(value)
	case equalFold(name, "content-encoding"):
		if fr.encoding != "" && !folded {
			fr.encoding = fr.encoding + ", " + value
		} else {
			fr.encoding = value
		}
	case equalFold(name, "content-type"):
		if fr.ctype == "" || folded {
			fr.ctype = value
		}
	case equalFold(name, "host"):
		if folded {
			fr.host = value
			return
		}
		fr.hosts++
		if fr.hosts == 1 {
			fr.host = value
		} else if !equalFold(fr.host, value) {
			fr.ambiguous = true
		}
	case equalFold(name, "upgrade"):
		fr.upgrade = value
	}
}

func (fr *framing) noteCL(value string, folded bool) {
	if folded {
		fr.badCL = true
		return
	}
	// A list of identical values is allowed (RFC 9110 §8.6); anything else
	// is either invalid or a conflict.
	for len(value) > 0 {
		var v string
		if i := strings.IndexByte(value, ','); i >= 0 {
			v, value = trimOWS(value[:i]), value[i+1:]
		} else {
			v, value = trimOWS(value), ""
		}
		n, ok := parseDecimal(v)
		if !ok {
			fr.badCL = true
			return
		}
		if !fr.hasCL {
			fr.hasCL, fr.cl = true, n
		} else if n != fr.cl {
			fr.ambiguous = true
		}
	}
}

func (fr *framing) noteTE(value string) {
	fr.te = true
	for len(value) > 0 {
		var v string
		if i := strings.IndexByte(value, ','); i >= 0 {
			v, value = trimOWS(value[:i]), value[i+1:]
		} else {
			v, value = trimOWS(value), ""
		}
		if v == "" {
			continue
		}
		if fr.chunked {
			// chunked must be the final coding, applied once.
			fr.ambiguous = true
		}
		fr.chunked = equalFold(v, "chunked")
	}
}

// parseDecimal parses a Content-Length: digits only, at most 18 of them so
// it cannot overflow.
func parseDecimal(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// parseChunkSize parses "hex[;ext]" with optional whitespace. It refuses
// more than 15 hex digits, so the value fits easily in an int64.
func parseChunkSize(line []byte) (int64, bool) {
	var n int64
	i := 0
	for i < len(line) {
		c := line[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			goto rest
		}
		if i == 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
		i++
	}
rest:
	if i == 0 {
		return 0, false
	}
	for ; i < len(line); i++ {
		switch line[i] {
		case ' ', '\t':
		case ';':
			return n, true
		default:
			return 0, false
		}
	}
	return n, true
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// tchar from RFC 9110 §5.6.2.
var tchar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isTchar(c byte) bool { return tchar[c] }

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return true
}

// equalFold is an ASCII-only strings.EqualFold for header names and tokens.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if ca >= 'A' && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if cb >= 'A' && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

// splitTarget splits a request target into host (absolute- and
// authority-form only), path and raw query, all substrings of target.
func splitTarget(method, target string) (host, path, query string) {
	if method == "CONNECT" {
		return target, target, ""
	}
	if target == "*" {
		return "", target, ""
	}
	if target != "" && target[0] != '/' {
		// absolute-form: scheme "://" authority path-abempty [ "?" query ]
		if i := strings.Index(target, "://"); i > 0 {
			rest := target[i+3:]
			end := strings.IndexAny(rest, "/?")
			if end < 0 {
				return rest, "/", ""
			}
			host, target = rest[:end], rest[end:]
			if target[0] == '?' {
				return host, "/", target[1:]
			}
		}
	}
	if i := strings.IndexByte(target, '?'); i >= 0 {
		return host, target[:i], target[i+1:]
	}
	return host, target, ""
}

// upgradeProtocol names the protocol an Upgrade header asks for: its first
// token, lower-cased, without version.
func upgradeProtocol(v string) string {
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	v = trimOWS(v)
	if i := strings.IndexByte(v, '/'); i >= 0 {
		v = v[:i]
	}
	switch {
	case equalFold(v, "websocket"):
		return "websocket"
	case equalFold(v, "h2c"):
		return "h2c"
	}
	return strings.ToLower(v)
}
