package wire

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// Kafka record header names.
const (
	HeaderSchema      = "apiscout-schema"
	HeaderContentType = "content-type"
)

// ErrMalformed wraps every decoding failure, so callers can route a bad
// record to a dead-letter queue with errors.Is.
var ErrMalformed = errors.New("malformed record")

// AppendTransaction appends the protobuf encoding of t to b. It is written
// by hand on protowire rather than generated: no reflection, no
// intermediate message, and one allocation at most when b has room.
func AppendTransaction(b []byte, t *Transaction) []byte {
	b = appendString(b, 1, t.SensorID)
	b = appendUint(b, 2, t.Seq)
	b = appendUint(b, 3, t.ConnID)
	b = appendUint(b, 4, uint64(t.Index))
	b = appendAddrPort(b, 5, 6, t.Client)
	b = appendAddrPort(b, 7, 8, t.Server)
	if !t.Mirror.Empty() {
		b = protowire.AppendTag(b, 9, protowire.BytesType)
		b = protowire.AppendBytes(b, appendMirror(nil, &t.Mirror))
	}
	b = appendString(b, 10, t.Protocol)
	b = appendTime(b, 11, t.RequestStart)
	b = appendTime(b, 12, t.RequestEnd)
	b = appendTime(b, 13, t.ResponseStart)
	b = appendTime(b, 14, t.ResponseEnd)
	b = appendString(b, 15, t.Method)
	b = appendString(b, 16, t.Host)
	b = appendString(b, 17, t.Path)
	b = appendString(b, 18, t.Query)
	b = appendString(b, 19, t.Version)
	b = appendUint(b, 20, uint64(t.Status))
	b = appendString(b, 21, t.Reason)
	b = appendHeaders(b, 22, t.RequestHeaders)
	b = appendHeaders(b, 23, t.ResponseHeaders)
	b = appendHeaders(b, 24, t.RequestTrailers)
	b = appendHeaders(b, 25, t.ResponseTrailers)
	b = appendBytes(b, 26, t.RequestBody)
	b = appendBytes(b, 27, t.ResponseBody)
	b = appendInt(b, 28, t.RequestBodyWireLen)
	b = appendInt(b, 29, t.RequestBodyLen)
	b = appendInt(b, 30, t.ResponseBodyWireLen)
	b = appendInt(b, 31, t.ResponseBodyLen)
	b = appendString(b, 32, t.RequestContentType)
	b = appendString(b, 33, t.ResponseContentType)
	b = appendUint(b, 34, uint64(t.Flags))
	b = appendUint(b, 35, t.CaptureLoss)
	b = appendHeaders(b, 36, t.Extra)
	return b
}

// DecodeTransaction decodes b into t, which it resets first. Unknown fields
// are skipped. b is copied once and every string and body of t points into
// that private copy (one allocation instead of one per field), so b may be
// reused by the caller; all headers share one slice. A field kept long
// after its record keeps the record's bytes alive: clone it (strings.Clone)
// when keeping it for good matters.
//
// It reads fields in a plain loop, without a callback per field, because
// the analyzer decodes every record of every sensor.
func DecodeTransaction(b []byte, t *Transaction) error {
	if len(b) == 0 {
		*t = Transaction{}
		return nil
	}
	own := make([]byte, len(b))
	copy(own, b)
	return DecodeTransactionAliasing(own, t)
}

