package analyzer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/template"
)

// Operator decisions on path templates (pin, split, merge; see
// template.Apply) are held by the Engine and applied to the template tree
// of every service they name: the decisions of analyzer.templates, read
// once, and the ones made while the analyzer runs (AddTemplate), which the
// caller keeps across restarts (OperatorTemplates, SetTemplates) and which
// travel in Snapshot.
//
// A decision made while endpoints exist regroups them at once:
//
//   - pin and merge: endpoints whose template the decision generalises
//     are added together into the new template's endpoint (calls,
//     statuses, fields, clients, latency, first and last seen).
//   - split: the calls counted before stay on the parameter's endpoint,
//     since they cannot be told apart again; the split-off values count
//     from the decision onward, each on an endpoint of its own. A whole
//     position split (split /files/{name}) leaves /files/{name} with its
//     history and no new calls.
//
// Later traffic follows the decision. Withdrawing one (RemoveTemplate)
// stops it from shaping later traffic but leaves what it grouped grouped:
// the opposite decision undoes a grouping.

// TemplateDecision is a decision in force, with where it comes from.
type TemplateDecision struct {
	template.Decision
	// Config marks the decisions of analyzer.templates: they change there,
	// not through RemoveTemplate.
	Config bool `json:"config,omitempty"`
}

// Errors of AddTemplate and RemoveTemplate (invalid decisions wrap
// template.ErrDecision).
var (
	ErrTemplateConflict   = errors.New("template decision conflicts with one in force")
	ErrTemplateFromConfig = errors.New("template decision comes from analyzer.templates")
	ErrUnknownTemplate    = errors.New("no such template decision")
)

// templateState is the Engine's list of decisions, the configured ones
// first, then the others in the order they were made.
type templateState struct {
	list []TemplateDecision
}

// readTemplateConfig parses analyzer.templates for New, which refuses a
// bad entry with an error naming it. (The configuration package cannot
// check them itself: the sensor shares it and must not reach the
// analyzer.)
func (e *Engine) readTemplateConfig() error {
	var errs []error
	for i, line := range e.cfg.Templates {
		d, err := template.ParseDecision(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("analyzer.templates[%d]: %w", i, err))
			continue
		}
		for _, x := range e.tmpl.list {
			if d.Conflicts(x.Decision) {
				errs = append(errs, fmt.Errorf("analyzer.templates[%d]: %w: %s contradicts %s", i, ErrTemplateConflict, d, x.Decision))
			}
		}
		if !e.inForce(d) {
			e.tmpl.list = append(e.tmpl.list, TemplateDecision{Decision: d, Config: true})
		}
	}
	return errors.Join(errs...)
}

// applyTemplates puts the decisions that name a new service into its tree.
func (e *Engine) applyTemplates(s *service) {
	for _, d := range e.tmpl.list {
		if covers(d.Service, s.host) {
			s.tree.Apply(d.Decision)
		}
	}
}

// covers tells whether a decision's service names host: every service,
// the host itself, or the host on any port.
func covers(service, host string) bool {
	return service == "" || service == host || service == hostOnly(host)
}

func (e *Engine) inForce(d template.Decision) bool {
	for _, x := range e.tmpl.list {
		if x.Decision == d {
			return true
		}
	}
	return false
}

// Templates lists the decisions in force for service, those for every
// service included, in the order they were made; service "" lists the ones
// for every service alone.
func (e *Engine) Templates(service string) []TemplateDecision {
	out := []TemplateDecision{}
	for _, d := range e.tmpl.list {
		if d.Service == "" || (service != "" && covers(d.Service, service)) {
			out = append(out, d)
		}
	}
	return out
}

