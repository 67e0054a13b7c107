package simulate

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/apiscout/apiscout/wire"
)

// Exchange is one request and response on the wire.
type Exchange struct {
	Start   time.Time
	Latency time.Duration
	Client  netip.AddrPort
	Server  netip.AddrPort
	// Conn groups the exchanges of one TCP connection; NewConn marks its
	// first. Index is the exchange's position on its connection (0 first).
	Conn    uint64
	Index   uint32
	NewConn bool

	Host, Method, Path, Query string
	ReqHeaders, RespHeaders   []wire.Header
	ReqBody, RespBody         []byte
	Status                    int
	// Chunked and Gzip choose the response's encoding on the wire.
	Chunked, Gzip bool
	// Loss asks for this many bytes of the response to be missing from the
	// capture (acknowledged by the client, never seen: a blind sensor).
	Loss int

	// Service and Template are the truth: the endpoint this call is of.
	Service, Template string
	// Episode is the label type when the exchange belongs to an injected
	// episode, else "".
	Episode string
}

// Label marks an injected episode. Client is the attacker's address when
// it sends no credentials, else its JWT subject, and empty when the
// episode has many clients; Host is empty for sensor-wide episodes
// (sensor_blind).
type Label struct {
	Type   string    `json:"type"`
	Host   string    `json:"host"`
	Method string    `json:"method,omitempty"`
	Path   string    `json:"path,omitempty"`
	Client string    `json:"client,omitempty"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
}

// Options choose what to generate.
type Options struct {
	Scenario string
	Seed     uint64
	// Start is the packet time of the first exchange (default: Monday
	// 2026-03-02 09:00 UTC, so rhythms begin at their daytime level).
	Start time.Time
	// Duration of packet time (default per scenario; for anomalies the
	// baseline days plus the episode day).
	Duration time.Duration
	// Days of baseline before the episodes of the anomalies scenario
	// (default 2); in other scenarios, when Duration is zero, the length
	// of the run in days.
	Days int
	// SizeMB stops the bench scenario when its capture reaches about this
	// many MiB (default 200).
	SizeMB int
}

// Result describes what was generated.
type Result struct {
	Services  []Service
	Labels    []Label
	Exchanges int
	// First and End are the start times of the first and last exchanges.
	First, End time.Time
	// Called holds "host method template" of every endpoint called at
	// least once (the argument MakeTruth and WriteFiles want).
	Called map[string]bool
}

// Scenarios lists the scenario names.
var Scenarios = []string{"demo", "inventory", "anomalies", "bench"}

type client struct {
	ip       netip.Addr
	sub      string
	role     string
	jwt      string
	apiKey   string
	cookie   string
	agent    string
	nextPort uint16
	conns    map[string]*connState
}

type connState struct {
	id    uint64
	port  uint16
	last  time.Time // when the last response ended
	count int
}

type gen struct {
	o        Options
	r        *rand.Rand
	services []Service
	users    []*client
	anon     []*client
	admins   []*client
	nextConn uint64
	labels   []Label
	effects  []*effect
	bytes    int64
	// pending are episode exchanges waiting for their time, in order.
	pending []*Exchange
}

// Run generates the scenario, calling emit for every exchange in start
// order. Memory holds one second of traffic and the planned episodes, so
// any length can be streamed. It stops early when emit returns an error.
func Run(o Options, emit func(*Exchange) error) (*Result, error) {
	if o.Start.IsZero() {
		o.Start = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	}
	if o.Days < 0 || o.SizeMB < 0 || o.Duration < 0 {
		return nil, fmt.Errorf("simulate: negative days, size or duration")
	}
	g := &gen{o: o, r: rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))}
	days := func(d time.Duration) {
		if o.Duration == 0 && o.Days > 0 {
			o.Duration = time.Duration(o.Days) * 24 * time.Hour
		}
		def(&o.Duration, d)
	}
	switch o.Scenario {
	case "demo", "":
		o.Scenario = "demo"
		g.services = demoServices()
		days(150 * time.Minute)
	case "inventory":
		g.services = append(demoServices(), contentService())
		for i := range g.services {
			g.services[i].RatePerMin *= 2
		}
		days(2 * time.Hour)
	case "anomalies":
		// Two fifths of the demo's rates but the shop's, which keeps its
		// busy product pages (about 20 calls a minute in the afternoon,
		// enough for per-minute latency quantiles): about 140,000
		// exchanges a day, small enough to stream days of it through a
		// test.
		g.services = anomalyServices()
		for i := range g.services {
			if g.services[i].Host != "api.shop.example" {
				g.services[i].RatePerMin *= 0.4
			}
		}
		if o.Days == 0 {
			o.Days = 2
		}
		def(&o.Duration, time.Duration(o.Days)*24*time.Hour+episodeDay)
	case "bench":
		g.services = benchServices()
		days(1000 * time.Hour)
		if o.SizeMB == 0 {
			o.SizeMB = 200
		}
	default:
		return nil, fmt.Errorf("simulate: unknown scenario %q (one of %s)", o.Scenario, strings.Join(Scenarios, ", "))
	}
	g.o = o
	g.makeClients()
	g.planEpisodes()
	end := o.Start.Add(o.Duration)
	res := &Result{Called: map[string]bool{}}
	for sec := o.Start; sec.Before(end); sec = sec.Add(time.Second) {
		for _, ex := range g.second(sec) {
			if emit != nil {
				if err := emit(ex); err != nil {
					return nil, err
				}
			}
			if res.Exchanges == 0 {
				res.First = ex.Start
			}
			res.Exchanges++
			res.End = ex.Start
			res.Called[ex.Service+" "+ex.Method+" "+ex.Template] = true
			g.bytes += captureBytes(ex)
		}
		if o.Scenario == "bench" && g.bytes >= int64(o.SizeMB)<<20 {
			break
		}
	}
	sort.SliceStable(g.labels, func(i, j int) bool { return g.labels[i].Start.Before(g.labels[j].Start) })
	res.Services, res.Labels = g.services, g.labels
	return res, nil
}

// Generate runs the scenario and returns its exchanges in start order.
// It holds them all: use Run to stream long scenarios (anomalies, bench).
func Generate(o Options) ([]*Exchange, *Result, error) {
	var exs []*Exchange
	res, err := Run(o, func(ex *Exchange) error { exs = append(exs, ex); return nil })
	return exs, res, err
}

// Transactions runs the scenario and returns what the sensor would emit
// for it (ToTransaction of every exchange), in start order. It holds them
// all: use Run with ToTransaction to stream long scenarios.
func Transactions(o Options) ([]*wire.Transaction, *Result, error) {
	var txs []*wire.Transaction
	res, err := Run(o, func(ex *Exchange) error { txs = append(txs, ToTransaction(ex)); return nil })
	return txs, res, err
}

// captureBytes estimates what an exchange adds to the capture: its
// messages (gzip bodies about a quarter of their size) and 82 bytes of
// pcap record, Ethernet, IP and TCP headers per frame, counting the ACKs
// and a new connection's handshake and close.
func captureBytes(ex *Exchange) int64 {
	resp := len(ex.RespBody)
	if ex.Gzip {
		resp /= 4
	}
	req := len(ex.ReqBody) + 350
	resp += 150
	frames := segments(req) + segments(resp) + 2
	if ex.NewConn {
		frames += 6
	}
	// 16/17: measured on the bench scenario (connections carry more
	// exchanges than the guess above assumes).
	return int64(req+resp+82*frames) * 16 / 17
}

func def(d *time.Duration, v time.Duration) {
	if *d == 0 {
		*d = v
	}
}

var userAgents = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
	"ShopApp/4.12.0 (Android 15)", "okhttp/4.12.0", "python-requests/2.32.3", "Go-http-client/1.1",
}

func (g *gen) makeClients() {
	mk := func(i int, role string) *client {
		c := &client{ip: netip.AddrFrom4([4]byte{10, 20, byte(i / 250), byte(1 + i%250)}), role: role,
			sub: fmt.Sprintf("user-%d", i), nextPort: uint16(32768 + g.r.IntN(20000)), conns: map[string]*connState{},
			agent: userAgents[g.r.IntN(len(userAgents))]}
		if role == "anon" {
			return c
		}
		c.jwt = makeJWT(g.r, "HS256", c.sub, role, g.o.Start, 30*24*time.Hour)
		c.apiKey = "ak_" + token(g.r)
		c.cookie = "sid=" + token(g.r)
		return c
	}
	for i := 0; i < 200; i++ {
		g.users = append(g.users, mk(i, "user"))
	}
	for i := 200; i < 205; i++ {
		g.admins = append(g.admins, mk(i, "admin"))
	}
	for i := 300; i < 400; i++ {
		g.anon = append(g.anon, mk(i, "anon"))
	}
}

// makeJWT signs nothing: the signature is random bytes (no verifier sees
// it), alg "none" leaves it empty as such tokens do.
func makeJWT(r *rand.Rand, alg, sub, role string, now time.Time, life time.Duration) string {
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(`{"alg":"` + alg + `","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{"sub": sub, "role": role, "iss": "https://id.example",
		"iat": now.Unix(), "exp": now.Add(life).Unix()})
	sig := ""
	if alg != "none" {
		sig = enc.EncodeToString([]byte(token(r) + token(r)))
	}
	return h + "." + enc.EncodeToString(claims) + "." + sig
}

