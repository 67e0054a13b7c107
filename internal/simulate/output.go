package simulate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// Truth is what a perfect inventory of the scenario says.
type Truth struct {
	Scenario string         `json:"scenario"`
	Seed     uint64         `json:"seed"`
	Services []TruthService `json:"services"`
}

// TruthService lists a service's real endpoints.
type TruthService struct {
	Host      string          `json:"host"`
	Endpoints []TruthEndpoint `json:"endpoints"`
}

// TruthEndpoint is one real endpoint and its true classification.
type TruthEndpoint struct {
	Method         string `json:"method"`
	Path           string `json:"path"`
	Classification string `json:"classification"`
	// Operation is the GraphQL operation, JSON-RPC method or MCP tool
	// carried in the body of a POST, for endpoints that share a path.
	Operation string `json:"operation,omitempty"`
	Auth      string `json:"auth"`
	Called    bool   `json:"called"`
}

// MakeTruth lists the scenario's endpoints; called says whether the
// endpoint was called at least once (orphans never are).
func MakeTruth(o Options, res *Result, called map[string]bool) Truth {
	t := Truth{Scenario: o.Scenario, Seed: o.Seed}
	for _, s := range res.Services {
		ts := TruthService{Host: s.Host}
		for _, e := range s.Endpoints {
			p := TruthTemplate(e.Template)
			ts.Endpoints = append(ts.Endpoints, TruthEndpoint{Method: e.Method, Path: p, Classification: e.Class,
				Operation: e.Operation, Auth: e.Auth, Called: called[s.Host+" "+e.Method+" "+p]})
		}
		t.Services = append(t.Services, ts)
	}
	return t
}

// Spec renders the OpenAPI 3 document the service's team published: it
// leaves out the shadow endpoints and marks the zombies deprecated.
func Spec(s Service) ([]byte, error) {
	paths := map[string]any{}
	for _, e := range s.Endpoints {
		if e.Class == "shadow" {
			continue
		}
		p := TruthTemplate(e.Template)
		op := map[string]any{
			"operationId": strings.ToLower(e.Method) + opName(p),
			"responses": map[string]any{
				"200": map[string]any{"description": "OK", "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}},
				"404": map[string]any{"description": "Not found"},
			},
		}
		if e.Class == "zombie" {
			op["deprecated"] = true
		}
		if params := pathParams(e.Template); len(params) > 0 {
			op["parameters"] = params
		}
		switch e.Auth {
		case "bearer":
			op["security"] = []any{map[string]any{"bearerAuth": []any{}}}
		case "apikey":
			op["security"] = []any{map[string]any{"apiKey": []any{}}}
		case "cookie":
			op["security"] = []any{map[string]any{"session": []any{}}}
		}
		if e.Req != nil {
			op["requestBody"] = map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}}
		}
		item, _ := paths[p].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[p] = item
		}
		item[strings.ToLower(e.Method)] = op
	}
	doc := map[string]any{
		"openapi": "3.0.3",
		"info":    map[string]any{"title": s.Title, "version": "1.0.0"},
		"servers": []any{map[string]any{"url": "https://" + s.Host}},
		"paths":   paths,
		"components": map[string]any{"securitySchemes": map[string]any{
			"bearerAuth": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
			"apiKey":     map[string]any{"type": "apiKey", "in": "header", "name": "X-API-Key"},
			"session":    map[string]any{"type": "apiKey", "in": "cookie", "name": "sid"},
		}},
	}
	return yaml.Marshal(doc)
}

func opName(p string) string {
	var b strings.Builder
	for _, part := range strings.Split(p, "/") {
		part = strings.Trim(part, "{}")
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

var styleSchema = map[string]map[string]any{
	"int":   {"type": "integer"},
	"uuid":  {"type": "string", "format": "uuid"},
	"date":  {"type": "string", "format": "date"},
	"email": {"type": "string", "format": "email"},
}

func pathParams(tmpl string) []any {
	var out []any
	for {
		i := strings.IndexByte(tmpl, '{')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(tmpl[i:], '}') + i
		name, style, _ := strings.Cut(tmpl[i+1:j], ":")
		schema := styleSchema[style]
		if schema == nil {
			schema = map[string]any{"type": "string"}
		}
		out = append(out, map[string]any{"name": name, "in": "path", "required": true, "schema": schema})
		tmpl = tmpl[j+1:]
	}
}

// WriteFiles writes truth.json, labels.jsonl and specs/<host>.yaml.
func WriteFiles(dir string, o Options, res *Result, called map[string]bool) error {
	if err := os.MkdirAll(filepath.Join(dir, "specs"), 0o755); err != nil {
		return err
	}
	truth, _ := json.MarshalIndent(MakeTruth(o, res, called), "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "truth.json"), append(truth, '\n'), 0o644); err != nil {
		return err
	}
	var labels strings.Builder
	for _, l := range res.Labels {
		b, _ := json.Marshal(l)
		labels.Write(b)
		labels.WriteByte('\n')
	}
	if err := os.WriteFile(filepath.Join(dir, "labels.jsonl"), []byte(labels.String()), 0o644); err != nil {
		return err
	}
	for _, s := range res.Services {
		spec, err := Spec(s)
		if err != nil {
			return fmt.Errorf("spec of %s: %w", s.Host, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "specs", s.Host+".yaml"), spec, 0o644); err != nil {
			return err
		}
	}
	return nil
}
