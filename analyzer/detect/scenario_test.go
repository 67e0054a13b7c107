package detect

// A deterministic scenario generator for the detector tests: two services
// with a daily rhythm, a few hundred users, admins and anonymous clients,
// days of normal traffic in packet time, then labelled episodes of every
// anomaly type. It emits inventory.Observations the way the inventory
// would (templates, classification, path parameters, identities, new
// fields, returned ids), each with its wire.Transaction.

import (
	"encoding/base64"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/wire"
)

// simStart is a Monday.
var simStart = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

const (
	svcShop = "shop.example"
	svcAPI  = "api.example"
)

type access int

const (
	public access = iota
	user
	admin
	login
)

// route is one endpoint of the simulated services.
type route struct {
	svc, method, tmpl string
	param             string // path parameter name, "" when none
	who               access
	rate              float64 // calls per minute at the daily mean
	latency           float64 // median seconds
	size              float64 // median response bytes
	sensitive         []string
	fields            []string
	class             inventory.Classification
	query             bool
}

var routes = []route{
	{svc: svcShop, method: "GET", tmpl: "/products", who: public, rate: 45, latency: 0.04, size: 8000},
	{svc: svcShop, method: "GET", tmpl: "/products/{productId}", param: "productId", who: public, rate: 60, latency: 0.02, size: 2000},
	{svc: svcShop, method: "GET", tmpl: "/search", who: public, rate: 4, latency: 0.06, size: 5000, query: true},
	{svc: svcShop, method: "GET", tmpl: "/users/{userId}/orders", param: "userId", who: user, rate: 25, latency: 0.05, size: 3000},
	{svc: svcShop, method: "GET", tmpl: "/orders/{orderId}", param: "orderId", who: user, rate: 30, latency: 0.03, size: 1500},
	{svc: svcShop, method: "POST", tmpl: "/orders", who: user, rate: 8, latency: 0.08, size: 600, fields: []string{"/item:string", "/qty:number", "/id:string"}},
	{svc: svcShop, method: "GET", tmpl: "/account", who: user, rate: 15, latency: 0.03, size: 1500, sensitive: []string{"email"}},
	{svc: svcShop, method: "POST", tmpl: "/login", who: login, rate: 12, latency: 0.1, size: 400},
	{svc: svcShop, method: "GET", tmpl: "/admin/users", who: admin, rate: 1, latency: 0.1, size: 20000},
	{svc: svcShop, method: "DELETE", tmpl: "/admin/users/{userId}", param: "userId", who: admin, rate: 0.2, latency: 0.05, size: 100},
	{svc: svcAPI, method: "GET", tmpl: "/api/items", who: user, rate: 15, latency: 0.03, size: 6000},
	{svc: svcAPI, method: "GET", tmpl: "/api/items/{itemId}", param: "itemId", who: user, rate: 25, latency: 0.02, size: 1200},
	{svc: svcAPI, method: "POST", tmpl: "/api/login", who: login, rate: 4, latency: 0.1, size: 400},
	{svc: svcAPI, method: "GET", tmpl: "/api/status", who: public, rate: 12, latency: 0.005, size: 50},
}

const (
	nUsers  = 300
	nAdmins = 5
	nIPs    = 200
)

// episode is one labelled injected anomaly.
type episode struct {
	typ        string
	svc        string
	path       string // endpoint template for endpoint-scoped types
	client     string // identity for client-scoped types
	start, end time.Time
	// gen adds the episode's own events for minute m; mod changes normal
	// events while the episode lasts.
	gen func(g *gen, m time.Time)
	mod func(g *gen, e *event)
}

type event struct {
	t      time.Time
	r      *route
	rIdx   int
	client int // user index, admin index or ip index, by r.who
	who    access
	// overrides set by episodes
	status     int
	latency    float64
	size       float64
	path       string
	query      string
	body       []byte
	identity   string
	auth       string
	roles      []string
	authHeader string
	sensitive  []string
	newFields  []string
	class      inventory.Classification
	flags      wire.Flags
	drop       bool
	params     map[string]string
	mirror     string
	tmpl, svc  string
	method     string
	loginFail  bool
}

