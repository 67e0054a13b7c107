package classify

import (
	"encoding/base64"
	"testing"

	"github.com/apiscout/apiscout/wire"
)

func TestReadAuth(t *testing.T) {
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"user-7","role":"admin","scope":"read write"}`))
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256"}`))
	cases := []struct {
		hs    []wire.Header
		query string
		kind  string
		id    string
	}{
		{[]wire.Header{{Name: "Authorization", Value: "Bearer fp:0123456789abcdef jwt:" + hdr + "." + claims}}, "", AuthJWT, "fp:0123456789abcdef"},
		{[]wire.Header{{Name: "Authorization", Value: "Basic fp:aaaaaaaaaaaaaaaa"}}, "", AuthBasic, "fp:aaaaaaaaaaaaaaaa"},
		{[]wire.Header{{Name: "Authorization", Value: "Bearer fp:bbbbbbbbbbbbbbbb"}}, "", AuthBearer, "fp:bbbbbbbbbbbbbbbb"},
		{[]wire.Header{{Name: "X-API-Key", Value: "fp:cccccccccccccccc"}}, "", AuthAPIKey, "fp:cccccccccccccccc"},
		{[]wire.Header{{Name: "Cookie", Value: "sid=fp:dddddddddddddddd"}}, "", AuthCookie, "fp:dddddddddddddddd"},
		{nil, "q=1&api_key=fp:eeeeeeeeeeeeeeee", AuthAPIKey, "fp:eeeeeeeeeeeeeeee"},
		{nil, "", AuthNone, ""},
	}
	for i, c := range cases {
		a := ReadAuth(&wire.Transaction{RequestHeaders: c.hs, Query: c.query})
		if a.Kind != c.kind || a.Identity != c.id {
			t.Errorf("case %d: %s %q, want %s %q", i, a.Kind, a.Identity, c.kind, c.id)
		}
	}
	a := ReadAuth(&wire.Transaction{RequestHeaders: cases[0].hs})
	if a.Principal() != "user-7" || len(a.Roles()) != 3 {
		t.Errorf("principal %q roles %v", a.Principal(), a.Roles())
	}
}

func TestBody(t *testing.T) {
	b, ok := ReadJSON([]byte(`{"id":17,"owner":{"email":"ann@example.com","phone":"+1-202-555-0143"},
		"card":"[card:visa:1111:fp:0123456789abcdef]","iban":"DE89370400440532013000","password":"[secret:fp:0123456789abcdef]",
		"items":[{"sku":"AB-1","order_id":"o-1"}],"raw_card":4111111111111111,"note":"hello world"}`))
	if !ok {
		t.Fatal("not JSON")
	}
	got := map[string]string{}
	for _, f := range b.Sensitive {
		got[f.Path] = f.Class
	}
	want := map[string]string{"/owner/email": Email, "/owner/phone": Phone, "/card": Card, "/iban": IBAN,
		"/password": Secret, "/raw_card": Card}
	for p, c := range want {
		if got[p] != c {
			t.Errorf("%s: %q, want %q (all %v)", p, got[p], c, got)
		}
	}
	if got["/note"] != "" {
		t.Error("plain text flagged")
	}
	if b.Fields["/items/[]/sku"] != "string" || b.Fields["/id"] != "integer" {
		t.Errorf("fields %v", b.Fields)
	}
	if len(b.IDs) != 2 {
		t.Errorf("ids %v", b.IDs)
	}
}

// The sensor masks values wherever it finds them, inside free text too;
// the mask names the class wherever it sits in the value.
func TestValueClassMasksInText(t *testing.T) {
	for _, c := range []struct{ v, want string }{
		{"[card:visa:1111:fp:0123456789abcdef]", Card},
		{"call me or mail [email:fp:0123456789abcdef], thanks", Email},
		{"paid with [card:visa:1111:fp:0123456789abcdef] [email:fp:0123456789abcdef]", Card},
		{"my number is [ssn:fp:0123456789abcdef]", NationalID},
		{"see [1] and [2], not a mask", ""},
		{"[emails are fine]", ""},
		{"plain text", ""},
	} {
		if got := ValueClass(c.v); got != c.want {
			t.Errorf("ValueClass(%q) = %q, want %q", c.v, got, c.want)
		}
	}
}

func FuzzBody(f *testing.F) {
	f.Add([]byte(`{"a":[1,{"b":"x@y.zz"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) { ReadJSON(b) })
}
