package analyzer

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/analyzer/template"
	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/wire"
)

var decT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// feeder sends GET calls to an engine, one second apart in packet time.
type feeder struct {
	e *Engine
	n int
}

func (f *feeder) get(host string, paths ...string) {
	for _, p := range paths {
		f.n++
		f.e.Process(&wire.Transaction{Host: host, Method: "GET", Path: p, Status: 200, RequestStart: decT0.Add(time.Duration(f.n) * time.Second),
			Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(f.n >> 8), byte(f.n)}), 40000), Server: netip.MustParseAddrPort("10.9.0.1:80")})
	}
}

func repeat(p string, n int) []string { return slices.Repeat([]string{p}, n) }

func ids(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s/%d", prefix, 1000+i*37))
	}
	return out
}

func names(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s/file-%c%c.pdf", prefix, 'a'+i%26, 'a'+i/26))
	}
	return out
}

// calls maps "METHOD path" to calls for one service's endpoints.
func calls(e *Engine, host string) map[string]int64 {
	out := map[string]int64{}
	for _, s := range e.Services() {
		if s.Host != host {
			continue
		}
		for _, ep := range s.Endpoints {
			out[ep.Method+" "+ep.Path] = ep.Calls
		}
	}
	return out
}

func decision(t *testing.T, s string) template.Decision {
	t.Helper()
	d, err := template.ParseDecision(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func newDecisionEngine(t *testing.T, templates ...string) (*Engine, *feeder) {
	t.Helper()
	cfg := config.Default().Analyzer
	cfg.Templates = templates
	e, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return e, &feeder{e: e}
}

// TestTemplateDecisionsRegroup: each case sends traffic, makes decisions
// on the running engine, sends more, and checks the endpoints and their
// calls.
func TestTemplateDecisionsRegroup(t *testing.T) {
	for _, c := range []struct {
		name          string
		before        []string
		decisions     []string
		after         []string
		want          map[string]int64
		absent        []string
		pinnedSources []string
	}{
		{
			name:      "merge adds the counts together",
			before:    append(append(repeat("/reports/daily", 3), repeat("/reports/weekly", 2)...), "/reports/daily/pdf"),
			decisions: []string{"merge /reports/{report}"},
			after:     []string{"/reports/yearly", "/reports/weekly/pdf"},
			want:      map[string]int64{"GET /reports/{report}": 6, "GET /reports/{report}/pdf": 2},
			absent:    []string{"GET /reports/daily", "GET /reports/weekly", "GET /reports/daily/pdf"},
		},
		{
			name:      "split separates from the decision on",
			before:    append(names("/users", 40), "/users/admin"), // admin merged by inference
			decisions: []string{"split /users/admin"},
			after:     append(repeat("/users/admin", 3), "/users/5"),
			want:      map[string]int64{"GET /users/{userId}": 42, "GET /users/admin": 3},
		},
		{
			name:      "a whole position split keeps its history and gets no new calls",
			before:    names("/files", 60),
			decisions: []string{"split /files/{name}"},
			after:     []string{"/files/a.pdf", "/files/a.pdf", "/files/b.pdf"},
			want:      map[string]int64{"GET /files/{fileId}": 60, "GET /files/a.pdf": 2, "GET /files/b.pdf": 1},
		},
		{
			name:          "pin wins over inference",
			before:        append(repeat("/users/me", 10), ids("/users", 40)...),
			decisions:     []string{"pin /users/{uid}"},
			after:         []string{"/users/me", "/users/7"},
			want:          map[string]int64{"GET /users/{uid}": 52},
			absent:        []string{"GET /users/me", "GET /users/{userId}"},
			pinnedSources: []string{"GET /users/{uid}"},
		},
		{
			// The pin merged /users/me's first call; the split counts from
			// its own decision on.
			name:      "a split value under a pin",
			before:    []string{"/users/me", "/users/1", "/users/2"},
			decisions: []string{"pin /users/{uid}", "split /users/me"},
			after:     []string{"/users/me", "/users/3"},
			want:      map[string]int64{"GET /users/{uid}": 4, "GET /users/me": 1},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, f := newDecisionEngine(t)
			f.get("shop.example", c.before...)
			for _, s := range c.decisions {
				if added, err := e.AddTemplate(decision(t, s)); err != nil || !added {
					t.Fatalf("AddTemplate(%s): %v %v", s, added, err)
				}
			}
			f.get("shop.example", c.after...)
			got := calls(e, "shop.example")
			for k, n := range c.want {
				if got[k] != n {
					t.Errorf("%s: %d calls, want %d (endpoints %v)", k, got[k], n, got)
				}
			}
			for _, k := range c.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s still listed: %v", k, got)
				}
			}
			var total int64
			for _, n := range got {
				total += n
			}
			if want := int64(len(c.before) + len(c.after)); total != want {
				t.Errorf("%d calls over all endpoints, want %d: %v", total, want, got)
			}
			if n := len(e.services["shop.example"].endpoints); n != len(got) {
				t.Errorf("%d endpoint entries for %d endpoints listed", n, len(got))
			}
			for _, s := range e.Services() {
				for _, ep := range s.Endpoints {
					if !slices.Contains(c.pinnedSources, ep.Method+" "+ep.Path) {
						continue
					}
					if d, ok := ep.Detail.(inventory.Detail); !ok || d.Template.Source != "pinned" {
						t.Errorf("%s: template evidence %+v, want source pinned", ep.Path, ep.Detail)
					}
				}
			}
		})
	}
}

