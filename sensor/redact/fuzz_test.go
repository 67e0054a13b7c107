package redact

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/apiscout/apiscout/wire"
)

// FuzzRedact: any header value, query and body: no panic, a credential
// never survives in the Authorization value, valid JSON stays valid.
func FuzzRedact(f *testing.F) {
	f.Add("Bearer "+jwt, "access_token=x&a=1", `{"password":"p","card":"4111 1111 1111 1111","to":"a@b.co"}`, "application/json")
	f.Add("Basic dXNlcjpwYXNz", "a=%zz&token", "user=x&password=%41", "application/x-www-form-urlencoded")
	f.Add("x", "", "-----BEGIN PRIVATE KEY-----\nabc", "")
	f.Add("Bearer ", ";;&&==", `{"secret": 5555555555554444 }`, "text/json")
	r := newTest(f, nil)
	f.Fuzz(func(t *testing.T, auth, query, body, ctype string) {
		tx := &wire.Transaction{
			RequestHeaders:      []wire.Header{{Name: "Authorization", Value: auth}, {Name: "Cookie", Value: query}, {Name: "Referer", Value: "http://h/?" + query}},
			ResponseHeaders:     []wire.Header{{Name: "Set-Cookie", Value: auth}},
			Query:               query,
			RequestBody:         []byte(body),
			RequestContentType:  ctype,
			ResponseBody:        []byte(body),
			ResponseContentType: "application/json",
		}
		r.Apply(tx)
		cred := strings.TrimSpace(auth)
		if _, c, ok := strings.Cut(cred, " "); ok {
			cred = strings.TrimSpace(c)
		}
		if len(cred) >= 8 && strings.Trim(cred, "0123456789abcdef:pfjwt. ") != "" && strings.Contains(tx.RequestHeaders[0].Value, cred) {
			t.Fatalf("credential %q survived: %q", cred, tx.RequestHeaders[0].Value)
		}
		if json.Valid([]byte(body)) && !json.Valid(tx.ResponseBody) {
			t.Fatalf("valid JSON %q masked into invalid %q", body, tx.ResponseBody)
		}
	})
}
