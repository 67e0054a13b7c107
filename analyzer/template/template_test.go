package template

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestClassify(t *testing.T) {
	cases := map[string]Kind{
		"42": Int, "550e8400-e29b-41d4-a716-446655440000": UUID, "507f1f77bcf86cd799439011": ObjectID,
		"da39a3ee5e6b4b0d3255bfef95601890afd80709": Hex, "2024-01-31": Date, "ann@example.com": Email,
		"AB-1234": SKU, "dGhpcyBpcyBhIHRva2Vu9Xz": Token, "users": Literal, "me": Literal, "v1": Literal,
		"how-to-reset-your-password": Literal, "api": Literal, "graphql": Literal, "orders": Literal,
	}
	for in, want := range cases {
		if got := Classify(in); got != want {
			t.Errorf("Classify(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestParamName(t *testing.T) {
	for prev, want := range map[string]string{"users": "userId", "categories": "categoryId", "addresses": "addressId",
		"orders": "orderId", "status": "statusId", "": "id", "{userId}": "id"} {
		if got := ParamName(prev, nil); got != want {
			t.Errorf("ParamName(%q) = %q, want %q", prev, got, want)
		}
	}
}

// The tricky sets: ids of every style, static siblings that must stay,
// and free-form values that must become parameters.
func TestTemplates(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tr := NewTree(Options{})
	observe := func(p string) string { return tr.Observe(p).Template }
	for i := 0; i < 300; i++ {
		observe(fmt.Sprintf("/api/v2/accounts/%d/invoices/%d", r.IntN(100000), r.IntN(1000)))
		observe("/users/me")
		observe(fmt.Sprintf("/users/%d", r.IntN(100000)))
		observe(fmt.Sprintf("/blog/post-%s-%s", []string{"how", "why", "what"}[r.IntN(3)], fmt.Sprint(r.IntN(100000))))
		observe("/v1/status")
		observe("/v2/status")
	}
	want := map[string]string{
		"/api/v2/accounts/1/invoices/2": "/api/v2/accounts/{accountId}/invoices/{invoiceId}",
		"/users/me":                     "/users/me",
		"/users/77":                     "/users/{userId}",
		"/blog/post-why-3":              "/blog/{blogId}",
		"/v1/status":                    "/v1/status",
		"/v2/status":                    "/v2/status",
	}
	for p, w := range want {
		if got := tr.Observe(p).Template; got != w {
			t.Errorf("%s → %s, want %s", p, got, w)
		}
	}
	if got := tr.Resolve("/blog/post-how-1"); got != "/blog/{blogId}" {
		t.Errorf("an early literal template resolves to %s", got)
	}
}

func TestPinnedWins(t *testing.T) {
	tr := NewTree(Options{})
	tr.Pin("/files/{fileName}")
	tr.Pin("/files/latest")
	if m := tr.Observe("/files/report.pdf"); m.Template != "/files/{fileName}" || !hasParam(m, "fileName", "report.pdf") || !m.Pinned {
		t.Fatalf("got %+v", m)
	}
	if m := tr.Observe("/files/latest"); m.Template != "/files/latest" {
		t.Fatalf("literal pin lost: %+v", m)
	}
}

func TestBoundedUnderJunk(t *testing.T) {
	tr := NewTree(Options{MaxNodes: 1000})
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 100000; i++ {
		tr.Observe(fmt.Sprintf("/%s/%s/%s", word(r), word(r), word(r)))
	}
	if tr.Nodes() > 1100 {
		t.Fatalf("%d nodes for a bound of 1000", tr.Nodes())
	}
}

func word(r *rand.Rand) string {
	b := make([]byte, 3+r.IntN(6))
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return string(b)
}

func BenchmarkObserve(b *testing.B) {
	tr := NewTree(Options{})
	paths := make([]string, 1024)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range paths {
		paths[i] = fmt.Sprintf("/api/v1/accounts/%d/transactions/%d", r.IntN(1000000), r.IntN(1000))
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tr.Observe(paths[i&1023])
	}
}

// Random tokens sometimes carry no digit and read as words: their length,
// shared by every value at that position, still says what they are.
func TestWordLikeTokens(t *testing.T) {
	tr := NewTree(Options{})
	r := rand.New(rand.NewPCG(7, 8))
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < 2000; i++ {
		b := make([]byte, 22)
		for j := range b {
			b[j] = alpha[r.IntN(len(alpha))]
		}
		tr.Observe("/sessions/" + string(b))
	}
	if got := tr.Observe("/sessions/WJJZaZXkeGsqoeEwhRuDvq").Template; got != "/sessions/{sessionId}" {
		t.Fatalf("a digit-free token gave %s", got)
	}
	if got := tr.Observe("/sessions/current").Template; got != "/sessions/current" {
		t.Fatalf("a short word beside tokens gave %s", got)
	}
}

func hasParam(m Match, name, value string) bool {
	v, ok := m.Param(name)
	return ok && v == value
}
