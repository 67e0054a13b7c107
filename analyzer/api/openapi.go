package api

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"gopkg.in/yaml.v3"
)

// openapiYAML describes this API. It is checked by the tests: every route
// of the router is in it, and responses validate against it.
//
//go:embed openapi.yaml
var openapiYAML []byte

var docOnce = sync.OnceValues(func() ([]byte, error) {
	l := openapi3.NewLoader()
	doc, err := l.LoadFromData(openapiYAML)
	if err != nil {
		return nil, fmt.Errorf("api document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("api document: %w", err)
	}
	return json.MarshalIndent(doc, "", "  ")
})

// Document returns the OpenAPI 3 document of this API as JSON.
func Document() ([]byte, error) { return docOnce() }

// CheckSpec reports whether doc (JSON or YAML) is an OpenAPI 3 or a
// Swagger 2 document that validates; the error wraps ErrBadSpec.
func CheckSpec(doc []byte) error {
	var head struct {
		Swagger string `yaml:"swagger"`
		OpenAPI string `yaml:"openapi"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return fmt.Errorf("%w: not JSON or YAML: %v", ErrBadSpec, err)
	}
	var d3 *openapi3.T
	switch {
	case head.OpenAPI != "":
		var err error
		if d3, err = openapi3.NewLoader().LoadFromData(doc); err != nil {
			return fmt.Errorf("%w: %v", ErrBadSpec, err)
		}
	case head.Swagger != "":
		var d2 openapi2.T
		js, err := yamlToJSON(doc)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadSpec, err)
		}
		if err := json.Unmarshal(js, &d2); err != nil {
			return fmt.Errorf("%w: %v", ErrBadSpec, err)
		}
		if d3, err = openapi2conv.ToV3(&d2); err != nil {
			return fmt.Errorf("%w: %v", ErrBadSpec, err)
		}
	default:
		return fmt.Errorf("%w: neither an \"openapi\" nor a \"swagger\" version field", ErrBadSpec)
	}
	if err := d3.Validate(context.Background(), openapi3.DisableExamplesValidation()); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSpec, err)
	}
	return nil
}

func yamlToJSON(doc []byte) ([]byte, error) {
	if b := bytes.TrimSpace(doc); len(b) > 0 && b[0] == '{' {
		return b, nil
	}
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		return nil, err
	}
	return json.Marshal(stringKeys(v))
}

// stringKeys turns YAML maps with non-string keys (an unquoted 200 under
// responses) into JSON-encodable ones.
func stringKeys(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			x[k] = stringKeys(val)
		}
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, val := range x {
			m[fmt.Sprint(k)] = stringKeys(val)
		}
		return m
	case []any:
		for i := range x {
			x[i] = stringKeys(x[i])
		}
	}
	return v
}
