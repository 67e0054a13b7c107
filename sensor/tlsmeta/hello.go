// Package tlsmeta reads the metadata of a TLS connection without
// decrypting it: SNI, ALPN, version, cipher suite, the server certificate
// (visible up to TLS 1.2), and the JA3 and JA4 client fingerprints. It
// implements stream.Parser and emits one record per connection, so that
// encrypted services appear in the inventory by name with their clients.
package tlsmeta

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ClientHello holds what the fingerprints and the inventory need.
type ClientHello struct {
	LegacyVersion     uint16
	Random            []byte
	Ciphers           []uint16
	Extensions        []uint16 // in wire order, GREASE included
	SNI               string
	ALPN              []string
	SupportedVersions []uint16
	Groups            []uint16
	PointFormats      []uint8
	SignatureAlgs     []uint16
}

// ServerHello holds the server's choices.
type ServerHello struct {
	LegacyVersion   uint16
	Random          []byte
	Cipher          uint16
	SelectedVersion uint16 // from supported_versions (TLS 1.3); 0 if absent
	ALPN            string
}

// Version is the negotiated protocol version.
func (s *ServerHello) Version() uint16 {
	if s.SelectedVersion != 0 {
		return s.SelectedVersion
	}
	return s.LegacyVersion
}

var errShort = errors.New("truncated handshake message")

// reader is a bounds-checked cursor; every read past the end sets err.
type reader struct {
	b   []byte
	err error
}

