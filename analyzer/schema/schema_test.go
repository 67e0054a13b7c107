package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/apiscout/apiscout/analyzer/classify"
)

func observeAll(t *testing.T, s *Schema, bodies ...string) *Result {
	t.Helper()
	var r Result
	for _, b := range bodies {
		if !s.Observe([]byte(b), &r) {
			t.Fatalf("not JSON: %s", b)
		}
	}
	return &r
}

func TestInferredSchema(t *testing.T) {
	s := New(0)
	var bodies []string
	for i := 0; i < 30; i++ {
		nick := `"nick":null,`
		if i%3 == 0 {
			nick = fmt.Sprintf(`"nick":"n%d",`, i)
		}
		coupon := ""
		if i%2 == 0 {
			coupon = `"coupon":"SAVE10",`
		}
		bodies = append(bodies, fmt.Sprintf(`{"id":"550e8400-e29b-41d4-a716-4466554400%02d",%s%s"email":"u%d@example.com",
			"status":%q,"created":"2025-03-01T10:00:00Z","ip":"10.0.0.%d","avatar":"https://cdn.example.com/a/%d.png",
			"phone":"+1 415 555 01%02d","age":%d,"score":%d.5,"tags":["a","b"],"card":"[card:visa:1111:fp:0123456789abcdef]",
			"items":[{"sku":"AB-%04d","qty":%d}]}`, i, nick, coupon, i, []string{"active", "locked", "pending"}[i%3], i, i, i, 20+i, i, i, i))
	}
	r := observeAll(t, s, bodies...)
	d := s.Render()
	if d.Type != "object" || d.Items != nil {
		t.Fatalf("root %+v", d)
	}
	want := map[string]struct{ typ, format string }{
		"id": {"string", "uuid"}, "email": {"string", "email"}, "created": {"string", "date-time"}, "ip": {"string", "ipv4"},
		"avatar": {"string", "uri"}, "phone": {"string", "phone"}, "age": {"integer", ""}, "score": {"number", ""},
		"tags": {"array", ""}, "items": {"array", ""}, "status": {"string", ""}, "nick": {"string", ""},
	}
	for k, w := range want {
		p := d.Properties[k]
		if p == nil || p.Type != w.typ || p.Format != w.format {
			t.Errorf("%s: %+v, want %s %s", k, p, w.typ, w.format)
		}
	}
	if st := d.Properties["status"]; strings.Join(st.Enum, ",") != "active,locked,pending" {
		t.Errorf("status enum %v", st.Enum)
	}
	if d.Properties["id"].Enum != nil || d.Properties["nick"].Enum != nil {
		t.Errorf("ids and free text offered as enums")
	}
	if !d.Properties["nick"].Nullable || d.Properties["email"].Nullable {
		t.Errorf("nullable: nick %v email %v", d.Properties["nick"].Nullable, d.Properties["email"].Nullable)
	}
	if c := d.Properties["coupon"]; c.Presence != 0.5 {
		t.Errorf("coupon presence %v, want 0.5", c.Presence)
	}
	if strings.Contains(strings.Join(d.Required, ","), "coupon") || !strings.Contains(strings.Join(d.Required, ","), "email") {
		t.Errorf("required %v", d.Required)
	}
	if e := d.Properties["email"]; e.Example != "[email]" || e.Sensitive != classify.Email {
		t.Errorf("email example %v (%s): sensitive values must be masked", e.Example, e.Sensitive)
	}
	if c := d.Properties["card"]; c.Sensitive != classify.Card || c.Example != "[card]" {
		t.Errorf("sensor card mask: %+v", c)
	}
	if it := d.Properties["items"].Items; it == nil || it.Properties["sku"] == nil || it.Properties["qty"].Type != "integer" {
		t.Errorf("array items %+v", it)
	}
	if got := strings.Join(r.Classes(), ","); got != "card,email,phone" {
		t.Errorf("classes %s", got)
	}
	if len(r.IDs) != 30 {
		t.Errorf("%d ids, want 30", len(r.IDs))
	}
	if _, err := json.Marshal(d); err != nil {
		t.Fatal(err)
	}
}

func TestChangedOnlyOnce(t *testing.T) {
	s := New(0)
	var r Result
	s.Observe([]byte(`{"a":1,"b":{"c":"x"}}`), &r)
	if got := fields(r.Changed); got != "/:object /a:integer /b/c:string /b:object" {
		t.Fatalf("first body: %s", got)
	}
	r.Reset()
	s.Observe([]byte(`{"a":2,"b":{"c":"y"}}`), &r)
	if len(r.Changed) != 0 {
		t.Fatalf("nothing new, got %s", fields(r.Changed))
	}
	s.Observe([]byte(`{"a":"two","d":[1]}`), &r)
	if got := fields(r.Changed); got != "/a:string /d/[]:integer /d:array" {
		t.Fatalf("new type and fields: %s", got)
	}
}

