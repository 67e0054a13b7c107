package simulate

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"time"
)

func (g *gen) service(host string) *Service {
	for i := range g.services {
		if g.services[i].Host == host {
			return &g.services[i]
		}
	}
	return nil
}

func (s *Service) endpoint(method, tmpl string) *Endpoint {
	for i := range s.Endpoints {
		if s.Endpoints[i].Method == method && TruthTemplate(s.Endpoints[i].Template) == tmpl {
			return &s.Endpoints[i]
		}
	}
	panic(fmt.Sprintf("simulate: %s has no endpoint %s %s", s.Host, method, tmpl))
}

// effect changes the ordinary traffic of an endpoint (or of a whole
// service, or of everything when host is "") for a while: silence, more
// calls, errors, slowness, other responses, capture loss.
type effect struct {
	host, method, tmpl string
	start, end         time.Time
	// rate multiplies the endpoint's call rate: 0 silences it, above 1
	// adds calls (1: unchanged).
	rate float64
	// errShare of the calls get status (error surge).
	errShare float64
	status   int
	latency  float64 // latency multiplier (0: unchanged)
	resp     func(r *rand.Rand, params map[string]string) map[string]any
	lossRate float64 // share of calls losing bytes to the capture
	episode  string
}

func (f *effect) applies(host string, e *Endpoint, at time.Time) bool {
	if at.Before(f.start) || !at.Before(f.end) {
		return false
	}
	if f.host == "" {
		return true
	}
	return f.host == host && (f.method == "" || f.method == e.Method && f.tmpl == TruthTemplate(e.Template))
}

func (f *effect) apply(r *rand.Rand, spec *callSpec) {
	spec.episode = f.episode
	if f.errShare > 0 && r.Float64() < f.errShare {
		spec.status = f.status
	}
	if f.latency > 0 {
		spec.latencyMul = f.latency
	}
	if f.resp != nil {
		spec.resp = f.resp
	}
	if f.lossRate > 0 && r.Float64() < f.lossRate {
		spec.loss = true
	}
}

// episodeDay is the packet time after the baseline days of the anomalies
// scenario: one episode every 35 minutes from 10:00, none overlapping.
const (
	episodeDay     = 11 * time.Hour
	episodeSpacing = 35 * time.Minute
)

// planEpisodes schedules the attacks of the scenario and labels them.
func (g *gen) planEpisodes() {
	switch g.o.Scenario {
	case "demo":
		at := func(f float64) time.Time { return g.o.Start.Add(time.Duration(f * float64(g.o.Duration))) }
		g.attacks([]time.Time{at(0.3), at(0.45), at(0.6), at(0.75)})
	case "anomalies":
		g.anomalyEpisodes()
	}
	sort.SliceStable(g.pending, func(i, j int) bool { return g.pending[i].Start.Before(g.pending[j].Start) })
}

// attacker is a client of its own (own connections and ports), so the
// episodes planned ahead do not disturb the ordinary clients' connections.
func (g *gen) attacker(ip string, like *client, port uint16) *client {
	if like != nil {
		return &client{ip: like.ip, sub: like.sub, role: like.role, jwt: like.jwt, apiKey: like.apiKey, cookie: like.cookie,
			agent: like.agent, nextPort: port, conns: map[string]*connState{}}
	}
	return &client{ip: netip.MustParseAddr(ip), role: "anon", nextPort: port, conns: map[string]*connState{},
		agent: "python-requests/2.31.0"}
}

