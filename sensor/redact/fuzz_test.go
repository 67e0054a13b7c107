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
	f.Add("", "", `[{"ssn":"123-45-6789","password":"x"},{"a":"b@c.de","api_key":"k\"q","n":[4111111111111111]}]`, "application/json")
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
		if len(cred) >= 8 && strings.Trim(cred, "0123456789abcdef:pjwt. ") != "" && strings.Contains(tx.RequestHeaders[0].Value, cred) {
			t.Fatalf("credential %q survived: %q", cred, tx.RequestHeaders[0].Value)
		}
		if json.Valid([]byte(body)) {
			if !json.Valid(tx.ResponseBody) {
				t.Fatalf("valid JSON %q masked into invalid %q", body, tx.ResponseBody)
			}
			var in, out any
			if json.Unmarshal([]byte(body), &in) == nil && json.Unmarshal(tx.ResponseBody, &out) == nil {
				if path, ok := secretsMasked(in, out, "$"); !ok {
					t.Fatalf("secret field %s not masked: %q -> %q", path, body, tx.ResponseBody)
				}
			}
		}
	})
}

// secretsMasked walks the decoded input and output together: every
// non-empty string under a secret field name must come out as a
// placeholder, and the shape must not change.
func secretsMasked(in, out any, path string) (string, bool) {
	switch v := in.(type) {
	case map[string]any:
		o, ok := out.(map[string]any)
		if !ok || len(o) != len(v) {
			return path, false
		}
		for k, iv := range v {
			ov, ok := o[k]
			if !ok {
				return path + "." + k, false
			}
			if s, isStr := iv.(string); isStr && s != "" && secretName(k) {
				if os, _ := ov.(string); !strings.HasPrefix(os, "[secret:") {
					return path + "." + k, false
				}
				continue
			}
			if p, ok := secretsMasked(iv, ov, path+"."+k); !ok {
				return p, false
			}
		}
	case []any:
		o, ok := out.([]any)
		if !ok || len(o) != len(v) {
			return path, false
		}
		for i := range v {
			if p, ok := secretsMasked(v[i], o[i], path+"[]"); !ok {
				return p, false
			}
		}
	}
	return path, true
}