type gen struct {
	rng      *rand.Rand
	episodes []*episode
	pending  []event
	seq      uint64
	conn     uint64
	seenEP   map[string]bool
	seenFld  map[string]bool
}

func newGen(seed uint64, episodes []*episode) *gen {
	return &gen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), episodes: episodes,
		seenEP: map[string]bool{}, seenFld: map[string]bool{}}
}

// diurnal is the daily rhythm: busiest mid-afternoon, quietest at night
// (a factor from 0.4 to 1.6), slightly quieter at weekends.
func diurnal(t time.Time) float64 {
	h := float64(t.Hour()) + float64(t.Minute())/60
	f := 1 + 0.6*math.Sin(2*math.Pi*(h-9)/24)
	if wd := t.Weekday(); wd == time.Saturday || wd == time.Sunday {
		f *= 0.8
	}
	return f
}

func (g *gen) poisson(l float64) int {
	if l <= 0 {
		return 0
	}
	if l > 30 {
		return max(0, int(math.Round(l+math.Sqrt(l)*g.rng.NormFloat64())))
	}
	L, k, p := math.Exp(-l), 0, 1.0
	for {
		p *= g.rng.Float64()
		if p <= L {
			return k
		}
		k++
	}
}

func (g *gen) at(m time.Time) time.Time {
	return m.Add(time.Duration(g.rng.Int64N(int64(time.Minute))))
}

// minute generates the events of the minute starting at m, sorted by time.
func (g *gen) minute(m time.Time) []event {
	evs := g.pending[:0]
	f := diurnal(m)
	for i := range routes {
		r := &routes[i]
		n := g.poisson(r.rate * f)
		for j := 0; j < n; j++ {
			e := event{t: g.at(m), r: r, rIdx: i, who: r.who}
			switch r.who {
			case user:
				e.client = g.rng.IntN(nUsers)
			case admin:
				e.client = g.rng.IntN(nAdmins)
			default:
				e.client = g.rng.IntN(nIPs)
			}
			evs = append(evs, e)
		}
	}
	var active []*episode
	for _, ep := range g.episodes {
		if !m.Before(ep.start) && m.Before(ep.end) {
			active = append(active, ep)
		}
	}
	for _, ep := range active {
		if ep.mod != nil {
			for k := range evs {
				ep.mod(g, &evs[k])
			}
		}
	}
	g.pending = evs
	for _, ep := range active {
		if ep.gen != nil {
			ep.gen(g, m)
		}
	}
	evs = g.pending
	kept := evs[:0]
	for _, e := range evs {
		if !e.drop {
			kept = append(kept, e)
		}
	}
	evs = kept
	g.pending = evs
	slices.SortStableFunc(evs, func(a, b event) int { return a.t.Compare(b.t) })
	return evs
}

// add queues an episode's own event.
func (g *gen) add(e event) { g.pending = append(g.pending, e) }

func routeIdx(svc, tmpl string) int {
	for i := range routes {
		if routes[i].svc == svc && routes[i].tmpl == tmpl {
			return i
		}
	}
	panic("no route " + svc + tmpl)
}

func jwtFor(sub, alg string, exp time.Time) string {
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(`{"alg":"` + alg + `","typ":"JWT"}`))
	p := enc.EncodeToString([]byte(`{"sub":"` + sub + `","exp":` + strconv.FormatInt(exp.Unix(), 10) + `}`))
	return "Bearer " + h + "." + p + ".c2ln"
}