// DecodeTransactionAliasing is DecodeTransaction without the copy: the
// strings and bodies of t point into b, which the caller hands over and
// must never change again (a Kafka message's value it owns, say).
func DecodeTransactionAliasing(own []byte, t *Transaction) error {
	*t = Transaction{}
	str := func(raw []byte) string { return unsafe.String(unsafe.SliceData(raw), len(raw)) }

	// All headers share one slice; each list is a run of it. The encoder
	// writes each list's headers together, so runs are whole lists; a
	// writer that interleaves them is still read right (see hdrs.add).
	hs := hdrs{all: make([]Header, 0, len(own)/64+4), cur: -1,
		lists: [5]*[]Header{&t.RequestHeaders, &t.ResponseHeaders, &t.RequestTrailers, &t.ResponseTrailers, &t.Extra}}
	var cip, sip []byte
	var cport, sport uint64
	for rest := own; len(rest) > 0; {
		num, typ, v, raw, n, err := consumeField(rest)
		if err != nil {
			return err
		}
		rest = rest[n:]
		if typ != protowire.VarintType && typ != protowire.BytesType {
			continue // a fixed or group field of a newer schema
		}
		switch num {
		case 1:
			t.SensorID = str(raw)
		case 2:
			t.Seq = v
		case 3:
			t.ConnID = v
		case 4:
			t.Index = uint32(v)
		case 5:
			cip = raw
		case 6:
			cport = v
		case 7:
			sip = raw
		case 8:
			sport = v
		case 9:
			if err := decodeMirror(raw, &t.Mirror); err != nil {
				return err
			}
		case 10:
			t.Protocol = str(raw)
		case 11:
			t.RequestStart = fromNanos(v)
		case 12:
			t.RequestEnd = fromNanos(v)
		case 13:
			t.ResponseStart = fromNanos(v)
		case 14:
			t.ResponseEnd = fromNanos(v)
		case 15:
			t.Method = str(raw)
		case 16:
			t.Host = str(raw)
		case 17:
			t.Path = str(raw)
		case 18:
			t.Query = str(raw)
		case 19:
			t.Version = str(raw)
		case 20:
			t.Status = int(v)
		case 21:
			t.Reason = str(raw)
		case 22, 23, 24, 25, 36:
			if typ != protowire.BytesType {
				continue
			}
			h, err := decodeHeaderFast(raw, str)
			if err != nil {
				return err
			}
			i := int(num) - 22
			if num == 36 {
				i = 4
			}
			hs.add(i, h)
		case 26:
			t.RequestBody = raw
		case 27:
			t.ResponseBody = raw
		case 28:
			t.RequestBodyWireLen = int64(v)
		case 29:
			t.RequestBodyLen = int64(v)
		case 30:
			t.ResponseBodyWireLen = int64(v)
		case 31:
			t.ResponseBodyLen = int64(v)
		case 32:
			t.RequestContentType = str(raw)
		case 33:
			t.ResponseContentType = str(raw)
		case 34:
			t.Flags = Flags(v)
		case 35:
			t.CaptureLoss = v
		}
	}
	hs.close()
	var err error
	if t.Client, err = addrPort(cip, cport); err != nil {
		return fmt.Errorf("%w: client address: %v", ErrMalformed, err)
	}
	if t.Server, err = addrPort(sip, sport); err != nil {
		return fmt.Errorf("%w: server address: %v", ErrMalformed, err)
	}
	return nil
}

// hdrs collects the header lists of a transaction in one slice.
type hdrs struct {
	all   []Header
	lists [5]*[]Header
	cur   int // list of the run being read, -1 before the first
	start int // where that run starts in all
}

func (h *hdrs) add(list int, v Header) {
	if list != h.cur {
		h.close()
		h.cur, h.start = list, len(h.all)
	}
	h.all = append(h.all, v)
}

// close ends the current run: it becomes its list, or is added to it when
// the list had an earlier run (a writer that interleaved the lists).
func (h *hdrs) close() {
	if h.cur < 0 || len(h.all) == h.start {
		return
	}
	run := h.all[h.start:len(h.all):len(h.all)]
	if l := h.lists[h.cur]; *l == nil {
		*l = run
	} else {
		*l = append((*l)[:len(*l):len(*l)], run...)
	}
	h.cur = -1
}

// consumeField reads one field: its number and wire type, the value of a
// varint, the bytes of a length-delimited field (capacity-limited, so an
// append never runs into the next field), and its total length. Fixed and
// group fields are skipped over. One-byte tags, varints and lengths, by far
// the most common, take a short path.
func consumeField(b []byte) (num protowire.Number, typ protowire.Type, v uint64, raw []byte, n int, err error) {
	var tag uint64
	m := 1
	if b[0] < 0x80 {
		tag = uint64(b[0])
	} else if tag, m = protowire.ConsumeVarint(b); m < 0 {
		return 0, 0, 0, nil, 0, fmt.Errorf("%w: tag: %v", ErrMalformed, protowire.ParseError(m))
	}
	num, typ = protowire.Number(tag>>3), protowire.Type(tag&7)
	if num < protowire.MinValidNumber || num > protowire.MaxValidNumber {
		return 0, 0, 0, nil, 0, fmt.Errorf("%w: field number %d", ErrMalformed, num)
	}
	rest := b[m:]
	k := 1
	switch typ {
	case protowire.VarintType:
		if len(rest) > 0 && rest[0] < 0x80 {
			v = uint64(rest[0])
		} else {
			v, k = protowire.ConsumeVarint(rest)
		}
	case protowire.BytesType:
		var l uint64
		if len(rest) > 0 && rest[0] < 0x80 {
			l = uint64(rest[0])
		} else {
			l, k = protowire.ConsumeVarint(rest)
		}
		if k >= 0 {
			if l > uint64(len(rest)-k) {
				return 0, 0, 0, nil, 0, fmt.Errorf("%w: field %d: %d bytes announced, %d left", ErrMalformed, num, l, len(rest)-k)
			}
			end := k + int(l)
			raw = rest[k:end:end]
			k = end
		}
	default:
		k = protowire.ConsumeFieldValue(num, typ, rest)
	}
	if k < 0 {
		return 0, 0, 0, nil, 0, fmt.Errorf("%w: field %d: %v", ErrMalformed, num, protowire.ParseError(k))
	}
	return num, typ, v, raw, m + k, nil
}

