package simulate

import (
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
	// first, Last its last.
	Conn          uint64
	NewConn, Last bool

	Host, Method, Path, Query string
	ReqHeaders, RespHeaders   []wire.Header
	ReqBody, RespBody         []byte
	Status                    int
	// Chunked and Gzip choose the response's encoding on the wire.
	Chunked, Gzip bool

	Service, Template string
}

// Label marks an injected episode.
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
	// Start is the packet time of the first exchange (default: a Monday
	// 09:00 UTC, so rhythms are at their daytime level).
	Start time.Time
	// Duration of packet time (default per scenario).
	Duration time.Duration
	// SizeMB stops the bench scenario after about this many bytes of
	// HTTP messages (the capture is larger by its headers).
	SizeMB int
}

// Result describes what was generated.
type Result struct {
	Services  []Service
	Labels    []Label
	Exchanges int
	End       time.Time
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
	nextPort uint16
	conns    map[string]*connState
}

type connState struct {
	id    uint64
	port  uint16
	last  time.Time
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
	bytes    int64
	// pending are episode exchanges waiting for their time.
	pending []*Exchange
}

// Run generates the scenario, calling emit for every exchange in start
// order. It stops early when emit returns an error.
func Run(o Options, emit func(*Exchange) error) (*Result, error) {
	if o.Start.IsZero() {
		o.Start = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	}
	g := &gen{o: o, r: rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))}
	switch o.Scenario {
	case "demo", "":
		g.services = demoServices()
		def(&o.Duration, time.Hour)
	case "inventory":
		g.services = demoServices()
		for i := range g.services {
			g.services[i].RatePerMin *= 2
		}
		def(&o.Duration, 2*time.Hour)
	case "anomalies":
		g.services = demoServices()
		def(&o.Duration, 30*time.Hour)
	case "bench":
		g.services = benchServices()
		def(&o.Duration, 1000*time.Hour)
		if o.SizeMB <= 0 {
			o.SizeMB = 200
		}
	default:
		return nil, fmt.Errorf("unknown scenario %q (one of %s)", o.Scenario, strings.Join(Scenarios, ", "))
	}
	g.o = o
	g.makeClients()
	g.planEpisodes()
	end := o.Start.Add(o.Duration)
	n := 0
	last := o.Start
	for sec := o.Start; sec.Before(end); sec = sec.Add(time.Second) {
		batch := g.second(sec)
		for _, ex := range batch {
			if err := emit(ex); err != nil {
				return nil, err
			}
			n++
			last = ex.Start
			g.bytes += int64(len(ex.ReqBody) + len(ex.RespBody) + 400)
		}
		if o.Scenario == "bench" && g.bytes >= int64(o.SizeMB)<<20 {
			break
		}
	}
	sort.Slice(g.labels, func(i, j int) bool { return g.labels[i].Start.Before(g.labels[j].Start) })
	return &Result{Services: g.services, Labels: g.labels, Exchanges: n, End: last}, nil
}

func def(d *time.Duration, v time.Duration) {
	if *d == 0 {
		*d = v
	}
}