// attacks plans the four attacks of the demo at the given times:
// credential stuffing, BOLA enumeration, injection, BFLA.
func (g *gen) attacks(at []time.Time) {
	bank, shop, admin := g.service("bank.example"), g.service("api.shop.example"), g.service("admin.internal")
	stuffer := g.attacker("198.51.100.23", nil, 40000)
	// Credential stuffing: one address, hundreds of failed logins.
	login := bank.endpoint("POST", "/v2/auth/login")
	start := at[0]
	for i := 0; i < 300; i++ {
		g.plan(bank, login, stuffer, start.Add(time.Duration(i)*time.Second), callSpec{status: 401,
			errBody: `{"error":"invalid credentials"}`, episode: "credential_stuffing"})
	}
	g.label("credential_stuffing", bank.Host, "POST", "/v2/auth/login", stuffer.ip.String(), start, start.Add(300*time.Second))

	// BOLA enumeration: one user walks account ids in sequence.
	thief := g.attacker("", g.users[7], 61000)
	acct := bank.endpoint("GET", "/v2/accounts/{accountId}")
	start = at[1]
	for i := 0; i < 200; i++ {
		g.plan(bank, acct, thief, start.Add(time.Duration(i)*1500*time.Millisecond),
			callSpec{params: map[string]string{"accountId": fmt.Sprint(50000 + i)}, status: 200, episode: "bola_enumeration"})
	}
	g.label("bola_enumeration", bank.Host, "GET", "/v2/accounts/{accountId}", thief.sub, start, start.Add(300*time.Second))

	// Injection attempts in a query parameter.
	list := shop.endpoint("GET", "/api/v1/products")
	start = at[2]
	payloads := []string{"q=%27%20OR%201%3D1--", "q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "q=..%2F..%2F..%2Fetc%2Fpasswd",
		"q=1%3B%20cat%20%2Fetc%2Fpasswd", "url=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F"}
	injector := g.attacker("198.51.100.77", nil, 40000)
	for i := 0; i < 40; i++ {
		g.plan(shop, list, injector, start.Add(time.Duration(i)*3*time.Second), callSpec{query: payloads[i%len(payloads)],
			status: 400, errBody: `{"error":"bad query"}`, episode: "injection_attempt"})
	}
	g.label("injection_attempt", shop.Host, "GET", "/api/v1/products", injector.ip.String(), start, start.Add(120*time.Second))

	// BFLA: an ordinary user calls the admin API and succeeds.
	intruder := g.attacker("", g.users[42], 61000)
	adm := admin.endpoint("GET", "/admin/users")
	start = at[3]
	for i := 0; i < 20; i++ {
		g.plan(admin, adm, intruder, start.Add(time.Duration(i)*10*time.Second), callSpec{status: 200, episode: "bfla",
			resp: func(r *rand.Rand, _ map[string]string) map[string]any {
				return obj("users", []any{person(r), person(r), person(r)})
			}})
	}
	g.label("bfla", admin.Host, "GET", "/admin/users", intruder.sub, start, start.Add(200*time.Second))
}

// plan builds an episode's exchange now and queues it for its time.
func (g *gen) plan(s *Service, e *Endpoint, c *client, at time.Time, spec callSpec) {
	g.pending = append(g.pending, g.call(s, e, c, at, spec))
}

func (g *gen) label(typ, host, method, path, client string, start, end time.Time) {
	g.labels = append(g.labels, Label{Type: typ, Host: host, Method: method, Path: path, Client: client, Start: start, End: end})
}