func fields(fs []Field) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Path+":"+f.Type.String())
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestNotJSONAndTruncated(t *testing.T) {
	s := New(0)
	var r Result
	for _, b := range []string{"", "hello", "<html>", "42", `"x"`} {
		if s.Observe([]byte(b), &r) {
			t.Errorf("%q taken for a JSON body", b)
		}
	}
	if s.Observe([]byte(`{"a":1,"b":"cut sho`), &r) {
		t.Errorf("a cut body is not a whole document")
	}
	if s.Root.Props["a"] == nil {
		t.Errorf("a cut body still teaches the fields before the cut")
	}
	if !s.Observe([]byte("{\"x\":1}\n{\"y\":2}\n"), &r) || s.Root.Props["y"] == nil {
		t.Errorf("JSON lines")
	}
	if !s.Observe([]byte(`{"k\u0065y":"v\"q"}`), &r) || s.Root.Props["key"] == nil {
		t.Errorf("escaped key: %v", s.Root.Props)
	}
}

func TestBounded(t *testing.T) {
	s := New(64)
	var r Result
	for i := 0; i < 1000; i++ {
		s.Observe([]byte(fmt.Sprintf(`{"user-%d":{"name":"x"}}`, i)), &r)
	}
	if s.Nodes() > 64 || s.Dropped == 0 {
		t.Fatalf("%d nodes, %d dropped, bound 64", s.Nodes(), s.Dropped)
	}
}

// FuzzObserve checks the scanner against encoding/json: every valid
// document is read whole, and its fields are those a generic decode
// finds.
func FuzzObserve(f *testing.F) {
	for _, seed := range []string{`{"a":[1,{"b":null}],"c":"d\"e"}`, `[]`, `{}`, `[{"x":1e5,"y":-0.5,"z":true}]`, `{"a":{"b":{"c":[[]]}}}`, `{"a`, `[1,]`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := New(1 << 20)
		var r Result
		ok := s.Observe(b, &r)
		if !json.Valid(b) || !utf8.Valid(b) {
			return // encoding/json rewrites invalid UTF-8 in keys
		}
		var v any
		_ = json.Unmarshal(b, &v)
		switch v.(type) {
		case map[string]any, []any:
		default:
			return
		}
		if !ok {
			t.Fatalf("valid JSON refused: %q", b)
		}
		want := map[string]bool{}
		if err := walkAll(b, want); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		got := map[string]bool{}
		for _, c := range r.Changed {
			got[c.Path] = true
		}
		for p := range want {
			if !got[p] {
				t.Fatalf("%q: field %s missed (got %v)", b, p, got)
			}
		}
		for p := range got {
			if !want[p] {
				t.Fatalf("%q: field %s invented (want %v)", b, p, want)
			}
		}
	})
}

// walkAll lists the path of every value in a valid JSON document, each
// occurrence of a repeated key included: encoding/json keeps only the last
// one, while the scanner learns from all of them, as a backend may read
// either.
func walkAll(b []byte, out map[string]bool) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	var value func(path string, depth int, skip bool) error
	value = func(path string, depth int, skip bool) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		learn := !skip && depth <= maxDepth
		if learn {
			p := path
			if p == "" {
				p = "/"
			}
			out[p] = true
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return nil
		}
		for i := 0; dec.More(); i++ {
			child, skipChild := path+"/[]", !learn || i >= maxItems
			if d == '{' {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				child, skipChild = path+"/"+k.(string), !learn
			}
			if err := value(child, depth+1, skipChild); err != nil {
				return err
			}
		}
		_, err = dec.Token() // the closing delimiter
		return err
	}
	return value("", 0, false)
}

var body = []byte(`{"id":"550e8400-e29b-41d4-a716-446655440000","name":"Ann","email":"[email:fp:0123456789abcdef@example.com]",
"phone":"+1 415 555 0100","created_at":"2025-03-01T10:00:00Z","items":[{"sku":"AB-1234","name":"blue-shirt","price":12.5},
{"sku":"AB-1235","name":"red-shirt","price":14}],"page":1,"total":120,"status":"active"}`)

func BenchmarkObserve(b *testing.B) {
	s := New(0)
	var r Result
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		r.Reset()
		s.Observe(body, &r)
	}
}

// The generic decode the scanner replaces, for comparison.
func BenchmarkReadJSON(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		classify.ReadJSON(body)
	}
}
