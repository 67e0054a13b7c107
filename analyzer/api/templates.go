package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/template"
)

// TemplateEditor is how admins pin, split and merge a service's path
// templates while the analyzer runs (see template.Apply for what each
// does, and the analyzer for how endpoints are regrouped); implementations
// keep the decisions across restarts and must be safe for concurrent use.
type TemplateEditor interface {
	// Templates lists the decisions in force for service, those for every
	// service included, in the order they were made; service "" lists the
	// ones for every service alone.
	Templates(ctx context.Context, service string) ([]TemplateRule, error)
	// AddTemplate puts d in force (Service "" is every service); added is
	// false when it was in force already. Errors wrap ErrTemplateConflict
	// when d contradicts a decision in force, template.ErrDecision when d
	// is invalid.
	AddTemplate(ctx context.Context, d template.Decision) (added bool, err error)
	// RemoveTemplate withdraws d: ErrNotFound when it is not in force, an
	// error wrapping ErrTemplateConflict when it comes from the
	// configuration.
	RemoveTemplate(ctx context.Context, d template.Decision) error
}

// TemplateRule is a decision in force and where it comes from.
type TemplateRule struct {
	template.Decision
	// Config marks the decisions of analyzer.templates.
	Config bool
}

// ErrTemplateConflict marks a decision that cannot be made or withdrawn
// as asked; the API answers 409 with the message.
var ErrTemplateConflict = errors.New("template decision conflict")

// allServices is the {service} of decisions for every service.
const allServices = "*"

// maxDecisionBytes bounds a decision's request body.
const maxDecisionBytes = 4 << 10

// templateItem is a decision as the API renders it.
type templateItem struct {
	// ID names the decision within its service's list, for DELETE.
	ID       string `json:"id"`
	Action   string `json:"action"`
	Template string `json:"template"`
	// Service is "*" for a decision on every service.
	Service string `json:"service"`
	// Source is config (analyzer.templates, changed there) or api.
	Source string `json:"source"`
}

type templateList struct {
	Service string         `json:"service"`
	Items   []templateItem `json:"items"`
}

// templateID is a decision's id: its action and template in unpadded
// base64url, so that it resolves without a lookup table.
func templateID(d template.Decision) string {
	return base64.RawURLEncoding.EncodeToString([]byte(string(d.Action) + " " + d.Template))
}

func itemOf(r TemplateRule) templateItem {
	it := templateItem{ID: templateID(r.Decision), Action: string(r.Action), Template: r.Template, Service: r.Service, Source: "api"}
	if it.Service == "" {
		it.Service = allServices
	}
	if r.Config {
		it.Source = "config"
	}
	return it
}

// templateService reads {service}: "*" is every service.
func templateService(r *http.Request) (string, error) {
	svc := r.PathValue("service")
	if svc == allServices {
		return "", nil
	}
	if err := (template.Decision{Action: template.Pin, Template: "/", Service: svc}).Validate(); err != nil || svc == "" {
		return "", badRequest("service %q: name a host, optionally with :port, or * for every service", svc)
	}
	return svc, nil
}

// templateTarget is the editor and the service of a template request.
func (s *Server) templateTarget(r *http.Request) (TemplateEditor, string, error) {
	if s.opt.Templates == nil {
		return nil, "", &httpError{code: http.StatusNotImplemented, msg: "this server does not take template decisions (set analyzer.templates instead)"}
	}
	svc, err := templateService(r)
	return s.opt.Templates, svc, err
}

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) error {
	ed, svc, err := s.templateTarget(r)
	if err != nil {
		return err
	}
	rules, err := ed.Templates(r.Context(), svc)
	if err != nil {
		return err
	}
	body := templateList{Service: r.PathValue("service"), Items: []templateItem{}}
	for _, rule := range rules {
		body.Items = append(body.Items, itemOf(rule))
	}
	return writeJSON(w, http.StatusOK, body)
}

func (s *Server) addTemplate(w http.ResponseWriter, r *http.Request) error {
	ed, svc, err := s.templateTarget(r)
	if err != nil {
		return err
	}
	b, err := readBody(r, maxDecisionBytes)
	if err != nil {
		return err
	}
	var in struct {
		Action   string `json:"action"`
		Template string `json:"template"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return badRequest(`body: want {"action": "pin|split|merge", "template": "/path/{param}"}: %v`, err)
	}
	if dec.More() {
		return badRequest("body: one JSON object, please")
	}
	d := template.Decision{Action: template.Action(in.Action), Template: in.Template, Service: svc}
	if err := d.Validate(); err != nil {
		return badRequest("%v", err)
	}
	added, err := ed.AddTemplate(r.Context(), d)
	if err != nil {
		return err
	}
	code := http.StatusOK
	if added {
		code = http.StatusCreated
		s.opt.Log.Info("template decision made", zap.Stringer("decision", d))
	}
	return writeJSON(w, code, itemOf(TemplateRule{Decision: d}))
}

func (s *Server) removeTemplate(w http.ResponseWriter, r *http.Request) error {
	ed, svc, err := s.templateTarget(r)
	if err != nil {
		return err
	}
	raw, err := base64.RawURLEncoding.DecodeString(r.PathValue("id"))
	if err != nil {
		return ErrNotFound
	}
	d, err := template.ParseDecision(string(raw))
	if err != nil {
		return ErrNotFound
	}
	d.Service = svc
	if err := ed.RemoveTemplate(r.Context(), d); err != nil {
		return err
	}
	s.opt.Log.Info("template decision withdrawn", zap.Stringer("decision", d))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Templates implements TemplateEditor over decisions held in memory (no
// inventory behind them).
func (m *Memory) Templates(_ context.Context, service string) ([]TemplateRule, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := []TemplateRule{}
	for _, r := range m.templates {
		if r.Service == "" || (service != "" && r.Service == service) {
			out = append(out, r)
		}
	}
	return out, nil
}

// AddTemplate implements TemplateEditor.
func (m *Memory) AddTemplate(_ context.Context, d template.Decision) (bool, error) {
	if err := d.Validate(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.templates {
		if r.Decision == d {
			return false, nil
		}
		if d.Conflicts(r.Decision) {
			return false, fmt.Errorf("%w: %s contradicts %s", ErrTemplateConflict, d, r.Decision)
		}
	}
	m.templates = append(m.templates, TemplateRule{Decision: d})
	return true, nil
}

// RemoveTemplate implements TemplateEditor.
func (m *Memory) RemoveTemplate(_ context.Context, d template.Decision) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.templates, func(r TemplateRule) bool { return r.Decision == d })
	switch {
	case i < 0:
		return ErrNotFound
	case m.templates[i].Config:
		return fmt.Errorf("%w: %s comes from analyzer.templates; change it there", ErrTemplateConflict, d)
	}
	m.templates = slices.Delete(m.templates, i, i+1)
	return nil
}

// SetConfigTemplates sets the decisions Memory reports as configured.
func (m *Memory) SetConfigTemplates(ds []template.Decision) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.templates = slices.DeleteFunc(m.templates, func(r TemplateRule) bool { return r.Config })
	for _, d := range ds {
		m.templates = append(m.templates, TemplateRule{Decision: d, Config: true})
	}
}