// decodeHeaderFast decodes one Header message with strings made by str.
func decodeHeaderFast(b []byte, str func([]byte) string) (Header, error) {
	// The shape this package writes, name then value, each shorter than
	// 128 bytes: read it directly, without the general field loop.
	if len(b) >= 4 && b[0] == 1<<3|byte(protowire.BytesType) && b[1] < 0x80 {
		n := int(b[1])
		if v := 2 + n; v+2 <= len(b) && b[v] == 2<<3|byte(protowire.BytesType) && b[v+1] < 0x80 && v+2+int(b[v+1]) == len(b) {
			return Header{Name: str(b[2 : 2+n]), Value: str(b[v+2:])}, nil
		}
	}
	var h Header
	for len(b) > 0 {
		num, typ, _, raw, n, err := consumeField(b)
		if err != nil {
			return h, err
		}
		b = b[n:]
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case 1:
			h.Name = str(raw)
		case 2:
			h.Value = str(raw)
		}
	}
	return h, nil
}

// AppendHeartbeat appends the protobuf encoding of h to b.
func AppendHeartbeat(b []byte, h *Heartbeat) []byte {
	b = appendString(b, 1, h.SensorID)
	b = appendUint(b, 2, h.Seq)
	b = appendTime(b, 3, h.Time)
	b = appendUint(b, 4, h.Packets)
	b = appendUint(b, 5, h.Bytes)
	b = appendUint(b, 6, h.KernelDrops)
	b = appendUint(b, 7, h.CaptureLossBytes)
	b = appendUint(b, 8, h.AckedBytes)
	b = appendUint(b, 9, h.Transactions)
	names := make([]string, 0, len(h.Dropped))
	for k := range h.Dropped {
		names = append(names, k)
	}
	sort.Strings(names) // deterministic bytes for golden tests
	for _, k := range names {
		var c []byte
		c = appendString(c, 1, k)
		c = appendUint(c, 2, h.Dropped[k])
		b = protowire.AppendTag(b, 10, protowire.BytesType)
		b = protowire.AppendBytes(b, c)
	}
	for i := range h.Mirrors {
		b = protowire.AppendTag(b, 11, protowire.BytesType)
		b = protowire.AppendBytes(b, appendMirror(nil, &h.Mirrors[i]))
	}
	return b
}

// DecodeHeartbeat decodes b into h, which it resets first.
func DecodeHeartbeat(b []byte, h *Heartbeat) error {
	*h = Heartbeat{}
	return walk(b, func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
		switch num {
		case 1:
			h.SensorID = string(raw)
		case 2:
			h.Seq = v
		case 3:
			h.Time = fromNanos(v)
		case 4:
			h.Packets = v
		case 5:
			h.Bytes = v
		case 6:
			h.KernelDrops = v
		case 7:
			h.CaptureLossBytes = v
		case 8:
			h.AckedBytes = v
		case 9:
			h.Transactions = v
		case 10:
			var name string
			var val uint64
			if err := walk(raw, func(n protowire.Number, _ protowire.Type, v uint64, r []byte) error {
				switch n {
				case 1:
					name = string(r)
				case 2:
					val = v
				}
				return nil
			}); err != nil {
				return err
			}
			if h.Dropped == nil {
				h.Dropped = map[string]uint64{}
			}
			h.Dropped[name] += val
		case 11:
			var m Mirror
			if err := decodeMirror(raw, &m); err != nil {
				return err
			}
			h.Mirrors = append(h.Mirrors, m)
		}
		return nil
	})
}

