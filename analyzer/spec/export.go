package spec

import (
	"encoding/json"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"gopkg.in/yaml.v3"

	"github.com/apiscout/apiscout/analyzer/schema"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// Observed is what the exporter needs of one endpoint seen in traffic.
type Observed struct {
	Method, Path string
	Statuses     []int
	Query        map[string]string // name → JSON type
	PathTypes    map[string]string // parameter → type (integer, string) and format
	ReqFields    map[string]string // JSON path → type
	RespFields   map[string]string
	// Schemas inferred from the bodies; they win over the field maps.
	ReqSchema, RespSchema *schema.Doc
	ReqType               string
	RespType              string
	Auth                  []string
	Deprecated            bool
}

// Export builds an OpenAPI 3 document of the endpoints seen for host and
// renders it as YAML. It is validated before it is returned.
func Export(host, title string, eps []Observed) ([]byte, error) {
	doc := &openapi3.T{
		OpenAPI:    "3.0.3",
		Info:       &openapi3.Info{Title: title, Version: "observed", Description: "Reconstructed by apiscout from observed traffic."},
		Servers:    openapi3.Servers{{URL: "https://" + host}},
		Paths:      openapi3.NewPaths(),
		Components: &openapi3.Components{SecuritySchemes: openapi3.SecuritySchemes{}},
	}
	schemes := map[string]*openapi3.SecurityScheme{
		"bearer": openapi3.NewJWTSecurityScheme(), "jwt": openapi3.NewJWTSecurityScheme(),
		"basic":  {Type: "http", Scheme: "basic"},
		"apikey": {Type: "apiKey", In: "header", Name: "X-API-Key"},
		"cookie": {Type: "apiKey", In: "cookie", Name: "session"},
	}
	sort.Slice(eps, func(i, j int) bool { return eps[i].Path+eps[i].Method < eps[j].Path+eps[j].Method })
	for _, e := range eps {
		if !strings.HasPrefix(e.Path, "/") {
			continue
		}
		op := openapi3.NewOperation()
		op.OperationID = strings.ToLower(e.Method) + opID(e.Path)
		op.Deprecated = e.Deprecated
		for _, seg := range strings.Split(e.Path, "/") {
			if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
				name := seg[1 : len(seg)-1]
				op.AddParameter(openapi3.NewPathParameter(name).WithSchema(typeSchema(e.PathTypes[name])))
			}
		}
		qs := sortedKeys(e.Query)
		for _, q := range qs {
			op.AddParameter(openapi3.NewQueryParameter(q).WithSchema(typeSchema(e.Query[q])))
		}
		if e.ReqSchema != nil {
			op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithJSONSchema(fromDoc(e.ReqSchema))}
		} else if len(e.ReqFields) > 0 {
			op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithJSONSchema(schemaOf(e.ReqFields))}
		}
		op.Responses = openapi3.NewResponses()
		statuses := e.Statuses
		if len(statuses) == 0 {
			statuses = []int{200}
		}
		for _, st := range statuses {
			desc := "observed"
			r := &openapi3.Response{Description: &desc}
			switch {
			case st >= 300:
			case e.RespSchema != nil:
				r.Content = openapi3.NewContentWithJSONSchema(fromDoc(e.RespSchema))
			case len(e.RespFields) > 0:
				r.Content = openapi3.NewContentWithJSONSchema(schemaOf(e.RespFields))
			}
			op.Responses.Set(itoa(st), &openapi3.ResponseRef{Value: r})
		}
		var sec openapi3.SecurityRequirements
		for _, a := range e.Auth {
			if s, ok := schemes[a]; ok {
				doc.Components.SecuritySchemes[a] = &openapi3.SecuritySchemeRef{Value: s}
				sec = append(sec, openapi3.SecurityRequirement{a: []string{}})
			}
		}
		if len(sec) > 0 {
			op.Security = &sec
		}
		doc.AddOperation(e.Path, e.Method, op)
	}
	if err := Validate(doc); err != nil {
		return nil, err
	}
	j, err := doc.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var v any
	if err := yaml.Unmarshal(j, &v); err != nil {
		return nil, err
	}
	return yaml.Marshal(v)
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func opID(p string) string {
	var b strings.Builder
	for _, part := range strings.Split(p, "/") {
		part = strings.Trim(part, "{}")
		part = strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, part)
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// fromDoc converts an inferred schema; examples are the masked ones the
// inference kept, presence below 1 becomes x-apiscout-presence.
func fromDoc(d *schema.Doc) *openapi3.Schema {
	var s *openapi3.Schema
	switch d.Type {
	case "object":
		s = openapi3.NewObjectSchema()
	case "array":
		s = openapi3.NewArraySchema()
		if d.Items != nil {
			s.Items = openapi3.NewSchemaRef("", fromDoc(d.Items))
		} else {
			s.Items = openapi3.NewSchemaRef("", openapi3.NewSchema())
		}
	case "integer":
		s = openapi3.NewIntegerSchema()
	case "number":
		s = openapi3.NewFloat64Schema()
	case "boolean":
		s = openapi3.NewBoolSchema()
	case "string":
		s = openapi3.NewStringSchema()
		s.Format = d.Format
		for _, v := range d.Enum {
			s.Enum = append(s.Enum, v)
		}
	default: // only nulls seen
		s = openapi3.NewSchema()
	}
	s.Nullable = d.Nullable && d.Type != ""
	if d.Example != nil && d.Type != "object" && d.Type != "array" && (d.Type == "string" || d.Sensitive == "") {
		s.Example = d.Example
	}
	if len(d.Properties) > 0 {
		if s.Properties == nil {
			s.Properties = openapi3.Schemas{}
		}
		for k, p := range d.Properties {
			ps := fromDoc(p)
			if p.Presence > 0 && p.Presence < 1 {
				ps.Extensions = map[string]any{"x-apiscout-presence": p.Presence}
			}
			s.Properties[k] = openapi3.NewSchemaRef("", ps)
		}
		s.Required = append([]string(nil), d.Required...)
	}
	if d.Sensitive != "" {
		if s.Extensions == nil {
			s.Extensions = map[string]any{}
		}
		s.Extensions["x-apiscout-sensitive"] = d.Sensitive
	}
	return s
}

// schemaOf rebuilds a nested schema from JSON paths (/a/b, arrays /a/[]).
func schemaOf(fields map[string]string) *openapi3.Schema {
	root := openapi3.NewObjectSchema()
	paths := sortedKeys(fields)
	for _, p := range paths {
		if p == "/" {
			continue
		}
		cur := root
		parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
		for i, part := range parts {
			last := i == len(parts)-1
			typ := fields["/"+strings.Join(parts[:i+1], "/")]
			if part == "[]" {
				if cur.Items == nil {
					cur.Items = openapi3.NewSchemaRef("", typeSchema(typ))
				}
				cur = cur.Items.Value
				continue
			}
			if cur.Type == nil || !cur.Type.Is("object") {
				if cur.Type != nil && cur.Type.Is("array") {
					break
				}
				cur.Type = &openapi3.Types{"object"}
			}
			if cur.Properties == nil {
				cur.Properties = openapi3.Schemas{}
			}
			child, ok := cur.Properties[part]
			if !ok {
				child = openapi3.NewSchemaRef("", typeSchema(typ))
				cur.Properties[part] = child
			}
			if !last {
				cur = child.Value
			}
		}
	}
	return root
}

// typeSchema is the schema of an inferred type: a parameter's (integer,
// uuid, date, email, ...) or a body field's (object, array, null, ...).
func typeSchema(typ string) *openapi3.Schema {
	switch typ {
	case "object":
		return openapi3.NewObjectSchema()
	case "array":
		return openapi3.NewArraySchema()
	case "integer":
		return openapi3.NewIntegerSchema()
	case "number":
		return openapi3.NewFloat64Schema()
	case "boolean":
		return openapi3.NewBoolSchema()
	case "null":
		return openapi3.NewSchema()
	case "uuid":
		return openapi3.NewUUIDSchema()
	case "date", "email":
		return openapi3.NewStringSchema().WithFormat(typ)
	}
	return openapi3.NewStringSchema()
}
