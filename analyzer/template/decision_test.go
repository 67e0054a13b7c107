package template

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseDecision(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Decision
	}{
		{"/users/{userId}", Decision{Action: Pin, Template: "/users/{userId}"}},
		{"GET /users/{userId}", Decision{Action: Pin, Template: "/users/{userId}"}},
		{"pin /users/{userId}", Decision{Action: Pin, Template: "/users/{userId}"}},
		{"split /users/me", Decision{Action: Split, Template: "/users/me"}},
		{"split /files/{name}", Decision{Action: Split, Template: "/files/{name}"}},
		{"  merge   /reports/{report}  ", Decision{Action: Merge, Template: "/reports/{report}"}},
		{"merge /reports/{report} on shop.example", Decision{Action: Merge, Template: "/reports/{report}", Service: "shop.example"}},
		{"/a/{b}/c on pay.example:8443", Decision{Action: Pin, Template: "/a/{b}/c", Service: "pay.example:8443"}},
		{"pin /", Decision{Action: Pin, Template: "/"}},
		{"split /users/{user_id-2}", Decision{Action: Split, Template: "/users/{user_id-2}"}},
	} {
		got, err := ParseDecision(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseDecision(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if again, err := ParseDecision(got.String()); err != nil || again != got {
			t.Errorf("%q does not read back: %+v %v", got.String(), again, err)
		}
	}
}

func TestParseDecisionRefuses(t *testing.T) {
	for _, c := range []struct{ in, says string }{
		{"", "want [pin|split|merge]"},
		{"merge", "want [pin|split|merge]"},
		{"drop /users/me", `action "drop"`},
		{"users/{id}", "want [pin|split|merge]"},
		{"pin users/{id}", "want [pin|split|merge]"},
		{"pin /users//{id}", "empty segment"},
		{"pin /users/{id}/", "ends in /"},
		{"pin /users/x{id}", "a parameter is a whole segment"},
		{"pin /users/{id", "a parameter is a whole segment"},
		{"pin /users/{{id}}", "a parameter is a whole segment"},
		{"pin /users/{}", `parameter name ""`},
		{"pin /users/{1d}", `parameter name "1d"`},
		{"pin /a/{id}/b/{id}", "appears twice"},
		{"pin /users?id=1", "cannot"},
		{"pin /users#x", "cannot"},
		{"pin /us\x01ers", "cannot"},
		{"merge /reports/daily", "must end in the parameter"},
		{"merge /", "must end in the parameter"},
		{"split /", "name the value to keep literal"},
		{"pin /a on", "want [pin|split|merge]"},
		{"pin /a on bad/host", "name a host"},
		{"pin /a b", "want [pin|split|merge]"},
		{"pin /" + strings.Repeat("a/", 40) + "a", "more than 32 segments"},
		{"pin /" + strings.Repeat("a", 1100), "longer than 1024"},
	} {
		_, err := ParseDecision(c.in)
		if err == nil || !errors.Is(err, ErrDecision) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("ParseDecision(%q): %v; want an ErrDecision saying %q", c.in, err, c.says)
		}
	}
}

