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

// maxRecord is the largest TLS record (2^14 plus expansion).
const maxRecord = 16384 + 2048

// Metrics counts handshakes seen and problems by reason.
type Metrics struct {
	Handshakes *prometheus.CounterVec
	Errors     *prometheus.CounterVec
	Decrypted  *prometheus.CounterVec
}

// NewMetrics registers the counters on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_tls_handshakes_total", Help: "TLS connections reported, by version."}, []string{"version"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_tls_errors_total", Help: "TLS metadata and decryption problems, by reason."}, []string{"reason"}),
		Decrypted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_tls_decrypted_connections_total", Help: "TLS connections by decryption outcome."}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.Handshakes, m.Errors, m.Decrypted)
	}
	return m
}

// Options enable decryption.
type Options struct {
	// KeyLog supplies session secrets (NSS key-log format); nil: metadata
	// only.
	KeyLog *KeyLog
	// Inner makes the parser of the decrypted bytes, chosen by the
	// negotiated ALPN ("h2", "http/1.1" or "").
	Inner func(info stream.ConnInfo, alpn string, emit stream.Emit) stream.Parser
}

// NewFactory returns a stream.Factory for TLS connections.
func NewFactory(opts Options, m *Metrics) stream.Factory {
	return func(info stream.ConnInfo, emit stream.Emit) stream.Parser { return New(info, opts, m, emit) }
}

// Conn follows one TLS connection's handshake and, with a key log, its
// application data.
type Conn struct {
	info    stream.ConnInfo
	opts    Options
	m       *Metrics
	emit    stream.Emit
	dirs    [2]tlsDir
	ch      *ClientHello
	sh      *ServerHello
	cert    *x509.Certificate
	alpn    string
	suite   suite
	secrets Secrets
	inner   stream.Parser
	emitted bool
	start   time.Time
	flags   wire.Flags
	outcome string
	// wait holds the encrypted records that came before the key log had
	// this session (see hold).
	wait *keyWait
}

// keyWait is a session whose keys were not in the key log at the
// ServerHello. On a live link the sensor sees the ServerHello as soon as
// the client does, and the client writes its keys a moment later, before
// it sends its first encrypted record: the records until then are held,
// and replayed once the keys are found.
type keyWait struct {
	held       []heldRecord
	bytes      int
	clientSeen int // client records held
}

type heldRecord struct {
	d   stream.Dir
	rec []byte // header and body
	ts  time.Time
}

// Bounds of a key wait: a TLS 1.3 server's first flight (certificates
// included) fits, and a client that logs keys has done so by its second
// encrypted record.
const (
	maxHeldBytes   = 64 << 10
	maxHeldRecords = 16
	maxHeldClient  = 2
)

type tlsDir struct {
	rec       []byte // incomplete record
	hs        []byte // handshake bytes across records
	appBytes  int64
	encrypted bool // records are no longer plaintext
	done      bool // nothing more to parse: count bytes only
	firstTS   time.Time
	keys      *recordKeys // current decryption keys
	// awaitTraffic: TLS 1.3 Finished passed before the key log had this
	// direction's application secret.
	awaitTraffic bool
	next         *recordKeys // TLS 1.2: keys that take effect at ChangeCipherSpec
}

// New returns a parser for one connection.
func New(info stream.ConnInfo, opts Options, m *Metrics, emit stream.Emit) *Conn {
	if m == nil {
		m = NewMetrics(nil)
	}
	c := &Conn{info: info, opts: opts, m: m, emit: emit}
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
	if dir.done {
		dir.appBytes += int64(len(data))
		return
	}
	dir.rec = append(dir.rec, data...)
	for len(dir.rec) >= 5 && !dir.done {
		typ := dir.rec[0]
		n := int(dir.rec[3])<<8 | int(dir.rec[4])
		if typ < 20 || typ > 24 || dir.rec[1] != 3 || n > maxRecord {
			c.m.Errors.WithLabelValues("not_tls").Inc()
			c.flags |= wire.FlagUnparsable
			dir.done, dir.rec = true, nil
			break
		}
		if len(dir.rec) < 5+n {
			break
		}
		c.record(d, dir.rec[:5], dir.rec[5:5+n], ts)
		dir.rec = dir.rec[5+n:]
	}
	if dir.encrypted && dir.keys == nil && dir.next == nil && len(dir.rec) == 0 && c.wait == nil && !dir.awaitTraffic {
		// Without keys nothing more can be learned here: count, stop.
		dir.done = true
	}
	dir.rec = append([]byte(nil), dir.rec...) // do not keep the caller's array
}