// anomalyEpisodes plans one episode of every detector type after the
// baseline days, 35 minutes apart from 10:00 of the episode day.
func (g *gen) anomalyEpisodes() {
	day := g.o.Start.Add(time.Duration(g.o.Days) * 24 * time.Hour)
	day = time.Date(day.Year(), day.Month(), day.Day(), 10, 0, 0, 0, time.UTC)
	slot := func(i int) time.Time { return day.Add(time.Duration(i) * episodeSpacing) }
	bank, shop := g.service("bank.example"), g.service("api.shop.example")
	// disturb changes ordinary traffic for a while; an effect that
	// changes nothing else silences the endpoint.
	disturb := func(typ string, s *Service, method, tmpl string, start time.Time, d time.Duration, f effect) {
		f.host, f.method, f.tmpl, f.start, f.end, f.episode = s.Host, method, tmpl, start, start.Add(d), typ
		if f.rate == 0 && (f.errShare > 0 || f.latency > 0 || f.resp != nil) {
			f.rate = 1
		}
		g.effects = append(g.effects, &f)
		g.label(typ, s.Host, method, tmpl, "", f.start, f.end)
	}
	users := func(n int) []*client {
		out := make([]*client, n)
		for i := range out {
			out[i] = g.attacker("", g.users[100+g.r.IntN(100)], uint16(58000+1000*i))
		}
		return out
	}

	// 0-3: the demo's attacks.
	g.attacks([]time.Time{slot(0), slot(1), slot(2), slot(3)})

	// 4 shadow_endpoint: an undocumented endpoint no one called before
	// starts receiving traffic (a new internal feature).
	ledger := bank.endpoint("GET", "/v2/internal/ledger/{entryId}")
	start := slot(4)
	cs := users(3)
	for i := 0; i < 60; i++ {
		g.plan(bank, ledger, cs[i%3], start.Add(time.Duration(i)*20*time.Second), callSpec{episode: "shadow_endpoint"})
	}
	g.label("shadow_endpoint", bank.Host, "GET", "/v2/internal/ledger/{entryId}", "", start, start.Add(20*time.Minute))

	// 5 zombie_call: an old app version calls a deprecated endpoint quiet
	// until then.
	old := shop.endpoint("GET", "/api/v0/orders/{orderId}")
	start = slot(5)
	cs = users(4)
	for i := 0; i < 40; i++ {
		g.plan(shop, old, cs[i%4], start.Add(time.Duration(i)*30*time.Second), callSpec{episode: "zombie_call"})
	}
	g.label("zombie_call", shop.Host, "GET", "/api/v0/orders/{orderId}", "", start, start.Add(20*time.Minute))

	// 6 rate_spike: a flash sale: eight times the product page views.
	disturb("rate_spike", shop, "GET", "/api/v1/products/{sku}", slot(6), 20*time.Minute, effect{rate: 8})
	// 7 rate_drop: the product list goes silent (a broken front end).
	disturb("rate_drop", shop, "GET", "/api/v1/products", slot(7), 30*time.Minute, effect{})
	// 8 error_surge: account reads fail with 503 for most callers.
	disturb("error_surge", bank, "GET", "/v2/accounts/{accountId}", slot(8), 20*time.Minute, effect{errShare: 0.6, status: 503})
	// 9 latency_regression: product pages twelve times slower (a cache
	// gone cold).
	disturb("latency_regression", shop, "GET", "/api/v1/products/{sku}", slot(9), 25*time.Minute, effect{latency: 12})

	// 10 scraping: a bot walks the catalogue, two product pages a second.
	scraper := g.attacker("203.0.113.50", nil, 40000)
	scraper.agent = "Mozilla/5.0 (compatible; DataHarvester/2.1)"
	prod := shop.endpoint("GET", "/api/v1/products/{sku}")
	start = slot(10)
	for i := 0; i < 1200; i++ {
		g.plan(shop, prod, scraper, start.Add(time.Duration(i)*500*time.Millisecond),
			callSpec{params: map[string]string{"sku": fmt.Sprintf("%c%c-%04d", 'A'+i/260%26, 'A'+i/10%26, i)}, status: 200, episode: "scraping"})
	}
	g.label("scraping", shop.Host, "GET", "/api/v1/products/{sku}", scraper.ip.String(), start, start.Add(10*time.Minute))

	// 11 data_exfiltration: one user pulls full statements, ~500 KB each,
	// every 2.5 s for ten minutes (about 60 MB every five minutes).
	exfil := g.attacker("", g.users[13], 61000)
	stmt := bank.endpoint("GET", "/v2/statements/{statementDate}")
	start = slot(11)
	// Four statements' bodies, shared by the calls: planned exchanges
	// wait in memory until their time.
	var statements [][]byte
	for range 4 {
		lines := make([]any, 4000)
		d := date(g.r)
		for j := range lines {
			lines[j] = obj("date", d, "amount", float64(g.r.IntN(100000))/100,
				"counterparty_iban", ibans[g.r.IntN(len(ibans))], "reference", token(g.r))
		}
		b, _ := json.Marshal(obj("date", d, "lines", lines))
		statements = append(statements, b)
	}
	for i := 0; i < 240; i++ {
		g.plan(bank, stmt, exfil, start.Add(time.Duration(i)*2500*time.Millisecond), callSpec{status: 200, episode: "data_exfiltration",
			body: statements[i%len(statements)]})
	}
	g.label("data_exfiltration", bank.Host, "GET", "/v2/statements/{statementDate}", exfil.sub, start, start.Add(10*time.Minute))

	// 12 sensitive_data_exposure: a bad deploy puts reviewers' contact
	// details and cards into an unauthenticated endpoint's responses.
	disturb("sensitive_data_exposure", shop, "GET", "/api/v1/products/{productId}/reviews", slot(12), 30*time.Minute, effect{
		resp: func(r *rand.Rand, _ map[string]string) map[string]any {
			return obj("reviews", []any{obj("rating", 1+r.IntN(5),
				"text", "call me on "+phone(r)+" or mail "+email(r)+", paid with "+cardNumbers[r.IntN(len(cardNumbers))])})
		}})

	// 13 unauthenticated_access: account reads without credentials
	// succeed (an auth bypass), from a few addresses.
	start = slot(13)
	acct := bank.endpoint("GET", "/v2/accounts/{accountId}")
	var anon []*client
	for i := 0; i < 5; i++ {
		anon = append(anon, g.attacker(fmt.Sprintf("192.0.2.%d", 10+i), nil, 40000))
	}
	for i := 0; i < 50; i++ {
		g.plan(bank, acct, anon[i%5], start.Add(time.Duration(i)*18*time.Second), callSpec{noAuth: true, status: 200,
			episode: "unauthenticated_access"})
	}
	g.label("unauthenticated_access", bank.Host, "GET", "/v2/accounts/{accountId}", "", start, start.Add(15*time.Minute))

	// 14 schema_drift: a deploy retypes amount to a string and adds a
	// field, rolled back after 30 minutes.
	disturb("schema_drift", bank, "GET", "/v2/accounts/{accountId}/transactions/{transactionId}", slot(14), 30*time.Minute, effect{
		resp: func(r *rand.Rand, p map[string]string) map[string]any {
			return obj("id", p["transactionId"], "amount", fmt.Sprintf("%.2f", float64(r.IntN(100000))/100), "currency", "EUR",
				"merchant", obj("name", slug(r), "mcc", 5000+r.IntN(999)))
		}})

	// 15 jwt_weakness: a forged token with alg "none" is accepted.
	forger := g.attacker("198.51.100.99", nil, 40000)
	forger.sub, forger.role = "user-77", "user"
	none := makeJWT(g.r, "none", "user-77", "admin", day, 24*time.Hour)
	start = slot(15)
	for i := 0; i < 30; i++ {
		g.plan(bank, stmt, forger, start.Add(time.Duration(i)*20*time.Second), callSpec{jwt: none, status: 200, episode: "jwt_weakness"})
	}
	g.label("jwt_weakness", bank.Host, "GET", "/v2/statements/{statementDate}", "user-77", start, start.Add(10*time.Minute))

	// 16 sensor_blind: the mirror loses half of every second response
	// for 20 minutes, on every service.
	start = slot(16)
	g.effects = append(g.effects, &effect{start: start, end: start.Add(20 * time.Minute), rate: 1, lossRate: 0.5, episode: "sensor_blind"})
	g.label("sensor_blind", "", "", "", "", start, start.Add(20*time.Minute))
}