// AddTemplate puts a decision in force for the services it names, now and
// when they first appear, and regroups their endpoints (see the policy
// above). added is false when the decision was in force already.
func (e *Engine) AddTemplate(d template.Decision) (added bool, err error) {
	if err := d.Validate(); err != nil {
		return false, err
	}
	if e.inForce(d) {
		return false, nil
	}
	for _, x := range e.tmpl.list {
		if d.Conflicts(x.Decision) {
			return false, fmt.Errorf("%w: %s contradicts %s", ErrTemplateConflict, d, x.Decision)
		}
	}
	e.tmpl.list = append(e.tmpl.list, TemplateDecision{Decision: d})
	for _, s := range e.sortedServices() {
		if covers(d.Service, s.host) {
			s.tree.Apply(d)
			e.regroupDecided(s)
		}
	}
	e.log.Info("template decision in force", zap.Stringer("decision", d))
	return true, nil
}

// RemoveTemplate withdraws a decision made through AddTemplate.
func (e *Engine) RemoveTemplate(d template.Decision) error {
	i := -1
	for j, x := range e.tmpl.list {
		if x.Decision == d {
			i = j
		}
	}
	switch {
	case i < 0:
		return fmt.Errorf("%w: %s", ErrUnknownTemplate, d)
	case e.tmpl.list[i].Config:
		return fmt.Errorf("%w: %s (change it there)", ErrTemplateFromConfig, d)
	}
	e.tmpl.list = append(e.tmpl.list[:i], e.tmpl.list[i+1:]...)
	for _, s := range e.sortedServices() {
		if !covers(d.Service, s.host) {
			continue
		}
		s.tree.Withdraw(d)
		if d.Action == template.Pin && s.spec != nil {
			for _, op := range s.spec.Ops {
				s.tree.Pin(op.Path) // the spec still documents it
			}
		}
	}
	e.log.Info("template decision withdrawn", zap.Stringer("decision", d))
	return nil
}

// OperatorTemplates lists the decisions made through AddTemplate, in
// order: what the caller keeps across restarts.
func (e *Engine) OperatorTemplates() []template.Decision {
	var out []template.Decision
	for _, d := range e.tmpl.list {
		if !d.Config {
			out = append(out, d.Decision)
		}
	}
	return out
}

// SetTemplates makes ds the decisions in force besides the configured
// ones: those missing are added in order, those not in ds withdrawn.
// Decisions that are invalid or contradict one in force are skipped and
// reported together.
func (e *Engine) SetTemplates(ds []template.Decision) error {
	keep := map[template.Decision]bool{}
	for _, d := range ds {
		keep[d] = true
	}
	for _, d := range e.OperatorTemplates() {
		if !keep[d] {
			if err := e.RemoveTemplate(d); err != nil {
				return err
			}
		}
	}
	var errs []error
	for _, d := range ds {
		if _, err := e.AddTemplate(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (e *Engine) sortedServices() []*service {
	out := make([]*service, 0, len(e.services))
	for _, s := range e.services {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].host < out[j].host })
	return out
}

// regroupDecided moves each endpoint to the template its paths take after
// a decision (template.Tree.Route), adding it to the endpoint already
// there.
func (e *Engine) regroupDecided(s *service) {
	e.relocate(s, s.tree.Route, true)
	s.promotions = s.tree.Promotions
}

// snapshotDoc is a checkpoint that carries the operator's decisions
// beside the services. Restore also reads the bare list of services.
type snapshotDoc struct {
	Services  json.RawMessage     `json:"services"`
	Templates []template.Decision `json:"templates,omitempty"`
}

func (e *Engine) snapshot(v any) ([]byte, error) {
	svcs, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(snapshotDoc{Services: svcs, Templates: e.OperatorTemplates()})
}

// restoreTemplates puts the decisions of a checkpoint in force, before
// its services are restored so that they are built under them. A
// checkpoint without decisions (a bare list of services, or a partition's
// services and baselines) has none to restore.
func (e *Engine) restoreTemplates(b []byte) error {
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil
	}
	var doc snapshotDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	for _, d := range doc.Templates {
		if _, err := e.AddTemplate(d); err != nil {
			e.log.Warn("checkpoint template decision ignored", zap.Error(err))
		}
	}
	return nil
}