// rhythm scales rates by time of day: quiet at night, busy in the
// afternoon, lower at weekends.
func rhythm(t time.Time) float64 {
	h := float64(t.Hour()) + float64(t.Minute())/60
	v := 0.2 + 0.8*math.Pow(math.Sin(math.Pi*(h-4)/20), 2)
	if h < 4 {
		v = 0.2
	}
	if wd := t.Weekday(); wd == time.Saturday || wd == time.Sunday {
		v *= 0.5
	}
	return v
}

func poisson(r *rand.Rand, mean float64) int {
	if mean > 30 {
		return int(math.Max(0, math.Round(mean+math.Sqrt(mean)*r.NormFloat64())))
	}
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= r.Float64()
		if p < l {
			return k
		}
		k++
	}
}

// second makes the exchanges starting within one second, in time order.
func (g *gen) second(sec time.Time) []*Exchange {
	var out []*Exchange
	for si := range g.services {
		s := &g.services[si]
		mean := s.RatePerMin / 60 * rhythm(sec)
		n := poisson(g.r, mean)
		for i := 0; i < n; i++ {
			at := sec.Add(time.Duration(g.r.Int64N(int64(time.Second))))
			if ex := g.normal(s, g.pick(s), at); ex != nil {
				out = append(out, ex)
			}
		}
		// Rate spikes add calls of their endpoint on top of its normal
		// share.
		for _, f := range g.effects {
			if f.rate <= 1 || f.host != s.Host || sec.Before(f.start) || !sec.Before(f.end) {
				continue
			}
			e := s.endpoint(f.method, f.tmpl)
			n := poisson(g.r, mean*e.Weight/s.totalWeight()*(f.rate-1))
			for i := 0; i < n; i++ {
				at := sec.Add(time.Duration(g.r.Int64N(int64(time.Second))))
				if ex := g.normal(s, e, at); ex != nil {
					out = append(out, ex)
				}
			}
		}
	}
	for len(g.pending) > 0 && g.pending[0].Start.Before(sec.Add(time.Second)) {
		out = append(out, g.pending[0])
		g.pending = g.pending[1:]
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

func (s *Service) totalWeight() float64 {
	total := 0.0
	for _, e := range s.Endpoints {
		total += e.Weight
	}
	return total
}

func (g *gen) pick(s *Service) *Endpoint {
	x := g.r.Float64() * s.totalWeight()
	for i := range s.Endpoints {
		x -= s.Endpoints[i].Weight
		if x < 0 {
			return &s.Endpoints[i]
		}
	}
	return &s.Endpoints[0]
}

// normal makes one ordinary call of endpoint e, changed by the effects
// active at its time; nil when an effect silences it.
func (g *gen) normal(s *Service, e *Endpoint, at time.Time) *Exchange {
	var c *client
	switch {
	case e.Role == "admin":
		c = g.admins[g.r.IntN(len(g.admins))]
	case e.Auth == "none" && g.r.IntN(2) == 0:
		c = g.anon[g.r.IntN(len(g.anon))]
	default:
		c = g.users[g.r.IntN(len(g.users))]
	}
	var spec callSpec
	for _, f := range g.effects {
		if !f.applies(s.Host, e, at) {
			continue
		}
		if f.rate == 0 {
			return nil
		}
		f.apply(g.r, &spec)
	}
	return g.call(s, e, c, at, spec)
}

// callSpec changes one call from the endpoint's ordinary behaviour.
type callSpec struct {
	params     map[string]string // fixed path parameters
	query      string
	status     int     // forced status (0: the endpoint's own)
	latencyMul float64 // 0: 1
	// resp replaces the endpoint's response for successful calls.
	resp    func(r *rand.Rand, params map[string]string) map[string]any
	body    []byte // a prepared successful response body (shared, never changed)
	noAuth  bool   // send no credentials
	jwt     string // bearer token to send instead of the client's
	loss    bool   // lose part of the response to the capture
	errBody string // body of a forced error status
	episode string
}

// call builds an exchange of endpoint e by client c at time at.
func (g *gen) call(s *Service, e *Endpoint, c *client, at time.Time, spec callSpec) *Exchange {
	path, vals := g.fill(e.Template, spec.params)
	ex := &Exchange{Start: at, Host: s.Host, Method: e.Method, Path: path, Query: spec.query,
		Service: s.Host, Template: TruthTemplate(e.Template), Episode: spec.episode}
	ex.ReqHeaders = []wire.Header{{Name: "Host", Value: s.Host}, {Name: "User-Agent", Value: c.agent}, {Name: "Accept", Value: "application/json"}}
	authed := false
	if !spec.noAuth && (c.role != "anon" || spec.jwt != "") {
		switch e.Auth {
		case "bearer":
			tok := c.jwt
			if spec.jwt != "" {
				tok = spec.jwt
			}
			ex.ReqHeaders = append(ex.ReqHeaders, wire.Header{Name: "Authorization", Value: "Bearer " + tok})
			authed = true
		case "apikey":
			ex.ReqHeaders = append(ex.ReqHeaders, wire.Header{Name: "X-API-Key", Value: c.apiKey})
			authed = true
		case "cookie":
			ex.ReqHeaders = append(ex.ReqHeaders, wire.Header{Name: "Cookie", Value: c.cookie})
			authed = true
		}
	}
	if e.Req != nil {
		ex.ReqBody, _ = json.Marshal(e.Req(g.r))
		ex.ReqHeaders = append(ex.ReqHeaders, wire.Header{Name: "Content-Type", Value: "application/json"})
	}
	ex.Status = 200
	if e.Method == "POST" {
		ex.Status = 201
	}
	if e.Status != nil {
		ex.Status = e.Status(g.r)
	}
	switch {
	case spec.status != 0:
		ex.Status = spec.status
	case e.Auth != "none" && !authed:
		ex.Status = 401
	case e.Role == "admin" && c.role != "admin" && ex.Status < 400:
		ex.Status = 403
	}
	resp := e.Resp
	if spec.resp != nil {
		resp = spec.resp
	}
	switch {
	case ex.Status >= 400 && spec.errBody != "":
		ex.RespBody = []byte(spec.errBody)
	case ex.Status >= 400:
		ex.RespBody, _ = json.Marshal(map[string]any{"error": statusText(ex.Status)})
	case spec.body != nil:
		ex.RespBody = spec.body
	case resp != nil:
		ex.RespBody, _ = json.Marshal(resp(g.r, vals))
	default:
		ex.RespBody = []byte(`{"ok":true}`)
	}
	ex.RespHeaders = []wire.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Server", Value: "nginx"},
		{Name: "Date", Value: at.Format(time.RFC1123)}}
	// Latency: a lognormal service time around 6 ms, plus the time to
	// produce and send the body.
	lat := float64(6*time.Millisecond)*math.Exp(0.5*g.r.NormFloat64()) + float64(len(ex.RespBody))*float64(200*time.Nanosecond)
	if spec.latencyMul > 0 {
		lat *= spec.latencyMul
	}
	ex.Latency = time.Duration(lat)
	if g.o.Scenario == "bench" {
		ex.Gzip = g.r.IntN(10) < 3
		ex.Chunked = g.r.IntN(10) < 3
	}
	if spec.loss && len(ex.RespBody) > 40 {
		ex.Loss = len(ex.RespBody) / 2
	}
	g.conn(c, s, ex)
	return ex
}

func statusText(code int) string {
	switch code {
	case 400:
		return "bad request"
	case 401:
		return "unauthorized"
	case 403:
		return "forbidden"
	case 404:
		return "not found"
	case 429:
		return "too many requests"
	case 503:
		return "service unavailable"
	}
	return "internal error"
}

// keepAlive is how long a client keeps an idle connection open; the pcap
// writer closes connections idle for longer (see PcapWriter).
const keepAlive = 5 * time.Second

// conn picks the client's connection to the service: kept alive for up
// to 20 calls and keepAlive of idleness, never while a call is in flight
// on it (no pipelining), else a new one on the next port. The bench
// scenario opens a new connection for a third of its calls.
func (g *gen) conn(c *client, s *Service, ex *Exchange) {
	at := ex.Start
	server := netip.MustParseAddrPort(s.Addr)
	st := c.conns[s.Host]
	short := g.o.Scenario == "bench" && g.r.IntN(10) < 3
	if st == nil || !at.After(st.last) || at.Sub(st.last) > keepAlive || st.count >= 20 || short {
		g.nextConn++
		c.nextPort++
		if c.nextPort < 32768 {
			c.nextPort = 32768
		}
		st = &connState{id: g.nextConn, port: c.nextPort}
		c.conns[s.Host] = st
		ex.NewConn = true
	}
	ex.Conn, ex.Index = st.id, uint32(st.count)
	st.count++
	// The response ends after the latency and the segments' spacing in
	// the capture (see wireTimes); a margin keeps the next request after
	// it.
	// (estimated from the body sizes: building the messages here would
	// cost the bench scenario a third of its time).
	steps := segments(len(ex.ReqBody)+600) + segments(len(ex.RespBody)+600) + 4
	st.last = at.Add(ex.Latency + time.Duration(steps)*segmentStep + time.Millisecond)
	ex.Client, ex.Server = netip.AddrPortFrom(c.ip, st.port), server
}

// fill replaces {name:style} with generated (or given) values.
func (g *gen) fill(tmpl string, fixed map[string]string) (string, map[string]string) {
	vals := map[string]string{}
	var b strings.Builder
	for {
		i := strings.IndexByte(tmpl, '{')
		if i < 0 {
			b.WriteString(tmpl)
			break
		}
		j := strings.IndexByte(tmpl[i:], '}') + i
		b.WriteString(tmpl[:i])
		name, style, _ := strings.Cut(tmpl[i+1:j], ":")
		v, ok := fixed[name]
		if !ok {
			v = valueFor(g.r, style)
		}
		vals[name] = v
		b.WriteString(v)
		tmpl = tmpl[j+1:]
	}
	return b.String(), vals
}

// TruthTemplate drops the generator's value styles: /a/{id:int} → /a/{id}.
func TruthTemplate(t string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			b.WriteString(t)
			return b.String()
		}
		j := strings.IndexByte(t[i:], '}') + i
		name, _, _ := strings.Cut(t[i+1:j], ":")
		b.WriteString(t[:i] + "{" + name + "}")
		t = t[j+1:]
	}
}

