// Package spec loads the OpenAPI 3 and Swagger 2 documents a team
// publishes (with kin-openapi), binds each to its service, lists the
// operations the inventory classifies against, and writes the OpenAPI 3
// document reconstructed from traffic.
package spec

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"gopkg.in/yaml.v3"
)

// Operation is one documented method and path.
type Operation struct {
	Method     string
	Path       string // OpenAPI template, base path included
	Deprecated bool
	// Security names the schemes the operation requires (any of); empty
	// means none, nil means not stated (the document's default applies).
	Security []string
	Query    []string
	Statuses []string
	// Documented body fields (JSON paths as the inventory writes them,
	// arrays as []), nil when the spec gives no schema; a path ending in
	// /* documents everything under it (additionalProperties).
	ReqFields, RespFields map[string]bool
	// Documented media types of the request body and the responses.
	ReqTypes, RespTypes []string
}

// Documents tells whether the field path is documented in fields.
func Documents(fields map[string]bool, path string) bool {
	if fields[path] || path == "/" {
		return true
	}
	for p := path; p != ""; {
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			break
		}
		p = p[:i]
		if fields[p+"/*"] {
			return true
		}
	}
	return false
}

// flatten lists the paths a schema documents.
func flatten(ref *openapi3.SchemaRef, path string, out map[string]bool, seen map[*openapi3.Schema]bool, depth int) {
	if ref == nil || ref.Value == nil || depth > 32 {
		return
	}
	sc := ref.Value
	if seen[sc] {
		out[path+"/*"] = true // recursive: document the rest as open
		return
	}
	seen[sc] = true
	defer delete(seen, sc)
	if path != "" {
		out[path] = true
	}
	for _, group := range []openapi3.SchemaRefs{sc.AllOf, sc.OneOf, sc.AnyOf} {
		for _, r := range group {
			if r == nil {
				continue
			}
			flatten(r, path, out, seen, depth+1)
		}
	}
	for name, p := range sc.Properties {
		flatten(p, path+"/"+name, out, seen, depth+1)
	}
	if sc.AdditionalProperties.Schema != nil || (sc.AdditionalProperties.Has != nil && *sc.AdditionalProperties.Has) {
		out[path+"/*"] = true
	}
	if sc.Items != nil {
		flatten(sc.Items, path+"/[]", out, seen, depth+1)
	}
	if sc.Type == nil && len(sc.Properties) == 0 && sc.Items == nil && len(sc.AllOf)+len(sc.OneOf)+len(sc.AnyOf) == 0 {
		out[path+"/*"] = true // free-form: anything goes
	}
}

func content(c openapi3.Content, types *[]string, fields *map[string]bool) {
	for mt, m := range c {
		*types = append(*types, mt)
		if m == nil || m.Schema == nil {
			continue
		}
		if *fields == nil {
			*fields = map[string]bool{}
		}
		flatten(m.Schema, "", *fields, map[*openapi3.Schema]bool{}, 0)
	}
	sort.Strings(*types)
}

// Spec is one loaded document bound to a service.
type Spec struct {
	File  string
	Hosts []string
	Title string
	Ops   []Operation
	Doc   *openapi3.T
}

// LoadPaths loads every .yaml, .yml and .json under the given files or
// directories. bind maps a file (its base name or path) to a host when
// its servers do not name one; a file named <host>.yaml binds to <host>.
func LoadPaths(paths []string, bind map[string]string) ([]*Spec, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("analyzer.specs: %w", err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("analyzer.specs: %w", err)
		}
		for _, e := range ents {
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".yaml", ".yml", ".json":
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	sort.Strings(files)
	var out []*Spec
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("spec %s: %w", f, err)
		}
		s, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("spec %s: %w", f, err)
		}
		s.File = f
		if h, ok := bind[f]; ok {
			s.Hosts = []string{h}
		} else if h, ok := bind[filepath.Base(f)]; ok {
			s.Hosts = []string{h}
		} else if len(s.Hosts) == 0 {
			s.Hosts = []string{strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))}
		}
		out = append(out, s)
	}
	return out, nil
}

