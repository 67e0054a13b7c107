package simulate

import (
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
	return nil
}

// planEpisodes schedules the attacks of the scenario and labels them.
func (g *gen) planEpisodes() {
	var at func(frac float64) time.Time
	switch g.o.Scenario {
	case "demo", "":
		at = func(f float64) time.Time { return g.o.Start.Add(time.Duration(f * float64(g.o.Duration))) }
	case "anomalies":
		// A day of baseline first; episodes after it, hours apart.
		at = func(f float64) time.Time { return g.o.Start.Add(24*time.Hour + time.Duration(f*float64(5*time.Hour))) }
	default:
		return
	}
	bank, shop, admin := g.service("bank.example"), g.service("api.shop.example"), g.service("admin.internal")
	if bank == nil || shop == nil || admin == nil {
		return
	}
	attacker := &client{ip: netip.MustParseAddr("198.51.100.23"), role: "anon", nextPort: 40000, conns: map[string]*connState{}}
	// Credential stuffing: one address, hundreds of failed logins.
	login := bank.endpoint("POST", "/v2/auth/login")
	start := at(0.3)
	for i := 0; i < 300; i++ {
		ex := g.call(bank, login, attacker, start.Add(time.Duration(i)*time.Second), nil, "")
		ex.Status = 401
		ex.RespBody = []byte(`{"error":"invalid credentials"}`)
		g.pending = append(g.pending, ex)
	}
	g.label("credential_stuffing", bank.Host, "POST", "/v2/auth/login", attacker.ip.String(), start, start.Add(300*time.Second))

	// BOLA enumeration: one user walks account ids in sequence.
	thief := g.users[7]
	acct := bank.endpoint("GET", "/v2/accounts/{accountId}")
	start = at(0.45)
	for i := 0; i < 200; i++ {
		ex := g.call(bank, acct, thief, start.Add(time.Duration(i)*1500*time.Millisecond), map[string]string{"accountId": fmt.Sprint(50000 + i)}, "")
		ex.Status = 200
		g.pending = append(g.pending, ex)
	}
	g.label("bola_enumeration", bank.Host, "GET", "/v2/accounts/{accountId}", thief.sub, start, start.Add(300*time.Second))

	// Injection attempts in a query parameter.
	list := shop.endpoint("GET", "/api/v1/products")
	start = at(0.6)
	payloads := []string{"q=%27%20OR%201%3D1--", "q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "q=..%2F..%2F..%2Fetc%2Fpasswd", "q=1%3B%20cat%20%2Fetc%2Fpasswd"}
	for i := 0; i < 40; i++ {
		ex := g.call(shop, list, attacker, start.Add(time.Duration(i)*3*time.Second), nil, payloads[i%len(payloads)])
		ex.Status = 400
		ex.RespBody = []byte(`{"error":"bad query"}`)
		g.pending = append(g.pending, ex)
	}
	g.label("injection_attempt", shop.Host, "GET", "/api/v1/products", attacker.ip.String(), start, start.Add(120*time.Second))

	// BFLA: an ordinary user calls the admin API and succeeds.
	intruder := g.users[42]
	adm := admin.endpoint("GET", "/admin/users")
	start = at(0.75)
	for i := 0; i < 20; i++ {
		ex := g.call(admin, adm, intruder, start.Add(time.Duration(i)*10*time.Second), nil, "")
		ex.Status = 200
		ex.RespBody = []byte(`{"users":[{"email":"ann.smith1@example.com"},{"email":"bob.kim2@example.com"}]}`)
		g.pending = append(g.pending, ex)
	}
	g.label("bfla", admin.Host, "GET", "/admin/users", intruder.sub, start, start.Add(200*time.Second))

	sort.SliceStable(g.pending, func(i, j int) bool { return g.pending[i].Start.Before(g.pending[j].Start) })
}

func (g *gen) label(typ, host, method, path, client string, start, end time.Time) {
	g.labels = append(g.labels, Label{Type: typ, Host: host, Method: method, Path: path, Client: client, Start: start, End: end})
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