// The packet writer's timing: segments of at most mss bytes, segmentStep
// apart, the receiver's ACK after each message.
const (
	mss         = 1448
	segmentStep = 20 * time.Microsecond
)

func segments(n int) int { return max(1, (n+mss-1)/mss) }

// wireTimes are the packet times of the first and last segments of the
// request and of the response, as the pcap writer lays them out: the
// request's segments, the server's ACK, the latency, the response's
// segments (in two runs with the client's ACK between them when the
// capture loses bytes in the middle).
func wireTimes(ex *Exchange, reqLen, respLen, lossFrom, lossN int) (reqStart, reqEnd, respStart, respEnd time.Time) {
	k := segments(reqLen)
	reqStart = ex.Start
	reqEnd = reqStart.Add(time.Duration(k-1) * segmentStep)
	respStart = reqEnd.Add(2*segmentStep + ex.Latency)
	steps := segments(respLen) - 1
	if lossN > 0 {
		steps = segments(lossFrom) + segments(respLen-lossFrom-lossN)
	}
	respEnd = respStart.Add(time.Duration(steps) * segmentStep)
	return
}

// ToTransaction gives the record the sensor would emit for ex: headers as
// on the wire with credentials redacted in the sensor's forms (under
// RedactKey, JWT claims kept), the decoded bodies (not masked: a sensor
// with sensor.mask_bodies also masks cards, national ids and emails in
// them), packet times of the first and last segments, and for an exchange
// with capture loss the gap flag and the bytes lost.
func ToTransaction(ex *Exchange) *wire.Transaction {
	ct := func(hs []wire.Header) string {
		for _, h := range hs {
			if h.Name == "Content-Type" {
				return h.Value
			}
		}
		return ""
	}
	reqHeaders := requestHeaders(ex)
	respHeaders, wireBody := responseWire(ex)
	resp := ResponseBytes(ex)
	lossFrom, lossN := lossSpan(ex, resp)
	reqStart, reqEnd, respStart, respEnd := wireTimes(ex, len(RequestBytes(ex)), len(resp), lossFrom, lossN)
	tx := &wire.Transaction{
		ConnID: ex.Conn, Index: ex.Index, Client: ex.Client, Server: ex.Server, Protocol: "http/1.1",
		RequestStart: reqStart, RequestEnd: reqEnd, ResponseStart: respStart, ResponseEnd: respEnd,
		Method: ex.Method, Host: ex.Host, Path: ex.Path, Query: ex.Query, Version: "HTTP/1.1",
		Status: ex.Status, Reason: reason(ex.Status),
		RequestHeaders: redactHeaders(reqHeaders), ResponseHeaders: redactHeaders(respHeaders),
		RequestBody: ex.ReqBody, ResponseBody: ex.RespBody,
		RequestBodyLen: int64(len(ex.ReqBody)), RequestBodyWireLen: int64(len(ex.ReqBody)),
		ResponseBodyLen: int64(len(ex.RespBody)), ResponseBodyWireLen: int64(len(wireBody)),
		RequestContentType: ct(ex.ReqHeaders), ResponseContentType: ct(ex.RespHeaders),
	}
	for _, h := range ex.ReqHeaders {
		if _, ok := redactHeader(h); ok && !strings.EqualFold(h.Name, "cookie") {
			tx.Flags |= wire.FlagCleartextCredentials
		}
	}
	if lossN > 0 {
		tx.Flags |= wire.FlagGap
		tx.CaptureLoss = uint64(lossN)
	}
	return tx
}

// lossSpan is where in the response's bytes on the wire the capture loses
// ex.Loss bytes: after the headers and the first bytes of the body, never
// the last byte (so the receiver's ACK shows the hole).
func lossSpan(ex *Exchange, resp []byte) (from, n int) {
	if ex.Loss <= 0 {
		return 0, 0
	}
	from = bytes.Index(resp, []byte("\r\n\r\n")) + 4 + 16
	n = min(ex.Loss, len(resp)-from-1)
	if n <= 0 {
		return 0, 0
	}
	return from, n
}