func (g *gen) makeClients() {
	mk := func(i int, role string) *client {
		c := &client{ip: netip.AddrFrom4([4]byte{10, 20, byte(i / 250), byte(1 + i%250)}), role: role,
			sub: fmt.Sprintf("user-%d", i), nextPort: uint16(32768 + g.r.IntN(20000)), conns: map[string]*connState{}}
		if role == "anon" {
			return c
		}
		c.jwt = makeJWT(g.r, c.sub, role, g.o.Start)
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

func makeJWT(r *rand.Rand, sub, role string, now time.Time) string {
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{"sub": sub, "role": role, "iss": "https://id.example",
		"iat": now.Unix(), "exp": now.Add(72 * time.Hour).Unix()})
	return h + "." + enc.EncodeToString(claims) + "." + enc.EncodeToString([]byte(token(r)+token(r)))
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
		n := poisson(g.r, s.RatePerMin/60*rhythm(sec))
		for i := 0; i < n; i++ {
			at := sec.Add(time.Duration(g.r.Int64N(int64(time.Second))))
			if ex := g.normal(s, at); ex != nil {
				out = append(out, ex)
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

func (g *gen) pick(s *Service) *Endpoint {
	total := 0.0
	for _, e := range s.Endpoints {
		total += e.Weight
	}
	x := g.r.Float64() * total
	for i := range s.Endpoints {
		x -= s.Endpoints[i].Weight
		if x < 0 {
			return &s.Endpoints[i]
		}
	}
	return &s.Endpoints[0]
}

// normal makes one ordinary call of service s.
func (g *gen) normal(s *Service, at time.Time) *Exchange {
	e := g.pick(s)
	var c *client
	switch {
	case e.Role == "admin":
		c = g.admins[g.r.IntN(len(g.admins))]
	case e.Auth == "none" && g.r.IntN(2) == 0:
		c = g.anon[g.r.IntN(len(g.anon))]
	default:
		c = g.users[g.r.IntN(len(g.users))]
	}
	return g.call(s, e, c, at, nil, "")
}

// call builds an exchange of endpoint e by client c. params fixes path
// parameters; query is added to the request.
func (g *gen) call(s *Service, e *Endpoint, c *client, at time.Time, params map[string]string, query string) *Exchange {
	path, vals := g.fill(e.Template, params)
	ex := &Exchange{Start: at, Host: s.Host, Method: e.Method, Path: path, Query: query,
		Service: s.Host, Template: TruthTemplate(e.Template)}
	ex.Client, ex.Server = g.conn(c, s, at, ex)
	ex.ReqHeaders = []wire.Header{{Name: "Host", Value: s.Host}, {Name: "User-Agent", Value: "sim/1.0"}, {Name: "Accept", Value: "application/json"}}
	if c.role != "anon" {
		switch e.Auth {
		case "bearer":
			ex.ReqHeaders = append(ex.ReqHeaders, wire.Header{Name: "Authorization", Value: "Bearer " + c.jwt})
		case "apikey":
			ex.ReqHeaders = append(ex.ReqHeaders, wire.Header{Name: "X-API-Key", Value: c.apiKey})
		case "cookie":
			ex.ReqHeaders = append(ex.ReqHeaders, wire.Header{Name: "Cookie", Value: c.cookie})
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
	needAuth := e.Auth != "none"
	if needAuth && c.role == "anon" {
		ex.Status = 401
	}
	if e.Role == "admin" && c.role != "admin" && ex.Status < 400 {
		ex.Status = 403
	}
	switch {
	case ex.Status >= 400:
		ex.RespBody, _ = json.Marshal(map[string]any{"error": statusText(ex.Status)})
	case e.Resp != nil:
		ex.RespBody, _ = json.Marshal(e.Resp(g.r, vals))
	default:
		ex.RespBody = []byte(`{"ok":true}`)
	}
	ex.RespHeaders = []wire.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Server", Value: "sim"}}
	ex.Latency = time.Duration(float64(8*time.Millisecond) * math.Exp(0.5*g.r.NormFloat64()))
	if g.o.Scenario == "bench" {
		ex.Gzip = g.r.IntN(10) < 3
		ex.Chunked = g.r.IntN(10) < 3
	}
	return ex
}

func statusText(code int) string {
	switch code {
	case 401:
		return "unauthorized"
	case 403:
		return "forbidden"
	case 404:
		return "not found"
	}
	return "internal error"
}

// conn picks the client's connection to the service: kept alive for up to
// 20 calls and 5 s of idleness, else a new one on the next port.
func (g *gen) conn(c *client, s *Service, at time.Time, ex *Exchange) (netip.AddrPort, netip.AddrPort) {
	server := netip.MustParseAddrPort(s.Addr)
	st := c.conns[s.Host]
	short := g.o.Scenario == "bench" && g.r.IntN(10) < 3
	if st == nil || at.Sub(st.last) > 5*time.Second || st.count >= 20 || short {
		g.nextConn++
		c.nextPort++
		if c.nextPort < 32768 {
			c.nextPort = 32768
		}
		st = &connState{id: g.nextConn, port: c.nextPort}
		c.conns[s.Host] = st
		ex.NewConn = true
	}
	st.last = at.Add(time.Second) // a response and its ACKs follow the start
	st.count++
	ex.Conn = st.id
	return netip.AddrPortFrom(c.ip, st.port), server
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

// ToTransaction gives the record the sensor would emit for ex, before
// redaction.
func ToTransaction(ex *Exchange) *wire.Transaction {
	ct := func(hs []wire.Header) string {
		for _, h := range hs {
			if h.Name == "Content-Type" {
				return h.Value
			}
		}
		return ""
	}
	return &wire.Transaction{
		ConnID: ex.Conn, Client: ex.Client, Server: ex.Server, Protocol: "http/1.1",
		RequestStart: ex.Start, RequestEnd: ex.Start, ResponseStart: ex.Start.Add(ex.Latency), ResponseEnd: ex.Start.Add(ex.Latency),
		Method: ex.Method, Host: ex.Host, Path: ex.Path, Query: ex.Query, Version: "HTTP/1.1", Status: ex.Status,
		RequestHeaders: ex.ReqHeaders, ResponseHeaders: ex.RespHeaders,
		RequestBody: ex.ReqBody, ResponseBody: ex.RespBody,
		RequestBodyLen: int64(len(ex.ReqBody)), RequestBodyWireLen: int64(len(ex.ReqBody)),
		ResponseBodyLen: int64(len(ex.RespBody)), ResponseBodyWireLen: int64(len(ex.RespBody)),
		RequestContentType: ct(ex.ReqHeaders), ResponseContentType: ct(ex.RespHeaders),
	}
}