func (c *Conn) record(d stream.Dir, hdr, body []byte, ts time.Time) {
	dir := &c.dirs[d]
	typ := hdr[0]
	if typ == 20 { // ChangeCipherSpec
		if !c.suite.tls13 {
			dir.encrypted = true
			dir.keys, dir.next = dir.next, nil
		}
		return
	}
	if c.wait != nil && dir.keys == nil && (typ == 23 || (typ == 22 && dir.encrypted)) {
		if c.hold(d, hdr, body, ts) {
			return
		}
	}
	if dir.awaitTraffic && typ == 23 {
		dir.awaitTraffic = false // one more look: a record missed is a stream lost
		if secret := c.trafficSecret(d); len(secret) > 0 {
			var err error
			if dir.keys, err = keys13(c.suite, secret); err != nil {
				c.outcome = "key_error"
				c.m.Errors.WithLabelValues("key_derivation").Inc()
			}
		}
	}
	if dir.keys != nil && (typ == 23 || (typ == 22 && dir.encrypted)) {
		c.decrypt(d, hdr, body, ts)
		return
	}
	switch typ {
	case 22:
		if !dir.encrypted {
			dir.hs = append(dir.hs, body...)
			c.handshake(d, false)
			if len(dir.hs) > maxHandshake {
				c.m.Errors.WithLabelValues("handshake_too_large").Inc()
				dir.done, dir.hs = true, nil
			}
		}
	case 23:
		dir.appBytes += int64(len(body))
		dir.encrypted = true
	}
}

func (c *Conn) decrypt(d stream.Dir, hdr, body []byte, ts time.Time) {
	dir := &c.dirs[d]
	typ, pt, err := dir.keys.open(hdr, body)
	if err != nil {
		c.m.Errors.WithLabelValues("decrypt").Inc()
		c.outcome = "failed"
		dir.keys, dir.done = nil, true
		dir.appBytes += int64(len(body))
		return
	}
	switch typ {
	case 22:
		dir.hs = append(dir.hs, pt...)
		c.handshake(d, true)
	case 23:
		dir.appBytes += int64(len(pt))
		if c.outcome == "" {
			c.outcome = "ok"
		}
		if c.inner == nil && c.opts.Inner != nil {
			c.inner = c.opts.Inner(c.info, c.alpn, c.innerEmit)
		}
		if c.inner != nil && len(pt) > 0 {
			c.inner.Data(d, pt, ts)
		}
	}
}

// innerEmit marks decrypted transactions with the TLS session they came
// from.
func (c *Conn) innerEmit(tx *wire.Transaction) {
	tx.Extra = append(tx.Extra, wire.Header{Name: "tls.decrypted", Value: "true"})
	if c.ch != nil && c.ch.SNI != "" {
		tx.Extra = append(tx.Extra, wire.Header{Name: "tls.sni", Value: c.ch.SNI})
	}
	c.emit(tx)
}

// handshake consumes complete handshake messages of one direction;
// decrypted is true for TLS 1.3's encrypted handshake.
func (c *Conn) handshake(d stream.Dir, decrypted bool) {
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
			if err == nil {
				c.alpn = c.sh.ALPN
				c.serverHello()
			}
		case typ == 8 && decrypted: // EncryptedExtensions (TLS 1.3) carry ALPN
			c.alpn = alpnFromExtensions(body)
		case typ == 11 && d == stream.ServerToClient && c.cert == nil:
			c.cert, err = parseCertificate(body, decrypted)
		case typ == 20 && decrypted && c.suite.tls13:
			// Finished: this direction moves to its application secret.
			// The client may not have logged it yet (it derives it from
			// the server's Finished, which the sensor can see first): the
			// direction's first application record asks again.
			dir.keys = nil
			secret := c.trafficSecret(d)
			dir.awaitTraffic = len(secret) == 0
			if len(secret) > 0 {
				dir.keys, err = keys13(c.suite, secret)
			}
		case typ == 24 && decrypted && dir.keys != nil && dir.keys.tls13: // KeyUpdate
			dir.keys, err = dir.keys.update()
		}
		if err != nil {
			c.m.Errors.WithLabelValues("bad_handshake").Inc()
			c.flags |= wire.FlagUnparsable
		}
		dir.hs = dir.hs[4+n:]
	}
}

// serverHello sets up decryption once the suite and both randoms are
// known and the key log has the session.
func (c *Conn) serverHello() {
	v := c.sh.Version()
	if v == tls.VersionTLS13 {
		// Everything after the ServerHello is encrypted, both ways.
		c.dirs[stream.ServerToClient].encrypted = true
		c.dirs[stream.ClientToServer].encrypted = true
	}
	if c.opts.KeyLog == nil || c.ch == nil {
		return
	}
	s, ok := suites[c.sh.Cipher]
	if !ok {
		c.outcome = "unsupported_suite"
		return
	}
	c.suite = s
	if !c.setKeys() {
		c.outcome = "no_key"
		c.wait = &keyWait{}
	}
}

