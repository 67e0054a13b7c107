package tlsmeta

import (
	"crypto/tls"
	"crypto/x509"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// maxHandshake caps the handshake bytes buffered per direction: enough for
// a certificate chain, small enough that a flood of fake handshakes costs
// little.
const maxHandshake = 64 << 10

// Metrics counts handshakes seen and problems by reason.
type Metrics struct {
	Handshakes *prometheus.CounterVec
	Errors     *prometheus.CounterVec
}

// NewMetrics registers the counters on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_tls_handshakes_total", Help: "TLS connections reported, by version."}, []string{"version"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_tls_errors_total", Help: "TLS metadata problems, by reason."}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.Handshakes, m.Errors)
	}
	return m
}

// NewFactory returns a stream.Factory for TLS connections.
func NewFactory(m *Metrics) stream.Factory {
	return func(info stream.ConnInfo, emit stream.Emit) stream.Parser { return New(info, m, emit) }
}

// Conn follows one TLS connection's handshake.
type Conn struct {
	info    stream.ConnInfo
	m       *Metrics
	emit    stream.Emit
	dirs    [2]tlsDir
	ch      *ClientHello
	sh      *ServerHello
	cert    *x509.Certificate
	emitted bool
	start   time.Time
	last    time.Time
	flags   wire.Flags
}

type tlsDir struct {
	rec       []byte // incomplete record
	hs        []byte // handshake bytes across records
	appBytes  int64
	encrypted bool // after ChangeCipherSpec the rest is opaque
	done      bool
	firstTS   time.Time
}

// New returns a parser for one connection.
func New(info stream.ConnInfo, m *Metrics, emit stream.Emit) *Conn {
	if m == nil {
		m = NewMetrics(nil)
	}
	c := &Conn{info: info, m: m, emit: emit}
	if info.Midstream {
		c.flags |= wire.FlagMidstream
	}
	return c
}

// Data implements stream.Parser.
func (c *Conn) Data(d stream.Dir, data []byte, ts time.Time) {
	dir := &c.dirs[d]
	if c.start.IsZero() {
		c.start = ts
	}
	if dir.firstTS.IsZero() {
		dir.firstTS = ts
	}
	c.last = ts
	if dir.done {
		dir.appBytes += int64(len(data))
		return
	}
	dir.rec = append(dir.rec, data...)
	for len(dir.rec) >= 5 {
		typ := dir.rec[0]
		n := int(dir.rec[3])<<8 | int(dir.rec[4])
		if typ < 20 || typ > 24 || dir.rec[1] != 3 {
			c.m.Errors.WithLabelValues("not_tls").Inc()
			c.flags |= wire.FlagUnparsable
			dir.done, dir.rec = true, nil
			break
		}
		if len(dir.rec) < 5+n {
			break
		}
		body := dir.rec[5 : 5+n]
		switch typ {
		case 22:
			if !dir.encrypted {
				dir.hs = append(dir.hs, body...)
				c.handshake(d)
			}
		case 20:
			dir.encrypted = true
		case 23:
			dir.appBytes += int64(n)
			dir.encrypted = true
		}
		dir.rec = dir.rec[5+n:]
		if len(dir.hs) > maxHandshake {
			c.m.Errors.WithLabelValues("handshake_too_large").Inc()
			dir.done, dir.hs = true, nil
		}
	}
	if dir.encrypted && len(dir.rec) == 0 {
		// Nothing more to learn from this direction: count, stop parsing.
		dir.done = true
		dir.rec = nil
	}
	dir.rec = append([]byte(nil), dir.rec...) // do not keep the caller's array
}

