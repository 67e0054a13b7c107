package redact

import (
	"bytes"
	"strings"
	"unsafe"
)

// textual reports whether a body of this content type is worth scanning:
// masking binary data would only corrupt it.
func textual(body []byte, ctype string) bool {
	if ctype == "" {
		head := body
		if len(head) > 512 {
			head = head[:512]
		}
		return bytes.IndexByte(head, 0) < 0
	}
	ct := strings.ToLower(ctype)
	for _, t := range []string{"json", "xml", "text/", "x-www-form-urlencoded", "javascript", "graphql", "yaml", "csv", "multipart/form-data"} {
		if strings.Contains(ct, t) {
			return true
		}
	}
	return false
}

// masker rewrites a body lazily: nothing is copied until the first match.
type masker struct {
	r    *Redactor
	in   []byte
	out  []byte
	last int // in[last:] is not yet in out
	hits int
	// secret is set when a secret field (a credential) was masked.
	secret bool
	form   bool // application/x-www-form-urlencoded
	// close is the index of the quote closing the JSON string whose
	// content is being scanned (-1: none), so that quote is not taken
	// for the opening of another string.
	close int
}

func (m *masker) replace(from, to int, placeholder func(b []byte) []byte) {
	if m.out == nil {
		m.out = make([]byte, 0, len(m.in)+64)
	}
	m.out = append(m.out, m.in[m.last:from]...)
	m.out = placeholder(m.out)
	m.last = to
	m.hits++
}

// maskBody returns the masked body, or nil when nothing was masked, and
// whether a secret field was among the matches.
func (r *Redactor) maskBody(body []byte, ctype string) ([]byte, bool) {
	if len(body) == 0 || !textual(body, ctype) {
		return nil, false
	}
	m := masker{r: r, in: body, form: strings.Contains(strings.ToLower(ctype), "x-www-form-urlencoded"), close: -1}
	m.scan()
	if m.hits == 0 {
		return nil, false
	}
	m.out = append(m.out, body[m.last:]...)
	return m.out, m.secret
}

// formField masks the value of a secret field of an urlencoded body
// starting at i; it returns where scanning goes on (i: no match).
func (m *masker) formField(i int) int {
	b := m.in
	end := bytes.IndexByte(b[i:], '&')
	if end < 0 {
		end = len(b)
	} else {
		end += i
	}
	eq := bytes.IndexByte(b[i:end], '=')
	if eq <= 0 || i+eq+1 == end || !secretName(unescape(string(b[i:i+eq]))) {
		return i
	}
	vstart := i + eq + 1
	val := unescape(string(b[vstart:end]))
	m.replace(vstart, end, func(o []byte) []byte {
		o = append(o, "[secret:"...)
		o = m.r.appendFP(o, val)
		return append(o, ']')
	})
	m.secret = true
	m.r.count(KindSecretField)
	return end
}

// scan finds cards, SSNs, emails, secret JSON fields and private keys.
func (m *masker) scan() {
	b := m.in
	for i := 0; i < len(b); {
		if !m.form {
			// Most bytes start nothing: skip them in a tight loop.
			for i < len(b) && !starts[b[i]] {
				i++
			}
			if i == len(b) {
				return
			}
		}
		if m.form && (i == 0 || b[i-1] == '&') {
			if n := m.formField(i); n > i {
				i = n
				continue
			}
		}
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			if i > 0 && isAlnum(b[i-1]) {
				i++
				continue
			}
			if n := m.digits(i); n > 0 {
				i += n
				continue
			}
			for i < len(b) && isDigit(b[i]) {
				i++
			}
		case c == '@':
			i = m.email(i)
		case c == '-' && bytes.HasPrefix(b[i:], pemBegin):
			i = m.privateKey(i)
		case c == '"':
			if i == m.close {
				m.close = -1
				i++
				continue
			}
			i = m.jsonString(i)
		default:
			i++
		}
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// starts marks the bytes a match can start at.
var starts = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['@'], t['-'], t['"'] = true, true, true
	return t
}()