// Parse reads an OpenAPI 3 or Swagger 2 document (YAML or JSON).
func Parse(data []byte) (*Spec, error) {
	var probe map[string]any
	if err := yaml.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("not YAML or JSON: %w", err)
	}
	var doc *openapi3.T
	if v, ok := probe["swagger"]; ok && fmt.Sprint(v) == "2.0" {
		var d2 openapi2.T
		if err := yaml.Unmarshal(data, &d2); err != nil {
			// openapi2 types decode from JSON: go through it.
			j, jerr := yamlToJSON(data)
			if jerr != nil {
				return nil, err
			}
			if err := d2.UnmarshalJSON(j); err != nil {
				return nil, fmt.Errorf("swagger 2.0: %w", err)
			}
		}
		j, err := yamlToJSON(data)
		if err != nil {
			return nil, err
		}
		if err := d2.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("swagger 2.0: %w", err)
		}
		if doc, err = openapi2conv.ToV3(&d2); err != nil {
			return nil, fmt.Errorf("swagger 2.0 to OpenAPI 3: %w", err)
		}
	} else {
		loader := openapi3.NewLoader()
		var err error
		if doc, err = loader.LoadFromData(data); err != nil {
			return nil, fmt.Errorf("openapi: %w", err)
		}
	}
	s := &Spec{Doc: doc}
	if doc.Info != nil {
		s.Title = doc.Info.Title
	}
	var basePaths []string
	for _, srv := range doc.Servers {
		if srv == nil {
			continue
		}
		u, err := url.Parse(srv.URL)
		if err != nil {
			continue
		}
		if u.Host != "" {
			s.Hosts = append(s.Hosts, u.Host)
		}
		if bp := strings.TrimRight(u.Path, "/"); bp != "" {
			basePaths = append(basePaths, bp)
		}
	}
	base := ""
	if len(basePaths) > 0 {
		base = basePaths[0]
	}
	var defSec []string
	for _, req := range doc.Security {
		for name := range req {
			defSec = append(defSec, name)
		}
	}
	if doc.Paths != nil {
		for path, item := range doc.Paths.Map() {
			if item == nil {
				continue
			}
			for method, op := range item.Operations() {
				if op == nil {
					continue
				}
				o := Operation{Method: strings.ToUpper(method), Path: base + path, Deprecated: op.Deprecated, Security: defSec}
				if op.Security != nil {
					o.Security = []string{}
					for _, req := range *op.Security {
						for name := range req {
							o.Security = append(o.Security, name)
						}
					}
				}
				for _, p := range append(item.Parameters, op.Parameters...) {
					if p != nil && p.Value != nil && p.Value.In == "query" {
						o.Query = append(o.Query, p.Value.Name)
					}
				}
				if op.RequestBody != nil && op.RequestBody.Value != nil {
					content(op.RequestBody.Value.Content, &o.ReqTypes, &o.ReqFields)
				}
				if op.Responses != nil {
					for code, r := range op.Responses.Map() {
						o.Statuses = append(o.Statuses, code)
						if r != nil && r.Value != nil && (strings.HasPrefix(code, "2") || code == "default") {
							content(r.Value.Content, &o.RespTypes, &o.RespFields)
						}
					}
				}
				o.RespTypes = dedupe(o.RespTypes)
				sort.Strings(o.Statuses)
				s.Ops = append(s.Ops, o)
			}
		}
	}
	sort.Slice(s.Ops, func(i, j int) bool {
		if s.Ops[i].Path != s.Ops[j].Path {
			return s.Ops[i].Path < s.Ops[j].Path
		}
		return s.Ops[i].Method < s.Ops[j].Method
	})
	return s, nil
}

func dedupe(l []string) []string {
	sort.Strings(l)
	out := l[:0]
	for i, x := range l {
		if i == 0 || x != l[i-1] {
			out = append(out, x)
		}
	}
	return out
}

func yamlToJSON(data []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return jsonMarshal(normalize(v))
}

// normalize turns yaml.v3's map[string]any trees into JSON-encodable ones.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			x[k] = normalize(val)
		}
		return x
	case map[any]any:
		m := map[string]any{}
		for k, val := range x {
			m[fmt.Sprint(k)] = normalize(val)
		}
		return m
	case []any:
		for i := range x {
			x[i] = normalize(x[i])
		}
	}
	return v
}

// Validate checks a document with kin-openapi's validator.
func Validate(doc *openapi3.T) error {
	return doc.Validate(context.Background(), openapi3.DisableExamplesValidation())
}