var farFuture = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// observe turns an event into the observation the inventory would make.
func (g *gen) observe(e *event) *inventory.Observation {
	r := e.r
	svc, method, tmpl := r.svc, r.method, r.tmpl
	if e.svc != "" {
		svc = e.svc
	}
	if e.method != "" {
		method = e.method
	}
	if e.tmpl != "" {
		tmpl = e.tmpl
	}
	obs := &inventory.Observation{Time: e.t, Service: svc, Method: method, Path: tmpl,
		Classification: inventory.Documented}
	if r.class != "" {
		obs.Classification = r.class
	}
	if e.class != "" {
		obs.Classification = e.class
	}
	key := svc + " " + method + " " + tmpl
	if !g.seenEP[key] {
		g.seenEP[key] = true
		obs.NewEndpoint = true
	}
	status := 200
	path := tmpl
	var auth, identity, principal, authHeader string
	var roles []string
	ip := netip.AddrFrom4([4]byte{10, 1, byte(e.client / 250), byte(e.client%250 + 1)})
	switch e.who {
	case user:
		principal = "user-" + strconv.Itoa(e.client)
		identity, auth, roles = "jwt:"+principal, "jwt", []string{"user"}
		authHeader = jwtFor(principal, "HS256", farFuture)
		ip = netip.AddrFrom4([4]byte{10, 2, byte(e.client / 250), byte(e.client%250 + 1)})
	case admin:
		principal = "admin-" + strconv.Itoa(e.client)
		identity, auth, roles = "jwt:"+principal, "jwt", []string{"admin"}
		authHeader = jwtFor(principal, "HS256", farFuture)
		ip = netip.AddrFrom4([4]byte{10, 3, 0, byte(e.client + 1)})
	default:
		identity, auth = "ip:"+ip.String(), "none"
	}
	if e.identity != "" {
		identity = e.identity
		principal = e.identity
	}
	if e.auth != "" {
		auth = e.auth
	}
	if e.roles != nil {
		roles = e.roles
	}
	if e.authHeader != "" {
		authHeader = e.authHeader
	}
	if auth == "none" {
		authHeader, roles, principal = "", nil, ""
	}
	obs.Identity, obs.Auth, obs.Principal, obs.Roles = identity, auth, principal, roles

	// Path parameters: users touch their own objects, returned to them by
	// their order listing.
	var ids []string
	if r.param != "" || e.params != nil {
		var v string
		switch r.param {
		case "userId":
			v = strconv.Itoa(e.client)
		case "orderId":
			v = strconv.Itoa(100000 + e.client*10 + g.rng.IntN(5))
		case "productId":
			v = strconv.Itoa(1 + g.rng.IntN(2000))
		case "itemId":
			v = strconv.Itoa(1 + g.rng.IntN(500))
		}
		obs.PathParams = map[string]string{r.param: v}
		if e.params != nil {
			obs.PathParams = e.params
		}
		for name, val := range obs.PathParams {
			path = replaceParam(path, name, val)
		}
	}
	if tmpl == "/users/{userId}/orders" && e.who == user {
		for k := 0; k < 5; k++ {
			ids = append(ids, strconv.Itoa(100000+e.client*10+k))
		}
	}
	obs.ResponseIDs = ids
	if r.who == login {
		obs.LoginLike = true
		if g.rng.Float64() < 0.02 || e.loginFail {
			status = 401
			obs.AuthFailed = true
		}
	}
	if e.status != 0 {
		status = e.status
	}
	// a steady background of 0.5% 5xx
	if status == 200 && g.rng.Float64() < 0.005 {
		status = 503
	}
	obs.ResponseSensitive = r.sensitive
	if e.sensitive != nil {
		obs.ResponseSensitive = e.sensitive
	}
	if len(r.fields) > 0 {
		for _, f := range r.fields {
			if !g.seenFld[key+f] {
				g.seenFld[key+f] = true
				obs.NewFields = append(obs.NewFields, f)
			}
		}
	}
	for _, f := range e.newFields {
		if !g.seenFld[key+f] {
			g.seenFld[key+f] = true
			obs.NewFields = append(obs.NewFields, f)
		}
	}
	lat := r.latency
	if e.latency != 0 {
		lat = e.latency
	}
	lat *= math.Exp(0.35 * g.rng.NormFloat64())
	size := r.size
	if e.size != 0 {
		size = e.size
	}
	size *= math.Exp(0.3 * g.rng.NormFloat64())
	if status >= 400 {
		size = 120
	}
	if e.path != "" {
		path = e.path
	}
	g.seq++
	g.conn++
	reqStart := e.t
	reqEnd := reqStart.Add(200 * time.Microsecond)
	respStart := reqEnd.Add(time.Duration(lat * float64(time.Second)))
	mirror := "span-a"
	if svc == svcAPI {
		mirror = "span-b"
	}
	if e.mirror != "" {
		mirror = e.mirror
	}
	tx := &wire.Transaction{
		SensorID: "s1", Seq: g.seq, ConnID: g.conn,
		Client: netip.AddrPortFrom(ip, uint16(40000+g.conn%20000)), Server: netip.MustParseAddrPort("10.9.0.1:443"),
		Mirror:   wire.Mirror{Source: mirror},
		Protocol: "http/1.1", RequestStart: reqStart, RequestEnd: reqEnd, ResponseStart: respStart,
		ResponseEnd: respStart.Add(time.Millisecond), Method: method, Host: svc, Path: path, Query: e.query,
		Version: "HTTP/1.1", Status: status, ResponseBodyLen: int64(size), ResponseBodyWireLen: int64(size),
		RequestBody: e.body, RequestBodyLen: int64(len(e.body)), Flags: e.flags,
	}
	tx.RequestHeaders = []wire.Header{{Name: "Host", Value: svc}, {Name: "User-Agent", Value: "sim/1.0"}, {Name: "Accept", Value: "application/json"}}
	if authHeader != "" {
		tx.RequestHeaders = append(tx.RequestHeaders, wire.Header{Name: "Authorization", Value: authHeader})
	}
	if len(e.body) > 0 {
		tx.RequestContentType = "application/json"
		tx.RequestHeaders = append(tx.RequestHeaders, wire.Header{Name: "Content-Type", Value: "application/json"})
	}
	if r.query && e.query == "" {
		tx.Query = "q=" + []string{"red+shoes", "laptop", "coffee+mug", "garden+chair", "usb-c+cable"}[g.rng.IntN(5)]
	}
	obs.Tx = tx
	return obs
}