func (r *reader) u8() uint8 {
	if len(r.b) < 1 {
		r.err = errShort
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() uint16 {
	if len(r.b) < 2 {
		r.err = errShort
		r.b = nil
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.err = errShort
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) vec8() []byte  { return r.bytes(int(r.u8())) }
func (r *reader) vec16() []byte { return r.bytes(int(r.u16())) }

// ParseClientHello parses the body of a ClientHello handshake message
// (after the 4-byte handshake header).
func ParseClientHello(b []byte) (*ClientHello, error) {
	r := &reader{b: b}
	ch := &ClientHello{LegacyVersion: r.u16()}
	ch.Random = append([]byte(nil), r.bytes(32)...)
	r.vec8() // session id
	cs := &reader{b: r.vec16()}
	for len(cs.b) >= 2 {
		ch.Ciphers = append(ch.Ciphers, cs.u16())
	}
	r.vec8() // compression methods
	if r.err != nil {
		return nil, fmt.Errorf("client hello: %w", r.err)
	}
	if len(r.b) == 0 {
		return ch, nil // no extensions (SSLv3-era clients)
	}
	exts := &reader{b: r.vec16()}
	for len(exts.b) >= 4 && exts.err == nil {
		typ := exts.u16()
		data := &reader{b: exts.vec16()}
		ch.Extensions = append(ch.Extensions, typ)
		switch typ {
		case 0: // server_name
			list := &reader{b: data.vec16()}
			for len(list.b) > 0 && list.err == nil {
				kind := list.u8()
				name := list.vec16()
				if kind == 0 && ch.SNI == "" {
					ch.SNI = string(name)
				}
			}
		case 16: // ALPN
			list := &reader{b: data.vec16()}
			for len(list.b) > 0 && list.err == nil {
				ch.ALPN = append(ch.ALPN, string(list.vec8()))
			}
		case 43: // supported_versions
			list := &reader{b: data.vec8()}
			for len(list.b) >= 2 {
				ch.SupportedVersions = append(ch.SupportedVersions, list.u16())
			}
		case 10: // supported_groups
			list := &reader{b: data.vec16()}
			for len(list.b) >= 2 {
				ch.Groups = append(ch.Groups, list.u16())
			}
		case 11: // ec_point_formats
			ch.PointFormats = append(ch.PointFormats, data.vec8()...)
		case 13: // signature_algorithms
			list := &reader{b: data.vec16()}
			for len(list.b) >= 2 {
				ch.SignatureAlgs = append(ch.SignatureAlgs, list.u16())
			}
		}
	}
	if exts.err != nil {
		return ch, fmt.Errorf("client hello extensions: %w", exts.err)
	}
	return ch, nil
}

// ParseServerHello parses the body of a ServerHello.
func ParseServerHello(b []byte) (*ServerHello, error) {
	r := &reader{b: b}
	sh := &ServerHello{LegacyVersion: r.u16()}
	sh.Random = append([]byte(nil), r.bytes(32)...)
	r.vec8()
	sh.Cipher = r.u16()
	r.u8() // compression
	if r.err != nil {
		return nil, fmt.Errorf("server hello: %w", r.err)
	}
	if len(r.b) == 0 {
		return sh, nil
	}
	exts := &reader{b: r.vec16()}
	for len(exts.b) >= 4 && exts.err == nil {
		typ := exts.u16()
		data := &reader{b: exts.vec16()}
		switch typ {
		case 43:
			sh.SelectedVersion = data.u16()
		case 16:
			list := &reader{b: data.vec16()}
			sh.ALPN = string(list.vec8())
		}
	}
	return sh, nil
}

// isGREASE reports the reserved values clients send to keep servers
// tolerant (RFC 8701); fingerprints leave them out.
func isGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// JA3 returns the JA3 string and its MD5 hash.
func (ch *ClientHello) JA3() (string, string) {
	var sb strings.Builder
	sb.WriteString(strconv.Itoa(int(ch.LegacyVersion)))
	sb.WriteByte(',')
	join16(&sb, ch.Ciphers, "-")
	sb.WriteByte(',')
	join16(&sb, ch.Extensions, "-")
	sb.WriteByte(',')
	join16(&sb, ch.Groups, "-")
	sb.WriteByte(',')
	for i, p := range ch.PointFormats {
		if i > 0 {
			sb.WriteByte('-')
		}
		sb.WriteString(strconv.Itoa(int(p)))
	}
	s := sb.String()
	sum := md5.Sum([]byte(s))
	return s, hex.EncodeToString(sum[:])
}

func join16(sb *strings.Builder, vs []uint16, sep string) {
	first := true
	for _, v := range vs {
		if isGREASE(v) {
			continue
		}
		if !first {
			sb.WriteString(sep)
		}
		first = false
		sb.WriteString(strconv.Itoa(int(v)))
	}
}

// JA4 returns the JA4 fingerprint (TCP: "t" prefix) as specified by
// FoxIO: version, SNI presence, counts, ALPN, then truncated SHA-256 of the
// sorted ciphers and of the sorted extensions with the signature
// algorithms.
func (ch *ClientHello) JA4() string {
	ver := ch.LegacyVersion
	for _, v := range ch.SupportedVersions {
		if !isGREASE(v) && v > ver {
			ver = v
		}
	}
	vs := map[uint16]string{0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}[ver]
	if vs == "" {
		vs = "00"
	}
	sni := "i"
	if ch.SNI != "" {
		sni = "d"
	}
	var ciphers, exts []string
	for _, c := range ch.Ciphers {
		if !isGREASE(c) {
			ciphers = append(ciphers, fmt.Sprintf("%04x", c))
		}
	}
	nExt := 0
	for _, e := range ch.Extensions {
		if isGREASE(e) {
			continue
		}
		nExt++
		if e != 0 && e != 16 {
			exts = append(exts, fmt.Sprintf("%04x", e))
		}
	}
	alpn := "00"
	if len(ch.ALPN) > 0 && ch.ALPN[0] != "" {
		a := ch.ALPN[0]
		alpn = alpnChars(a[0], a[len(a)-1])
	}
	sort.Strings(ciphers)
	sort.Strings(exts)
	extPart := strings.Join(exts, ",")
	var sigs []string
	for _, s := range ch.SignatureAlgs {
		if !isGREASE(s) {
			sigs = append(sigs, fmt.Sprintf("%04x", s))
		}
	}
	if len(sigs) > 0 {
		extPart += "_" + strings.Join(sigs, ",")
	}
	return fmt.Sprintf("t%s%s%02d%02d%s_%s_%s", vs, sni, min(len(ciphers), 99), min(nExt, 99), alpn,
		hash12(strings.Join(ciphers, ",")), hash12(extPart))
}

func alpnChars(first, last byte) string {
	isAlnum := func(c byte) bool {
		return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	if isAlnum(first) && isAlnum(last) {
		return string([]byte{first, last})
	}
	h := hex.EncodeToString([]byte{first, last})
	return string([]byte{h[0], h[3]})
}

func hash12(s string) string {
	if s == "" {
		return "000000000000"
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:12]
}

// VersionName renders a TLS version number.
func VersionName(v uint16) string {
	switch v {
	case 0x0304:
		return "TLS 1.3"
	case 0x0303:
		return "TLS 1.2"
	case 0x0302:
		return "TLS 1.1"
	case 0x0301:
		return "TLS 1.0"
	case 0x0300:
		return "SSL 3.0"
	}
	return fmt.Sprintf("0x%04x", v)
}