func TestTemplateDecisionScope(t *testing.T) {
	e, f := newDecisionEngine(t)
	for _, h := range []string{"a.example", "b.example", "pay.example:8443"} {
		f.get(h, repeat("/reports/daily", 2)...)
		f.get(h, "/reports/weekly")
	}
	for _, s := range []string{"merge /reports/{r} on a.example", "merge /reports/{report} on pay.example"} {
		if _, err := e.AddTemplate(decision(t, s)); err != nil {
			t.Fatal(err)
		}
	}
	f.get("c.example", "/reports/daily") // a service that appears later
	for h, want := range map[string]string{"a.example": "GET /reports/{r}", "pay.example:8443": "GET /reports/{report}", "b.example": "GET /reports/daily", "c.example": "GET /reports/daily"} {
		if _, ok := calls(e, h)[want]; !ok {
			t.Errorf("%s: no %s in %v", h, want, calls(e, h))
		}
	}
	if _, err := e.AddTemplate(decision(t, "split /users/me")); err != nil {
		t.Fatal(err)
	}
	listed := func(host string) []string {
		var out []string
		for _, d := range e.Templates(host) {
			out = append(out, d.String())
		}
		return out
	}
	if got, want := listed("pay.example:8443"), []string{"merge /reports/{report} on pay.example", "split /users/me"}; !slices.Equal(got, want) {
		t.Errorf("Templates(pay.example:8443) = %q, want %q", got, want)
	}
	if got, want := listed(""), []string{"split /users/me"}; !slices.Equal(got, want) {
		t.Errorf("Templates(\"\") = %q, want %q", got, want)
	}
}

func TestTemplateDecisionsFromConfig(t *testing.T) {
	e, f := newDecisionEngine(t, "/orders/{orderId}", "GET /carts/{cartId}", "split /users/me", "merge /reports/{report} on shop.example")
	f.get("shop.example", "/orders/abc", "/carts/x", "/reports/daily", "/users/me")
	f.get("shop.example", ids("/users", 40)...)
	got := calls(e, "shop.example")
	for _, k := range []string{"GET /orders/{orderId}", "GET /carts/{cartId}", "GET /reports/{report}", "GET /users/me", "GET /users/{userId}"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no %s in %v", k, got)
		}
	}
	ds := e.Templates("shop.example")
	if len(ds) != 4 || !ds[0].Config || ds[1].Action != template.Pin || ds[1].Template != "/carts/{cartId}" {
		t.Fatalf("configured decisions listed as %+v", ds)
	}
	if err := e.RemoveTemplate(ds[2].Decision); !errors.Is(err, ErrTemplateFromConfig) {
		t.Errorf("removing a configured decision: %v", err)
	}
	if len(e.OperatorTemplates()) != 0 {
		t.Errorf("configured decisions offered for saving: %v", e.OperatorTemplates())
	}
}

func TestBadConfiguredDecisions(t *testing.T) {
	for _, c := range []struct {
		templates []string
		says      string
	}{
		{[]string{"/ok/{id}", "merge /reports/daily"}, "analyzer.templates[1]: invalid template decision: merge /reports/daily: the template must end in the parameter"},
		{[]string{"split /files/{name}", "pin /files/{f}"}, "analyzer.templates[1]: template decision conflicts"},
		{[]string{"fold /x"}, `analyzer.templates[0]: invalid template decision: "fold /x": action "fold"`},
	} {
		cfg := config.Default().Analyzer
		cfg.Templates = c.templates
		if _, err := New(Options{Config: cfg}); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%q: %v, want an error saying %q", c.templates, err, c.says)
		}
	}
}