func replaceParam(tmpl, name, val string) string {
	p := "{" + name + "}"
	for i := 0; i+len(p) <= len(tmpl); i++ {
		if tmpl[i:i+len(p)] == p {
			return tmpl[:i] + val + tmpl[i+len(p):]
		}
	}
	return tmpl
}

// scenario builds the labelled episodes, one every 90 minutes from
// simStart+2 days, 06:00.
func scenario() []*episode {
	var eps []*episode
	t := simStart.Add(48*time.Hour + 6*time.Hour)
	next := func(typ, svc, path, client string, d time.Duration) *episode {
		e := &episode{typ: typ, svc: svc, path: path, client: client, start: t, end: t.Add(d)}
		eps = append(eps, e)
		t = t.Add(90 * time.Minute)
		return e
	}
	every := func(n int) func(g *gen, m time.Time, f func(e *event)) {
		return func(g *gen, m time.Time, f func(e *event)) {
			for i := 0; i < n; i++ {
				e := event{t: m.Add(time.Duration(i) * time.Minute / time.Duration(n))}
				f(&e)
				g.add(e)
			}
		}
	}
	shop := func(tmpl string) (*route, int) { i := routeIdx(svcShop, tmpl); return &routes[i], i }

	// shadow endpoint: an undocumented debug export starts answering.
	e := next(anomaly.TypeShadowEndpoint, svcShop, "/internal/debug/export", "", 10*time.Minute)
	e.gen = func(g *gen, m time.Time) {
		every(1)(g, m, func(ev *event) {
			ev.r, ev.who, ev.client = &routes[0], public, 7
			ev.tmpl, ev.path, ev.class, ev.size = "/internal/debug/export", "/internal/debug/export", inventory.Shadow, 90000
		})
	}
	// zombie: the deprecated v1 endpoint is called.
	e = next(anomaly.TypeZombieCall, svcShop, "/v1/legacy", "", 5*time.Minute)
	e.gen = func(g *gen, m time.Time) {
		every(1)(g, m, func(ev *event) {
			ev.r, ev.who, ev.client = &routes[0], public, 9
			ev.tmpl, ev.path, ev.class = "/v1/legacy", "/v1/legacy", inventory.Zombie
		})
	}
	// rate spike: product listing ×8 from many clients.
	e = next(anomaly.TypeRateSpike, svcShop, "/products", "", 15*time.Minute)
	e.gen = func(g *gen, m time.Time) {
		r, i := shop("/products")
		n := g.poisson(7 * r.rate * diurnal(m))
		for k := 0; k < n; k++ {
			g.add(event{t: g.at(m), r: r, rIdx: i, who: public, client: g.rng.IntN(nIPs)})
		}
	}
	// rate drop: product detail is down (no traffic reaches it).
	e = next(anomaly.TypeRateDrop, svcShop, "/products/{productId}", "", 20*time.Minute)
	e.mod = func(g *gen, ev *event) {
		if ev.r.tmpl == "/products/{productId}" {
			ev.drop = true
		}
	}
	// error surge: order listing answers 5xx 40% of the time.
	e = next(anomaly.TypeErrorSurge, svcShop, "/users/{userId}/orders", "", 15*time.Minute)
	e.mod = func(g *gen, ev *event) {
		if ev.r.tmpl == "/users/{userId}/orders" && g.rng.Float64() < 0.4 {
			ev.status = 503
		}
	}
	// latency regression: product listing five times slower.
	e = next(anomaly.TypeLatencyRegression, svcShop, "/products", "", 15*time.Minute)
	e.mod = func(g *gen, ev *event) {
		if ev.r.tmpl == "/products" {
			ev.latency = 0.25
		}
	}
	// unusual response sizes: account answers 100× larger half the time.
	e = next(anomaly.TypeResponseSize, svcShop, "/account", "", 10*time.Minute)
	e.mod = func(g *gen, ev *event) {
		if ev.r.tmpl == "/account" && g.rng.Float64() < 0.5 {
			ev.size = 150000
		}
	}
	// brute force: one address, 20 failed logins a minute.
	e = next(anomaly.TypeCredentialStuffing, svcShop, "", "ip:10.66.0.1", 10*time.Minute)
	e.gen = func(g *gen, m time.Time) {
		r, i := shop("/login")
		every(20)(g, m, func(ev *event) {
			ev.r, ev.rIdx, ev.who, ev.identity, ev.auth, ev.loginFail = r, i, login, "ip:10.66.0.1", "none", true
		})
	}
	// credential stuffing spread over many addresses.
	e = next(anomaly.TypeCredentialStuffing, svcShop, "", "", 10*time.Minute)
	e.gen = func(g *gen, m time.Time) {
		r, i := shop("/login")
		every(100)(g, m, func(ev *event) {
			ev.r, ev.rIdx, ev.who, ev.loginFail = r, i, login, true
			ev.identity = fmt.Sprintf("ip:10.77.%d.%d", g.rng.IntN(4), g.rng.IntN(250))
			ev.auth = "none"
		})
	}
	// BOLA: one user walks order ids in sequence.
	e = next(anomaly.TypeBOLAEnumeration, svcShop, "", "jwt:user-13", 10*time.Minute)
	next0 := 500000
	e.gen = func(g *gen, m time.Time) {
		r, i := shop("/orders/{orderId}")
		every(30)(g, m, func(ev *event) {
			ev.r, ev.rIdx, ev.who, ev.client = r, i, user, 13
			ev.params = map[string]string{"orderId": strconv.Itoa(next0)}
			next0++
			if next0%3 == 0 {
				ev.status = 404
			}
		})
	}
	// BFLA: a user token lists all users on the admin endpoint.
	e = next(anomaly.TypeBFLA, svcShop, "", "jwt:user-21", 10*time.Minute)
	e.gen = func(g *gen, m time.Time) {
		r, i := shop("/admin/users")
		every(2)(g, m, func(ev *event) { ev.r, ev.rIdx, ev.who, ev.client = r, i, user, 21 })
	}
	// scraping: one address pulls the product catalogue.
	e = next(anomaly.TypeScraping, svcShop, "", "ip:10.88.0.5", 10*time.Minute)
	e.gen = func(g *gen, m time.Time) {
		r, i := shop("/products/{productId}")
		pid := 0
		every(300)(g, m, func(ev *event) {
			pid++
			ev.r, ev.rIdx, ev.who, ev.identity, ev.auth = r, i, public, "ip:10.88.0.5", "none"
			ev.params = map[string]string{"productId": strconv.Itoa(pid)}
		})
	}
	// exfiltration: an admin token pulls large user exports.
	e = next(anomaly.TypeDataExfiltration, svcShop, "", "jwt:admin-2", 10*time.Minute)
	e.gen = func(g *gen, m time.Time) {
		r, i := shop("/admin/users")
		every(6)(g, m, func(ev *event) { ev.r, ev.rIdx, ev.who, ev.client, ev.size = r, i, admin, 2, 5e6 })
	}
	// sensitive data newly in responses: card numbers on /account.
	e = next(anomaly.TypeSensitiveDataExposure, svcShop, "/account", "", 10*time.Minute)
	e.mod = func(g *gen, ev *event) {
		if ev.r.tmpl == "/account" {
			ev.sensitive = []string{"email", "card"}
		}
	}
	// sensitive data served unauthenticated: product detail leaks emails.
	e = next(anomaly.TypeSensitiveDataExposure, svcShop, "/products/{productId}", "", 10*time.Minute)
	e.mod = func(g *gen, ev *event) {
		if ev.r.tmpl == "/products/{productId}" && g.rng.Float64() < 0.3 {
			ev.sensitive = []string{"email"}
		}
	}
	// unauthenticated access succeeding on order detail.
	e = next(anomaly.TypeUnauthenticatedAccess, svcShop, "/orders/{orderId}", "", 10*time.Minute)
	e.gen = func(g *gen, m time.Time) {
		r, i := shop("/orders/{orderId}")
		every(2)(g, m, func(ev *event) {
			ev.r, ev.rIdx, ev.who, ev.client, ev.auth, ev.identity = r, i, user, 40, "none", "ip:10.99.0.3"
		})
	}
	// injection payloads in the search query and an order body.
	e = next(anomaly.TypeInjectionAttempt, svcShop, "", "ip:10.55.0.9", 6*time.Minute)
	payloads := []string{"q=1%27%20OR%20%271%27=%271", "q=%3Cscript%3Ealert(1)%3C/script%3E",
		"q=../../../../etc/passwd", "q=x;cat%20/etc/passwd", "q=http://169.254.169.254/latest/meta-data/"}
	pi := 0
	e.gen = func(g *gen, m time.Time) {
		r, i := shop("/search")
		every(4)(g, m, func(ev *event) {
			ev.r, ev.rIdx, ev.who, ev.identity, ev.auth = r, i, public, "ip:10.55.0.9", "none"
			ev.query = payloads[pi%len(payloads)]
			pi++
		})
	}
	// schema drift: order responses gain a field and retype another.
	e = next(anomaly.TypeSchemaDrift, svcShop, "/orders", "", 10*time.Minute)
	e.mod = func(g *gen, ev *event) {
		if ev.r.tmpl == "/orders" && ev.r.method == "POST" {
			ev.newFields = []string{"/internal_cost:number", "/qty:string"}
		}
	}
	// JWT alg none accepted on /account.
	e = next(anomaly.TypeJWTWeakness, svcShop, "/account", "", 10*time.Minute)
	e.gen = func(g *gen, m time.Time) {
		r, i := shop("/account")
		every(1)(g, m, func(ev *event) {
			ev.r, ev.rIdx, ev.who, ev.client = r, i, user, 0
			ev.identity, ev.authHeader = "jwt:forged", jwtFor("user-0", "none", farFuture)
		})
	}
	// JWT expired yesterday still accepted on order listing.
	e = next(anomaly.TypeJWTWeakness, svcShop, "/users/{userId}/orders", "", 10*time.Minute)
	e.gen = func(g *gen, m time.Time) {
		r, i := shop("/users/{userId}/orders")
		every(1)(g, m, func(ev *event) {
			ev.r, ev.rIdx, ev.who, ev.client = r, i, user, 55
			ev.identity, ev.authHeader = "jwt:stale", jwtFor("user-55", "HS256", m.Add(-24*time.Hour))
		})
	}
	// sensor blind: a third of all traffic arrives with capture gaps.
	e = next(anomaly.TypeSensorBlind, "", "", "", 10*time.Minute)
	e.mod = func(g *gen, ev *event) {
		if g.rng.Float64() < 0.3 {
			ev.flags |= wire.FlagGap
		}
	}
	// sensor blind: the mirror session of api.example goes silent.
	e = next(anomaly.TypeSensorBlind, "", "", "", 20*time.Minute)
	e.mod = func(g *gen, ev *event) {
		if ev.r.svc == svcAPI {
			ev.drop = true
		}
	}
	return eps
}