// anomalyServices are the demo's services with the endpoints only the
// episodes call: a new undocumented one (shadow) and an old deprecated
// one (zombie), quiet through the baseline.
func anomalyServices() []Service {
	s := demoServices()
	for i := range s {
		switch s[i].Host {
		case "bank.example":
			s[i].Endpoints = append(s[i].Endpoints, Endpoint{Method: "GET", Template: "/v2/internal/ledger/{entryId:oid}",
				Class: "shadow", Auth: "bearer", Resp: func(r *rand.Rand, p map[string]string) map[string]any {
					return obj("id", p["entryId"], "debit", r.IntN(10000), "credit", r.IntN(10000))
				}})
		case "api.shop.example":
			s[i].Endpoints = append(s[i].Endpoints, Endpoint{Method: "GET", Template: "/api/v0/orders/{orderId:int}",
				Class: "zombie", Auth: "bearer", Resp: func(r *rand.Rand, p map[string]string) map[string]any {
					return obj("order_id", p["orderId"], "total", float64(r.IntN(50000))/100)
				}})
		}
	}
	return s
}

// benchServices: a JSON API with larger list responses, for throughput.
func benchServices() []Service {
	s := demoServices()
	for i := range s {
		s[i].RatePerMin *= 50
	}
	shop := &s[0]
	for i := range shop.Endpoints {
		e := &shop.Endpoints[i]
		if e.Template == "/api/v1/products" {
			e.Resp = func(r *rand.Rand, _ map[string]string) map[string]any {
				items := []any{}
				for i := 0; i < 20+r.IntN(30); i++ {
					items = append(items, obj("sku", sku(r), "name", slug(r), "price", float64(r.IntN(10000))/100,
						"description", slug(r)+" "+slug(r)+" "+slug(r), "tags", []any{slug(r), slug(r)}))
				}
				return obj("items", items, "page", 1+r.IntN(5), "total", 100+r.IntN(900))
			}
			e.Weight = 40
		}
	}
	return s
}
