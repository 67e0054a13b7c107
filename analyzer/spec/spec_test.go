package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func ops(s *Spec) map[string]Operation {
	m := map[string]Operation{}
	for _, o := range s.Ops {
		m[o.Method+" "+o.Path] = o
	}
	return m
}

func TestLoadOpenAPI3(t *testing.T) {
	specs, err := LoadPaths([]string{"testdata/petstore-v3.yaml"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := specs[0]
	if strings.Join(s.Hosts, ",") != "pets.example" {
		t.Errorf("hosts %v, want the server's", s.Hosts)
	}
	m := ops(s)
	for _, k := range []string{"GET /api/v2/pets", "POST /api/v2/pets", "GET /api/v2/pets/{petId}", "DELETE /api/v2/pets/{petId}", "GET /api/v2/health"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s missing (base path from servers): %v", k, m)
		}
	}
	if !m["DELETE /api/v2/pets/{petId}"].Deprecated || m["GET /api/v2/pets/{petId}"].Deprecated {
		t.Errorf("deprecation not read")
	}
	if got := m["GET /api/v2/health"].Security; got == nil || len(got) != 0 {
		t.Errorf("security: [] must mean none, got %#v", got)
	}
	if got := m["GET /api/v2/pets"].Security; strings.Join(got, ",") != "bearer" {
		t.Errorf("document security not inherited: %v", got)
	}
	if got := m["GET /api/v2/pets"].Query; strings.Join(got, ",") != "limit" {
		t.Errorf("query %v", got)
	}
	get := m["GET /api/v2/pets/{petId}"]
	for _, p := range []string{"/id", "/name", "/tags", "/tags/[]", "/owner", "/owner/email"} {
		if !Documents(get.RespFields, p) {
			t.Errorf("response field %s not documented (through $ref): %v", p, get.RespFields)
		}
	}
	if Documents(get.RespFields, "/password") {
		t.Errorf("an undocumented field taken for documented")
	}
	if list := m["GET /api/v2/pets"]; !Documents(list.RespFields, "/[]/owner/email") || strings.Join(list.RespTypes, ",") != "application/json" {
		t.Errorf("array response: %v %v", list.RespFields, list.RespTypes)
	}
	if post := m["POST /api/v2/pets"]; !Documents(post.ReqFields, "/name") || post.RespFields != nil {
		t.Errorf("request body fields %v, response %v", post.ReqFields, post.RespFields)
	}
}

func TestLoadSwagger2(t *testing.T) {
	specs, err := LoadPaths([]string{"testdata"}, map[string]string{"legacy-v2.json": "legacy.internal"})
	if err != nil {
		t.Fatal(err)
	}
	var s *Spec
	for _, x := range specs {
		if strings.HasSuffix(x.File, "legacy-v2.json") {
			s = x
		}
	}
	if s == nil || strings.Join(s.Hosts, ",") != "legacy.internal" {
		t.Fatalf("configured binding must win: %+v", s)
	}
	m := ops(s)
	get, ok := m["GET /v1/accounts/{accountId}"]
	if !ok {
		t.Fatalf("basePath not applied: %v", m)
	}
	if !m["PUT /v1/accounts/{accountId}"].Deprecated {
		t.Errorf("deprecated lost in conversion")
	}
	if strings.Join(get.Security, ",") != "key" || strings.Join(get.Query, ",") != "expand" || !Documents(get.RespFields, "/balance") {
		t.Errorf("converted operation %+v", get)
	}
	// Without a binding, the Swagger host names the service.
	specs, err = LoadPaths([]string{"testdata/legacy-v2.json"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(specs[0].Hosts, ",") != "legacy.example:8080" {
		t.Errorf("hosts %v", specs[0].Hosts)
	}
}

func TestBadSpecs(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"notyaml.yaml": "{{{",
		"empty.yaml":   "openapi: 3.0.0\ninfo: [1]\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := LoadPaths([]string{p}, nil); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v must name the file", name, err)
		}
	}
	if _, err := LoadPaths([]string{filepath.Join(dir, "missing.yaml")}, nil); err == nil || !strings.Contains(err.Error(), "analyzer.specs") {
		t.Errorf("missing file: %v must name the key", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/petstore-v3.yaml", "testdata/legacy-v2.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("swagger: '2.0'\npaths: {/a: {get: {responses: {200: {description: x}}}}}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err == nil && s == nil {
			t.Fatal("nil spec without error")
		}
	})
}