// setKeys looks the session up in the key log and sets up decryption;
// false when the log does not have it (yet). A direction that already
// switched to encrypted records (TLS 1.2, after its ChangeCipherSpec)
// gets its keys at once.
func (c *Conn) setKeys() bool {
	s := c.suite
	sec, ok := c.opts.KeyLog.Lookup(c.ch.Random)
	if !ok {
		return false
	}
	c.secrets = sec
	var err error
	if s.tls13 {
		if len(sec.ServerHandshake) == 0 || len(sec.ClientHandshake) == 0 {
			return false
		}
		if c.dirs[1].keys, err = keys13(s, sec.ServerHandshake); err == nil {
			c.dirs[0].keys, err = keys13(s, sec.ClientHandshake)
		}
	} else {
		if len(sec.MasterSecret) == 0 {
			return false
		}
		c.dirs[0].next, c.dirs[1].next, err = keys12(s, sec.MasterSecret, c.ch.Random, c.sh.Random)
		for i := range c.dirs {
			if dir := &c.dirs[i]; dir.encrypted && err == nil {
				dir.keys, dir.next = dir.next, nil
			}
		}
	}
	c.outcome = ""
	if err != nil {
		c.outcome = "key_error"
		c.m.Errors.WithLabelValues("key_derivation").Inc()
	}
	return true
}

// trafficSecret is direction d's TLS 1.3 application secret, looked up
// again when the key log did not have it yet.
func (c *Conn) trafficSecret(d stream.Dir) []byte {
	pick := func(s *Secrets) []byte {
		if d == stream.ServerToClient {
			return s.ServerTraffic0
		}
		return s.ClientTraffic0
	}
	if secret := pick(&c.secrets); len(secret) > 0 || c.opts.KeyLog == nil || c.ch == nil {
		return secret
	}
	if sec, ok := c.opts.KeyLog.Lookup(c.ch.Random); ok {
		c.secrets = sec
	}
	return pick(&c.secrets)
}

// hold keeps an encrypted record that came while the key log did not have
// the session, and looks the session up again; once it is found the held
// records go through decryption in the order they came. It reports false
// when the record is not held: the keys were found (decrypt it now) or
// the wait is over without them.
func (c *Conn) hold(d stream.Dir, hdr, body []byte, ts time.Time) bool {
	w := c.wait
	if c.setKeys() {
		c.wait = nil
		for _, h := range w.held {
			c.record(h.d, h.rec[:5], h.rec[5:], h.ts)
		}
		return false
	}
	if d == stream.ClientToServer {
		w.clientSeen++
	}
	if w.clientSeen >= maxHeldClient || len(w.held) >= maxHeldRecords || w.bytes+5+len(body) > maxHeldBytes {
		// The client does not log its keys: the application data held is
		// counted as opaque, as it would have been without a wait.
		c.wait = nil
		for _, h := range w.held {
			if h.rec[0] == 23 {
				c.dirs[h.d].appBytes += int64(len(h.rec) - 5)
			}
		}
		c.m.Errors.WithLabelValues("key_wait_expired").Inc()
		return false
	}
	rec := append(append(make([]byte, 0, 5+len(body)), hdr...), body...)
	w.held = append(w.held, heldRecord{d: d, rec: rec, ts: ts})
	w.bytes += len(rec)
	return true
}

func alpnFromExtensions(b []byte) string {
	r := &reader{b: b}
	exts := &reader{b: r.vec16()}
	for len(exts.b) >= 4 && exts.err == nil {
		typ := exts.u16()
		data := &reader{b: exts.vec16()}
		if typ == 16 {
			list := &reader{b: data.vec16()}
			return string(list.vec8())
		}
	}
	return ""
}

// parseCertificate returns the leaf certificate of a Certificate message;
// TLS 1.3's form has a request context and per-entry extensions.
func parseCertificate(b []byte, tls13 bool) (*x509.Certificate, error) {
	r := &reader{b: b}
	if tls13 {
		r.vec8()
	}
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

// Gap implements stream.Parser: a gap ends parsing of that direction (TLS
// records cannot be re-found, nor decrypted past a lost one); what was
// learned is still reported.
func (c *Conn) Gap(d stream.Dir, n int, ts time.Time) {
	c.flags |= wire.FlagGap
	c.dirs[d].done = true
	c.dirs[d].rec = nil
	if c.inner != nil {
		c.inner.Gap(d, n, ts)
	}
}

// Tick implements stream.Parser.
func (c *Conn) Tick(now time.Time) {
	if c.inner != nil {
		c.inner.Tick(now)
	}
}

// Close implements stream.Parser. The record is emitted at the end of the
// connection so that it carries the application bytes of both directions.
func (c *Conn) Close(reason string, ts time.Time) {
	if c.inner != nil {
		c.inner.Close(reason, ts)
	}
	c.report(ts)
}

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
		Flags: c.flags, Index: 1 << 31, // apart from the decrypted transactions' indexes
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
		add("tls.alpn", c.alpn)
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
	if c.opts.KeyLog != nil {
		outcome := c.outcome
		if outcome == "" {
			outcome = "no_application_data"
		}
		add("tls.decryption", outcome)
		c.m.Decrypted.WithLabelValues(outcome).Inc()
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
