package detect

import (
	"testing"
	"time"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/wire"
)

// call is one transaction as the engine hands it to the detectors.
type call struct {
	svc, path string
	class     inventory.Classification
	identity  string
	auth      string // none, jwt
	roles     []string
	status    int
	bytes     int64
	sensitive []string
}

func (c call) observe(s *Set, t time.Time) []anomaly.Anomaly {
	tx := &wire.Transaction{RequestStart: t, RequestEnd: t, ResponseStart: t.Add(20 * time.Millisecond),
		Method: "GET", Host: c.svc, Path: c.path, Status: c.status, ResponseBodyLen: c.bytes}
	return s.Observe(&inventory.Observation{Tx: tx, Time: t, Service: c.svc, Method: "GET", Path: c.path,
		Classification: c.class, Identity: c.identity, Auth: c.auth, Roles: c.roles, ResponseSensitive: c.sensitive})
}

// every calls each of calls once a minute from..to.
func every(s *Set, from, to time.Time, calls ...call) []anomaly.Anomaly {
	var out []anomaly.Anomaly
	for m := from; m.Before(to); m = m.Add(time.Minute) {
		for i, c := range calls {
			out = append(out, c.observe(s, m.Add(time.Duration(i)*time.Second))...)
		}
	}
	return out
}

func newTestSet(t *testing.T) *Set {
	t.Helper()
	dc, ac := testConfig()
	dc.PayloadEngine = "off"
	s, err := New(dc, ac, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func opened(out []anomaly.Anomaly, typ string) []anomaly.Anomaly {
	var r []anomaly.Anomaly
	for _, a := range out {
		if a.Type == typ && a.Event == anomaly.EventOpened {
			r = append(r, a)
		}
	}
	return r
}

// A deprecated endpoint in use since the start and a login that hands
// out tokens without credentials are standing conditions (inventory
// findings), not incidents; a deprecated endpoint that wakes up after
// learning, and a class an endpoint never served without credentials,
// are.
func TestStandingConditionsAreNotIncidents(t *testing.T) {
	s := newTestSet(t)
	zombie := call{svc: "h", path: "/v1/x", class: inventory.Zombie, identity: "ip:a", auth: "none", status: 200, bytes: 100}
	login := call{svc: "h", path: "/login", class: inventory.Documented, identity: "ip:b", auth: "none", status: 200, bytes: 100,
		sensitive: []string{"token"}}
	reviews := call{svc: "h", path: "/reviews", class: inventory.Documented, identity: "ip:c", auth: "none", status: 200, bytes: 100}
	out := every(s, simStart, simStart.Add(26*time.Hour), zombie, login, reviews)
	for _, typ := range []string{anomaly.TypeZombieCall, anomaly.TypeSensitiveDataExposure} {
		if got := opened(out, typ); len(got) > 0 {
			t.Errorf("%s opened on a standing condition: %+v", typ, got[0])
		}
	}

	woken := call{svc: "h", path: "/v0/y", class: inventory.Zombie, identity: "ip:d", auth: "none", status: 200, bytes: 100}
	leaking := reviews
	leaking.sensitive = []string{"email", "card"}
	out = every(s, simStart.Add(26*time.Hour), simStart.Add(27*time.Hour), zombie, login, woken, leaking)
	if z := opened(out, anomaly.TypeZombieCall); len(z) != 1 || z[0].Path != "/v0/y" {
		t.Errorf("zombie_call incidents %+v, want one on /v0/y", z)
	}
	sd := opened(out, anomaly.TypeSensitiveDataExposure)
	if len(sd) != 1 || sd[0].Path != "/reviews" || sd[0].Details["reason"] != "unauthenticated" || sd[0].Details["class"] != "email,card" {
		t.Errorf("sensitive_data_exposure incidents %+v, want one on /reviews for email,card without credentials", sd)
	}
}

// A client is judged per service: bulk downloads from one service raise
// data_exfiltration there, and the same identity's small calls to
// another service raise nothing on it.
func TestClientJudgedPerService(t *testing.T) {
	s := newTestSet(t)
	var normal []call
	for i := 0; i < 20; i++ {
		normal = append(normal, call{svc: "h", path: "/x", class: inventory.Documented, identity: "ip:" + string(rune('a'+i)),
			auth: "none", status: 200, bytes: 2000})
	}
	every(s, simStart, simStart.Add(26*time.Hour), normal...)
	bulk := call{svc: "h", path: "/x", class: inventory.Documented, identity: "ip:z", auth: "none", status: 200, bytes: 16 << 20}
	small := call{svc: "g", path: "/y", class: inventory.Documented, identity: "ip:z", auth: "none", status: 200, bytes: 300}
	out := every(s, simStart.Add(26*time.Hour), simStart.Add(26*time.Hour+10*time.Minute), append(normal, bulk, small)...)
	ex := opened(out, anomaly.TypeDataExfiltration)
	if len(ex) != 1 || ex[0].Host != "h" || ex[0].Client != "ip:z" {
		t.Fatalf("data_exfiltration incidents %+v, want one on h for ip:z", ex)
	}
}

// An ordinary user on a service its kind never called (the admin API)
// is function-level authorisation gone wrong: the kind is known from the
// other services, the endpoint from its admins.
func TestBFLAOnAServiceTheKindNeverCalled(t *testing.T) {
	s := newTestSet(t)
	admin := call{svc: "adm", path: "/admin/users", class: inventory.Documented, identity: "fp:admin", auth: "jwt",
		roles: []string{"admin"}, status: 200, bytes: 300}
	user := call{svc: "h", path: "/x", class: inventory.Documented, identity: "fp:user", auth: "jwt",
		roles: []string{"user"}, status: 200, bytes: 300}
	out := every(s, simStart, simStart.Add(26*time.Hour), admin, user)
	if b := opened(out, anomaly.TypeBFLA); len(b) > 0 {
		t.Fatalf("bfla while learning: %+v", b[0])
	}
	intruder := user
	intruder.svc, intruder.path = "adm", "/admin/users"
	out = every(s, simStart.Add(26*time.Hour), simStart.Add(26*time.Hour+10*time.Minute), admin, user, intruder)
	b := opened(out, anomaly.TypeBFLA)
	if len(b) != 1 || b[0].Host != "adm" || b[0].Client != "fp:user" || b[0].Severity != anomaly.High || b[0].Details["kind"] != "role:user" {
		t.Fatalf("bfla incidents %+v, want one high on adm for fp:user of kind role:user", b)
	}
	if b[0].Opened.Sub(simStart.Add(26*time.Hour)) > time.Minute {
		t.Errorf("bfla opened at %s, not on the first call", b[0].Opened)
	}
}