// handshake consumes complete handshake messages of one direction.
func (c *Conn) handshake(d stream.Dir) {
	dir := &c.dirs[d]
	for len(dir.hs) >= 4 {
		typ := dir.hs[0]
		n := int(dir.hs[1])<<16 | int(dir.hs[2])<<8 | int(dir.hs[3])
		if len(dir.hs) < 4+n {
			return
		}
		body := dir.hs[4 : 4+n]
		var err error
		switch {
		case typ == 1 && d == stream.ClientToServer && c.ch == nil:
			c.ch, err = ParseClientHello(body)
		case typ == 2 && d == stream.ServerToClient && c.sh == nil:
			c.sh, err = ParseServerHello(body)
			if c.sh != nil && c.sh.Version() == tls.VersionTLS13 {
				dir.encrypted = true // everything after ServerHello is encrypted
			}
		case typ == 11 && d == stream.ServerToClient && c.cert == nil:
			c.cert, err = parseCertificate(body)
		}
		if err != nil {
			c.m.Errors.WithLabelValues("bad_handshake").Inc()
			c.flags |= wire.FlagUnparsable
		}
		dir.hs = dir.hs[4+n:]
	}
}

func parseCertificate(b []byte) (*x509.Certificate, error) {
	r := &reader{b: b}
	list := &reader{b: r.bytes(int(r.u8())<<16 | int(r.u16()))}
	if r.err != nil {
		return nil, r.err
	}
	first := list.bytes(int(list.u8())<<16 | int(list.u16()))
	if list.err != nil {
		return nil, list.err
	}
	return x509.ParseCertificate(first)
}

// Gap implements stream.Parser: a gap in the handshake ends parsing of
// that direction; what was learned is still reported.
func (c *Conn) Gap(d stream.Dir, n int, ts time.Time) {
	c.flags |= wire.FlagGap
	c.dirs[d].done = true
	c.dirs[d].rec = nil
}

// Tick implements stream.Parser.
func (c *Conn) Tick(time.Time) {}

// Close implements stream.Parser. The record is emitted at the end of the
// connection so that it carries the application bytes of both directions.
func (c *Conn) Close(reason string, ts time.Time) { c.report(ts) }

func (c *Conn) report(ts time.Time) {
	if c.emitted || (c.ch == nil && c.sh == nil) {
		return
	}
	c.emitted = true
	tx := &wire.Transaction{
		ConnID: c.info.ID, Client: c.info.Client, Server: c.info.Server, Mirror: c.info.Mirror,
		Protocol: "tls", RequestStart: c.start, RequestEnd: c.dirs[0].firstTS,
		ResponseStart: c.dirs[1].firstTS, ResponseEnd: ts,
		RequestBodyWireLen: c.dirs[0].appBytes, ResponseBodyWireLen: c.dirs[1].appBytes,
		Flags: c.flags,
	}
	if c.dirs[0].firstTS.IsZero() {
		tx.RequestEnd = c.start
	}
	add := func(k, v string) {
		if v != "" {
			tx.Extra = append(tx.Extra, wire.Header{Name: k, Value: v})
		}
	}
	version := ""
	if c.ch != nil {
		tx.Host = c.ch.SNI
		add("tls.sni", c.ch.SNI)
		add("tls.client_alpn", strings.Join(c.ch.ALPN, ","))
		s, h := c.ch.JA3()
		add("tls.ja3", h)
		add("tls.ja3_string", s)
		add("tls.ja4", c.ch.JA4())
	} else {
		tx.Flags |= wire.FlagNoRequest
	}
	if c.sh != nil {
		version = VersionName(c.sh.Version())
		add("tls.version", version)
		add("tls.cipher", tls.CipherSuiteName(c.sh.Cipher))
		add("tls.alpn", c.sh.ALPN)
	} else {
		tx.Flags |= wire.FlagNoResponse
	}
	if c.cert != nil {
		add("tls.cert_subject", c.cert.Subject.String())
		add("tls.cert_issuer", c.cert.Issuer.String())
		add("tls.cert_sans", strings.Join(c.cert.DNSNames, ","))
		add("tls.cert_not_after", c.cert.NotAfter.UTC().Format(time.RFC3339))
		add("tls.cert_expired_at_capture", strconv.FormatBool(c.start.After(c.cert.NotAfter)))
	}
	if tx.Host == "" {
		tx.Host = c.info.Server.String()
	}
	if version == "" {
		version = "unknown"
	}
	c.m.Handshakes.WithLabelValues(version).Inc()
	c.emit(tx)
}