func TestConflicts(t *testing.T) {
	d := func(s string) Decision {
		x, err := ParseDecision(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"split /files/{name}", "merge /files/{file}", true},
		{"split /files/{name}", "pin /files/{fileName}", true},
		{"pin /files/{f}", "split /files/{name}", true},
		{"split /files/{name} on a.example", "merge /files/{file}", false}, // different scopes
		{"split /users/me", "pin /users/{userId}", false},                  // the exception to it
		{"split /users/me", "pin /users/me", false},
		{"merge /r/{r}", "pin /r/{x}", false},
		{"split /a/{b}", "split /a/{c}", false},
	} {
		if got := d(c.a).Conflicts(d(c.b)); got != c.want {
			t.Errorf("%s vs %s: %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// TestDecisions: each case applies decisions between two rounds of
// traffic and checks the templates the second round gets, and where the
// templates published in the first round now route.
func TestDecisions(t *testing.T) {
	ids := func(prefix string, n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("%s/%d", prefix, 1000+i*37))
		}
		return out
	}
	words := func(prefix string, ws ...string) []string {
		var out []string
		for _, w := range ws {
			out = append(out, prefix+"/"+w)
		}
		return out
	}
	many := func(prefix string, n int) []string { // free-form names
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("%s/file-%c%c.pdf", prefix, 'a'+i%26, 'a'+i/26))
		}
		return out
	}
	for _, c := range []struct {
		name      string
		first     bool // decide before the first round
		before    []string
		decisions []string
		after     map[string]string // path → template
		route     map[string]string // template published before → now
	}{
		{
			name:      "merge literal siblings into one parameter",
			before:    words("/reports", "daily", "weekly", "monthly"),
			decisions: []string{"merge /reports/{report}"},
			after:     map[string]string{"/reports/daily": "/reports/{report}", "/reports/yearly": "/reports/{report}", "/reports/daily/pdf": "/reports/{report}/pdf"},
			route:     map[string]string{"/reports/daily": "/reports/{report}", "/reports/weekly": "/reports/{report}", "/other": "/other"},
		},
		{
			name:      "merge renames an inferred parameter",
			before:    ids("/orders", 30),
			decisions: []string{"merge /orders/{order}"},
			after:     map[string]string{"/orders/5": "/orders/{order}"},
			route:     map[string]string{"/orders/{orderId}": "/orders/{order}"},
		},
		{
			name:      "merge keeps a split value",
			before:    words("/reports", "daily", "weekly", "summary"),
			decisions: []string{"merge /reports/{report}", "split /reports/summary"},
			after:     map[string]string{"/reports/summary": "/reports/summary", "/reports/daily": "/reports/{report}"},
			route:     map[string]string{"/reports/summary": "/reports/summary", "/reports/weekly": "/reports/{report}"},
		},
		{
			name:      "split a value out of an inferred parameter",
			before:    append(ids("/users", 40), "/users/admin"),
			decisions: []string{"split /users/admin", "split /users/7"},
			after:     map[string]string{"/users/admin": "/users/admin", "/users/7": "/users/7", "/users/8": "/users/{userId}", "/users/admin/roles": "/users/admin/roles"},
			route:     map[string]string{"/users/{userId}": "/users/{userId}"},
		},
		{
			name:      "split a value out of a pin",
			decisions: []string{"pin /users/{uid}", "split /users/me"},
			after:     map[string]string{"/users/me": "/users/me", "/users/42": "/users/{uid}", "/users/bob": "/users/{uid}"},
		},
		{
			name:      "split a value out of a deeper pin",
			decisions: []string{"pin /users/{uid}/orders/{oid}", "split /users/me"},
			after:     map[string]string{"/users/me/orders/3": "/users/me/orders/{oid}", "/users/9/orders/3": "/users/{uid}/orders/{oid}"},
		},
		{
			name:      "split a whole position: every value literal again",
			before:    many("/files", 60),
			decisions: []string{"split /files/{name}"},
			after:     map[string]string{"/files/file-ab.pdf": "/files/file-ab.pdf", "/files/123": "/files/123", "/files/new-one": "/files/new-one"},
			route:     map[string]string{"/files/{fileId}": "/files/{fileId}"}, // its history stays
		},
		{
			name:      "a position split is not promoted again",
			first:     true,
			decisions: []string{"split /files/{name}"},
			before:    many("/files", 200),
			after:     map[string]string{"/files/file-zz.pdf": "/files/file-zz.pdf"},
		},
		{
			name:      "split turns a spec's pin off at that position",
			decisions: []string{"pin /files/{fileName}", "pin /files/{fileName}/meta", "split /files/{name} on x"},
			after:     map[string]string{"/files/a.txt": "/files/a.txt", "/files/a.txt/meta": "/files/a.txt/meta"},
		},
		{
			name:      "pin wins over inference",
			before:    append(append(ids("/users", 40), "/users/me", "/users/me"), words("/users", "me", "me", "me", "me", "me")...),
			decisions: []string{"pin /users/{uid}"},
			after:     map[string]string{"/users/me": "/users/{uid}", "/users/3": "/users/{uid}"},
			route:     map[string]string{"/users/me": "/users/{uid}", "/users/{userId}": "/users/{uid}"},
		},
		{
			name:      "held literals survive a junk storm at the root",
			first:     true,
			decisions: []string{"split /users/me"},
			before:    many("", 300),
			after:     map[string]string{"/users/me": "/users/me", "/users/me/x": "/users/me/x"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := NewTree(Options{})
			decide := func() {
				for _, s := range c.decisions {
					d, err := ParseDecision(s)
					if err != nil {
						t.Fatal(err)
					}
					tr.Apply(d)
				}
			}
			if c.first {
				decide()
			}
			for _, p := range c.before {
				tr.Observe(p)
			}
			if !c.first {
				decide()
			}
			for from, want := range c.route {
				if got := tr.Route(from); got != want {
					t.Errorf("Route(%s) = %s, want %s", from, got, want)
				}
			}
			for p, want := range c.after {
				if got := tr.Observe(p).Template; got != want {
					t.Errorf("%s → %s, want %s", p, got, want)
				}
			}
		})
	}
}

func TestWithdraw(t *testing.T) {
	tr := NewTree(Options{})
	pin := Decision{Action: Pin, Template: "/users/{uid}"}
	me := Decision{Action: Split, Template: "/users/me"}
	files := Decision{Action: Split, Template: "/files/{name}"}
	for _, d := range []Decision{pin, me, me, files} { // me twice: for a service and for all
		tr.Apply(d)
	}
	if got := tr.Observe("/users/me").Template; got != "/users/me" {
		t.Fatalf("split: %s", got)
	}
	tr.Withdraw(me)
	if got := tr.Observe("/users/me").Template; got != "/users/me" {
		t.Fatalf("one of two identical splits withdrawn: %s", got)
	}
	tr.Withdraw(me)
	if got := tr.Observe("/users/me").Template; got != "/users/{uid}" {
		t.Fatalf("split withdrawn, the pin takes /users/me again: %s", got)
	}
	tr.Withdraw(pin)
	if tr.IsPinned("/users/{uid}") {
		t.Fatal("pin still in force")
	}
	tr.Withdraw(files)
	for i := range 100 {
		tr.Observe(fmt.Sprintf("/files/report-%c%c.pdf", 'a'+i%26, 'a'+i/26))
	}
	if got := tr.Observe("/files/other.pdf").Template; got != "/files/{fileId}" {
		t.Fatalf("position split withdrawn, inference promotes it again: %s", got)
	}
}

// TestBoundKeepsKnownRoutes: past MaxNodes, literal segments seen before
// keep their templates; only new values go to a parameter.
func TestBoundKeepsKnownRoutes(t *testing.T) {
	tr := NewTree(Options{MaxNodes: 50})
	for range 10 {
		tr.Observe("/health")
		tr.Observe("/api/status")
	}
	for i := range 200 {
		tr.Observe(fmt.Sprintf("/x%c/y%c/z%d", 'a'+i%26, 'a'+i/26%26, i))
	}
	for p, want := range map[string]string{"/health": "/health", "/api/status": "/api/status"} {
		if got := tr.Observe(p).Template; got != want {
			t.Errorf("%s → %s after the bound, want %s", p, got, want)
		}
	}
	if tr.Nodes() > 60 {
		t.Errorf("%d nodes for a bound of 50", tr.Nodes())
	}
}