// walk calls fn for every field of a message. Varint and fixed fields pass
// their value in v; length-delimited fields pass their bytes in raw (which
// alias b). A field whose wire type does not match the schema is an error:
// protobuf would reject it too, and guessing hides corruption.
func walk(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: tag: %v", ErrMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		var v uint64
		var raw []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		case protowire.Fixed32Type:
			var v32 uint32
			v32, n = protowire.ConsumeFixed32(b)
			v = uint64(v32)
		case protowire.BytesType:
			raw, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %v", ErrMalformed, num, protowire.ParseError(n))
		}
		b = b[n:]
		if !knownType(num, typ) {
			continue // unknown field or group: skipped, never fatal
		}
		if err := fn(num, typ, v, raw); err != nil {
			return err
		}
	}
	return nil
}

// knownType lets walk skip fields that a newer schema may carry with a wire
// type the current decoder does not expect.
func knownType(num protowire.Number, typ protowire.Type) bool {
	return typ == protowire.VarintType || typ == protowire.BytesType
}

// appendTag and appendVarint write one- and two-byte values (every tag of
// this schema, most lengths) without protowire's general loop.
func appendTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	return appendVarint(b, uint64(num)<<3|uint64(typ))
}

func appendVarint(b []byte, v uint64) []byte {
	switch {
	case v < 1<<7:
		return append(b, byte(v))
	case v < 1<<14:
		return append(b, byte(v)|0x80, byte(v>>7))
	}
	return protowire.AppendVarint(b, v)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = appendTag(b, num, protowire.BytesType)
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = appendTag(b, num, protowire.BytesType)
	b = appendVarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = appendTag(b, num, protowire.VarintType)
	return appendVarint(b, v)
}

func appendInt(b []byte, num protowire.Number, v int64) []byte {
	return appendUint(b, num, uint64(v))
}

func appendTime(b []byte, num protowire.Number, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	return appendUint(b, num, uint64(t.UnixNano()))
}

func fromNanos(v uint64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(v)).UTC()
}

func appendAddrPort(b []byte, ipNum, portNum protowire.Number, ap netip.AddrPort) []byte {
	if !ap.IsValid() {
		return b
	}
	a := ap.Addr()
	if a.Is4() {
		v := a.As4()
		b = appendBytes(b, ipNum, v[:])
	} else {
		v := a.As16()
		b = appendBytes(b, ipNum, v[:])
	}
	return appendUint(b, portNum, uint64(ap.Port()))
}

func addrPort(ip []byte, port uint64) (netip.AddrPort, error) {
	if len(ip) == 0 {
		return netip.AddrPort{}, nil
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address of %d bytes", len(ip))
	}
	if port > 65535 {
		return netip.AddrPort{}, fmt.Errorf("port %d", port)
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}

func appendMirror(b []byte, m *Mirror) []byte {
	b = appendUint(b, 1, uint64(m.VNI))
	for _, v := range m.VLANs {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v))
	}
	b = appendUint(b, 3, uint64(m.ERSPANSession))
	b = appendString(b, 4, m.Source)
	return b
}

func decodeMirror(b []byte, m *Mirror) error {
	return walk(b, func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
		switch num {
		case 1:
			m.VNI = uint32(v)
		case 2:
			if typ == protowire.BytesType { // packed encoding
				for len(raw) > 0 {
					x, n := protowire.ConsumeVarint(raw)
					if n < 0 {
						return fmt.Errorf("%w: vlans: %v", ErrMalformed, protowire.ParseError(n))
					}
					m.VLANs = append(m.VLANs, uint16(x))
					raw = raw[n:]
				}
				return nil
			}
			m.VLANs = append(m.VLANs, uint16(v))
		case 3:
			m.ERSPANSession = uint16(v)
		case 4:
			m.Source = string(raw)
		}
		return nil
	})
}

func appendHeaders(b []byte, num protowire.Number, hs []Header) []byte {
	for i := range hs {
		n, v := len(hs[i].Name), len(hs[i].Value)
		size := 2 + protowire.SizeVarint(uint64(n)) + n + protowire.SizeVarint(uint64(v)) + v
		b = appendTag(b, num, protowire.BytesType)
		b = appendVarint(b, uint64(size))
		b = append(b, 1<<3|byte(protowire.BytesType))
		b = appendVarint(b, uint64(n))
		b = append(b, hs[i].Name...)
		b = append(b, 2<<3|byte(protowire.BytesType))
		b = appendVarint(b, uint64(v))
		b = append(b, hs[i].Value...)
	}
	return b
}