func isAlnum(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// digits tries an SSN and a card number at i; it returns the bytes
// replaced (0: no match).
func (m *masker) digits(i int) int {
	b := m.in
	if i+11 <= len(b) && ssnAt(b[i:i+11]) && (i+11 == len(b) || !isAlnum(b[i+11]) && b[i+11] != '-') {
		s := string(b[i : i+11])
		m.replace(i, i+11, func(o []byte) []byte {
			o = append(o, "[ssn:"...)
			o = m.r.appendFP(o, s)
			return append(o, ']')
		})
		m.r.count(KindSSN)
		return 11
	}
	var d [19]byte
	n, end := 0, i
	for j := i; j < len(b); j++ {
		c := b[j]
		if isDigit(c) {
			if n == len(d) {
				return 0 // too long for a card
			}
			d[n] = c
			n++
			end = j + 1
			continue
		}
		if (c == ' ' || c == '-') && j+1 < len(b) && isDigit(b[j+1]) && isDigit(b[j-1]) {
			continue
		}
		break
	}
	if n < 13 || (end < len(b) && isAlnum(b[end])) {
		return 0
	}
	brand := cardBrand(d[:n])
	if brand == "" || !luhn(d[:n]) {
		return 0
	}
	num := string(d[:n])
	quote := bareJSONNumber(b, i, end)
	m.replace(i, end, func(o []byte) []byte {
		if quote {
			o = append(o, '"')
		}
		o = append(o, "[card:"...)
		o = append(o, brand...)
		o = append(o, ':')
		o = append(o, num[n-4:]...)
		o = append(o, ':')
		o = m.r.appendFP(o, num)
		o = append(o, ']')
		if quote {
			o = append(o, '"')
		}
		return o
	})
	m.r.count(KindCard)
	return end - i
}

// bareJSONNumber reports whether b[from:to] sits where a JSON value does,
// unquoted, so its placeholder must be quoted to keep the JSON valid.
func bareJSONNumber(b []byte, from, to int) bool {
	p := from - 1
	for p >= 0 && (b[p] == ' ' || b[p] == '\t' || b[p] == '\n' || b[p] == '\r') {
		p--
	}
	if p >= 0 && b[p] != ':' && b[p] != '[' && b[p] != ',' {
		return false // (p < 0: the number is the whole document)
	}
	q := to
	for q < len(b) && (b[q] == ' ' || b[q] == '\t' || b[q] == '\n' || b[q] == '\r') {
		q++
	}
	return q == len(b) || b[q] == ',' || b[q] == '}' || b[q] == ']'
}

func ssnAt(s []byte) bool {
	for k, c := range s {
		if k == 3 || k == 6 {
			if c != '-' {
				return false
			}
		} else if !isDigit(c) {
			return false
		}
	}
	area, group, serial := string(s[0:3]), string(s[4:6]), string(s[7:11])
	return area != "000" && area != "666" && s[0] != '9' && group != "00" && serial != "0000"
}

func luhn(d []byte) bool {
	sum := 0
	double := false
	for k := len(d) - 1; k >= 0; k-- {
		v := int(d[k] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// cardBrand names the card network of a number by its prefix and length;
// "" when none matches (which keeps timestamps and ids from matching).
func cardBrand(d []byte) string {
	n := len(d)
	p := func(k int) int {
		v := 0
		for i := 0; i < k; i++ {
			v = v*10 + int(d[i]-'0')
		}
		return v
	}
	switch {
	case d[0] == '4' && (n == 13 || n == 16 || n == 19):
		return "visa"
	case n == 16 && (p(2) >= 51 && p(2) <= 55 || p(4) >= 2221 && p(4) <= 2720):
		return "mastercard"
	case n == 15 && (p(2) == 34 || p(2) == 37):
		return "amex"
	case n >= 16 && (p(4) == 6011 || p(2) == 65 || p(3) >= 644 && p(3) <= 649):
		return "discover"
	case n >= 16 && p(4) >= 3528 && p(4) <= 3589:
		return "jcb"
	case n >= 14 && (p(3) >= 300 && p(3) <= 305 || p(2) == 36 || p(2) == 38 || p(2) == 39):
		return "diners"
	case n >= 16 && p(2) == 62:
		return "unionpay"
	}
	return ""
}

func emailLocal(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

func emailDomain(c byte) bool { return isAlnum(c) || c == '.' || c == '-' }

// email masks local@domain around the '@' at i; it returns where to go on.
func (m *masker) email(i int) int {
	b := m.in
	s := i
	for s > m.last && emailLocal(b[s-1]) {
		s--
	}
	e := i + 1
	for e < len(b) && emailDomain(b[e]) {
		e++
	}
	for e > i+1 && (b[e-1] == '.' || b[e-1] == '-') {
		e--
	}
	domain := b[i+1 : e]
	dot := bytes.LastIndexByte(domain, '.')
	if s == i || dot <= 0 || len(domain)-dot-1 < 2 {
		return i + 1
	}
	for _, c := range domain[dot+1:] {
		if isDigit(c) || c == '-' {
			return i + 1
		}
	}
	local := string(b[s:i])
	m.replace(s, e, func(o []byte) []byte {
		o = append(o, "[email:"...)
		o = m.r.appendFP(o, local+"@"+string(domain))
		o = append(o, '@')
		o = append(o, domain...)
		return append(o, ']')
	})
	m.r.count(KindEmail)
	return e
}

// privateKey masks a PEM private key block starting at i.
func (m *masker) privateKey(i int) int {
	b := m.in
	head := b[i:min(len(b), i+64)]
	if !bytes.Contains(head, []byte("PRIVATE KEY-----")) {
		return i + 1
	}
	endMark := bytes.Index(b[i+11:], []byte("-----END "))
	if endMark < 0 {
		// Cut at the body limit: mask to the end, the key is still secret.
		endMark = len(b)
	} else {
		endMark += i + 11
		if k := bytes.Index(b[endMark+9:], []byte("-----")); k >= 0 && k < 64 {
			endMark += 9 + k + 5
		} else {
			endMark = len(b)
		}
	}
	block := string(b[i:endMark])
	m.replace(i, endMark, func(o []byte) []byte {
		o = append(o, "[private_key:"...)
		o = m.r.appendFP(o, block)
		return append(o, ']')
	})
	m.r.count(KindPrivateKey)
	return endMark
}

// jsonString looks at the string literal starting at i: when it is an
// object key naming a secret and its value is a string, the value is
// masked. It returns where scanning goes on (just after the opening
// quote for strings that are not such keys, so their content is scanned).
func (m *masker) jsonString(i int) int {
	b := m.in
	end, in := stringEnd(b, i)
	if end < 0 {
		return i + 1
	}
	// a key is followed by ':'
	j := end + 1
	for j < len(b) && (b[j] == ' ' || b[j] == '\t' || b[j] == '\n' || b[j] == '\r') {
		j++
	}
	if j >= len(b) || b[j] != ':' {
		if in == contentPlain || in == contentDashes && !m.form {
			return end + 1 // a value with nothing a match could start at
		}
		m.close = end
		return i + 1 // a value: its content is scanned
	}
	if !secretNameBytes(b[i+1 : end]) {
		return j + 1 // a key that names no secret: nothing in it to mask
	}
	j++
	for j < len(b) && (b[j] == ' ' || b[j] == '\t' || b[j] == '\n' || b[j] == '\r') {
		j++
	}
	if j >= len(b) || b[j] != '"' {
		return end + 1
	}
	vend, _ := stringEnd(b, j)
	if vend < 0 {
		vend = len(b) // cut at the body limit: mask what is there
	}
	if vend == j+1 {
		return vend + 1 // empty value
	}
	val := string(b[j+1 : vend])
	m.replace(j+1, vend, func(o []byte) []byte {
		o = append(o, "[secret:"...)
		o = m.r.appendFP(o, val)
		return append(o, ']')
	})
	m.secret = true
	m.r.count(KindSecretField)
	return min(vend+1, len(b))
}

// stringEnd returns the index of the quote closing the JSON string that
// opens at i, or -1, and what the string holds. Most of a JSON body is
// inside strings, so this is the redactor's hottest loop: one table read
// per byte.
func stringEnd(b []byte, i int) (int, content) {
	var start, dash, escape bool
	for j := i + 1; j < len(b); j++ {
		switch inString[b[j]] {
		case strPlain:
		case strStart:
			start = true
		case strDash:
			if j+1 < len(b) && b[j+1] == '-' && bytes.HasPrefix(b[j:], pemBegin) {
				start = true
			} else {
				dash = true
			}
		case strEscape:
			escape = true
			j++
		case strQuote:
			switch {
			case start || dash && escape:
				return j, contentMatches
			case dash:
				return j, contentDashes
			}
			return j, contentPlain
		default: // a newline: not a JSON string
			return -1, contentMatches
		}
	}
	return -1, contentMatches
}

// content is what stringEnd found in a string.
type content uint8

const (
	// contentPlain: no byte a match could start at.
	contentPlain content = iota
	// contentDashes: no such byte but dashes that start no private key
	// ("-----BEGIN "), and no escape. Scanning it would find nothing
	// outside form bodies (whose fields start after any '&'): hyphenated
	// slugs and names make this a common kind of JSON value.
	contentDashes
	// contentMatches: a match may start in it.
	contentMatches
)

var pemBegin = []byte("-----BEGIN ")

// What a byte inside a JSON string is to stringEnd.
const (
	strPlain   = iota
	strStart   // a match may start at it (starts), but '-'
	strDash    // '-': a match starts only where a PEM block does
	strEscape  // '\\'
	strQuote   // '"'
	strNewline // '\n'
)

var inString = func() (t [256]uint8) {
	for c := range t {
		if starts[c] {
			t[c] = strStart
		}
	}
	t['-'], t['\\'], t['"'], t['\n'] = strDash, strEscape, strQuote, strNewline
	return t
}()

// secretName reports whether a field name names a secret: without case,
// '-' and '_', it contains password, passwd or secret, or ends in token,
// apikey or privatekey.
func secretName(name string) bool {
	return secretNameBytes(unsafe.Slice(unsafe.StringData(name), len(name)))
}

func secretNameBytes(name []byte) bool {
	if len(name) < 3 || len(name) > 64 {
		return false
	}
	// Most names are no secret's: every name that is holds an 's' (secret,
	// passw) or ends in 'n' or 'y' (token, apikey, privatekey).
	last := len(name) - 1
	for last > 0 && (name[last] == '-' || name[last] == '_') {
		last--
	}
	if e := name[last] | 0x20; e != 'n' && e != 'y' &&
		bytes.IndexByte(name, 's') < 0 && bytes.IndexByte(name, 'S') < 0 {
		return false
	}
	var buf [64]byte
	n := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '-' || c == '_' {
			continue
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	s := buf[:n]
	return bytes.HasSuffix(s, []byte("token")) || bytes.HasSuffix(s, []byte("apikey")) ||
		bytes.HasSuffix(s, []byte("privatekey")) || bytes.Contains(s, []byte("secret")) ||
		bytes.Contains(s, []byte("passw"))
}