func TestTemplateDecisionErrors(t *testing.T) {
	e, _ := newDecisionEngine(t)
	if _, err := e.AddTemplate(template.Decision{Action: template.Merge, Template: "/reports/daily"}); !errors.Is(err, template.ErrDecision) {
		t.Errorf("invalid decision: %v", err)
	}
	if _, err := e.AddTemplate(decision(t, "split /files/{name}")); err != nil {
		t.Fatal(err)
	}
	if added, err := e.AddTemplate(decision(t, "split /files/{name}")); added || err != nil {
		t.Errorf("the same decision again: added %v, %v", added, err)
	}
	if _, err := e.AddTemplate(decision(t, "merge /files/{file}")); !errors.Is(err, ErrTemplateConflict) {
		t.Errorf("contradicting decision: %v", err)
	}
	if err := e.RemoveTemplate(decision(t, "split /nothing/here")); !errors.Is(err, ErrUnknownTemplate) {
		t.Errorf("removing an unknown decision: %v", err)
	}
	if err := e.RemoveTemplate(decision(t, "split /files/{name}")); err != nil {
		t.Fatal(err)
	}
	if len(e.Templates("x")) != 0 {
		t.Errorf("left after removal: %v", e.Templates("x"))
	}
}

// TestTemplateDecisionsSurviveSnapshot: the decisions travel in the
// checkpoint, and the restored engine routes later traffic by them.
func TestTemplateDecisionsSurviveSnapshot(t *testing.T) {
	e, f := newDecisionEngine(t)
	f.get("shop.example", append(ids("/users", 40), names("/files", 60)...)...)
	for _, s := range []string{"split /users/admin", "split /files/{name}", "merge /reports/{report} on shop.example"} {
		if _, err := e.AddTemplate(decision(t, s)); err != nil {
			t.Fatal(err)
		}
	}
	f.get("shop.example", "/users/admin", "/files/a.pdf", "/reports/daily")
	b, err := e.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	e2, f2 := newDecisionEngine(t)
	if err := e2.Restore(b); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e2.OperatorTemplates(), e.OperatorTemplates()) {
		t.Fatalf("decisions after restore %v, before %v", e2.OperatorTemplates(), e.OperatorTemplates())
	}
	f2.get("shop.example", "/users/admin", "/users/99", "/files/a.pdf", "/files/zz-new.pdf", "/reports/weekly")
	got := calls(e2, "shop.example")
	for k, n := range map[string]int64{"GET /users/admin": 2, "GET /users/{userId}": 41, "GET /files/a.pdf": 2, "GET /files/zz-new.pdf": 1,
		"GET /files/{fileId}": 60, "GET /reports/{report}": 2} {
		if got[k] != n {
			t.Errorf("%s: %d calls after restore, want %d (%v)", k, got[k], n, got)
		}
	}
	// The older checkpoint form, a bare list of services, still restores.
	bare, err := json.Marshal(e.Services())
	if err != nil {
		t.Fatal(err)
	}
	e3, _ := newDecisionEngine(t)
	if err := e3.Restore(bare); err != nil || len(calls(e3, "shop.example")) == 0 {
		t.Fatalf("bare checkpoint: %v", err)
	}
}

func TestSetTemplates(t *testing.T) {
	e, _ := newDecisionEngine(t, "split /users/me")
	a, b, c := decision(t, "merge /a/{x}"), decision(t, "split /b/c"), decision(t, "pin /d/{e}")
	if err := e.SetTemplates([]template.Decision{a, b}); err != nil {
		t.Fatal(err)
	}
	if err := e.SetTemplates([]template.Decision{b, c, decision(t, "split /users/me"), {Action: "drop", Template: "/x"}}); !errors.Is(err, template.ErrDecision) {
		t.Errorf("an invalid stored decision: %v", err)
	}
	if got, want := e.OperatorTemplates(), []template.Decision{b, c}; !slices.Equal(got, want) {
		t.Errorf("after SetTemplates: %v, want %v", got, want)
	}
}
