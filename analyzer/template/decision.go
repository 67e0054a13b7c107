package template

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// Action is what an operator decided about a template.
type Action string

// The actions. A pin names a whole template that wins over inference; a
// merge makes one position a parameter, whatever its literal values; a
// split keeps a literal value out of its position's parameter
// (split /users/me) or, when the template ends in a parameter, makes the
// whole position literal again (split /files/{name}).
const (
	Pin   Action = "pin"
	Split Action = "split"
	Merge Action = "merge"
)

// Decision is an operator's ruling on the templates of a service, or of
// every service. It is data: kept in the configuration
// (analyzer.templates), made through the REST API and saved with the
// analyzer's state.
type Decision struct {
	Action   Action `json:"action"`
	Template string `json:"template"`
	// Service the decision applies to; empty for every service. A host
	// without a port covers the host on every port.
	Service string `json:"service,omitempty"`
}

// String renders the decision in the form ParseDecision reads.
func (d Decision) String() string {
	s := string(d.Action) + " " + d.Template
	if d.Service != "" {
		s += " on " + d.Service
	}
	return s
}

// Limits on what a decision may name: a template longer than a request
// line could carry, or deeper than the paths the tree walks without
// allocating, is a typo, not a decision.
const (
	maxTemplateLen = 1024
	maxParamName   = 64
	maxServiceLen  = 261 // a DNS name and a port
)

// ErrDecision marks a decision that does not parse or validate.
var ErrDecision = errors.New("invalid template decision")

// ParseDecision reads "[ACTION] /template [on SERVICE]". ACTION is pin,
// split or merge; without one, or with an HTTP method in its place (the
// older form of analyzer.templates, "GET /users/{userId}"), the template
// is pinned: templates are per path, so the method is ignored.
func ParseDecision(s string) (Decision, error) {
	f := strings.Fields(s)
	var d Decision
	if n := len(f); n >= 2 && f[n-2] == "on" {
		d.Service, f = f[n-1], f[:n-2]
	}
	switch {
	case len(f) == 1 && strings.HasPrefix(f[0], "/"):
		d.Action, d.Template = Pin, f[0]
	case len(f) == 2 && strings.HasPrefix(f[1], "/"):
		d.Template = f[1]
		switch a := Action(f[0]); {
		case a == Pin || a == Split || a == Merge:
			d.Action = a
		case isMethod(f[0]):
			d.Action = Pin
		default:
			return Decision{}, fmt.Errorf("%w: %q: action %q is not pin, split or merge", ErrDecision, s, f[0])
		}
	default:
		return Decision{}, fmt.Errorf("%w: %q: want [pin|split|merge] /path/{param} [on SERVICE]", ErrDecision, s)
	}
	if err := d.Validate(); err != nil {
		return Decision{}, err
	}
	return d, nil
}

func isMethod(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for _, r := range s {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// Validate checks the action, the template and the service. Errors wrap
// ErrDecision and say what to change.
func (d Decision) Validate() error {
	if err := validTemplate(d.Template); err != nil {
		return fmt.Errorf("%w: %v", ErrDecision, err)
	}
	segs := split(d.Template)
	switch d.Action {
	case Pin:
	case Merge:
		if len(segs) == 0 || !isParam(segs[len(segs)-1]) {
			return fmt.Errorf("%w: merge %s: the template must end in the parameter the values become, e.g. /reports/{report}", ErrDecision, d.Template)
		}
	case Split:
		if len(segs) == 0 {
			return fmt.Errorf("%w: split %s: name the value to keep literal (/users/me) or the position to make literal (/files/{name})", ErrDecision, d.Template)
		}
	default:
		return fmt.Errorf("%w: action %q is not pin, split or merge", ErrDecision, d.Action)
	}
	if d.Service != "" {
		if err := validService(d.Service); err != nil {
			return fmt.Errorf("%w: %v", ErrDecision, err)
		}
	}
	return nil
}

// validTemplate accepts /a/{b}/c: an absolute path, no empty segment, no
// trailing slash, parameters as whole segments with distinct names, no
// query, fragment, space or control character.
func validTemplate(t string) error {
	switch {
	case t == "":
		return errors.New("empty template")
	case len(t) > maxTemplateLen:
		return fmt.Errorf("template longer than %d bytes", maxTemplateLen)
	case t[0] != '/':
		return fmt.Errorf("template %q does not start with /", t)
	case t == "/":
		return nil
	case strings.HasSuffix(t, "/"):
		return fmt.Errorf("template %q ends in /", t)
	}
	segs := strings.Split(t[1:], "/")
	if len(segs) > maxSegs {
		return fmt.Errorf("template %q has more than %d segments", t, maxSegs)
	}
	names := map[string]bool{}
	for _, s := range segs {
		if s == "" {
			return fmt.Errorf("template %q has an empty segment (//)", t)
		}
		for _, r := range s {
			if r == '?' || r == '#' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
				return fmt.Errorf("template %q: segment %q holds %q, which a path template cannot", t, s, r)
			}
		}
		open, closing := strings.Count(s, "{"), strings.Count(s, "}")
		if open == 0 && closing == 0 {
			continue
		}
		if !isParam(s) || open != 1 || closing != 1 {
			return fmt.Errorf("template %q: segment %q: a parameter is a whole segment, written {name}", t, s)
		}
		name := s[1 : len(s)-1]
		if !validName(name) {
			return fmt.Errorf("template %q: parameter name %q: use letters, digits, _ and - (at most %d), starting with a letter or _", t, name, maxParamName)
		}
		if names[name] {
			return fmt.Errorf("template %q: parameter {%s} appears twice", t, name)
		}
		names[name] = true
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > maxParamName {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'):
		case i > 0 && (r == '-' || (r >= '0' && r <= '9')):
		default:
			return false
		}
	}
	return true
}

// validService accepts a host, optionally with a port, as the inventory
// names services.
func validService(s string) error {
	if len(s) > maxServiceLen {
		return fmt.Errorf("service %q is longer than %d bytes", s, maxServiceLen)
	}
	for _, r := range s {
		if r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("service %q holds %q; name a host, optionally with :port", s, r)
		}
	}
	return nil
}

// Conflicts reports whether two decisions contradict each other: one
// makes a position a parameter (pin or merge) and the other makes the same
// position literal (split /files/{name} beside merge /files/{file}). A
// value split under a merge or a pin is not a conflict: it is the
// exception to it.
func (d Decision) Conflicts(o Decision) bool {
	if d.Service != o.Service || (d.Action == Split) == (o.Action == Split) {
		return false
	}
	sp := d
	if o.Action == Split {
		sp = o
	}
	segs := split(sp.Template)
	return len(segs) > 0 && isParam(segs[len(segs)-1]) && shape(d.Template) == shape(o.Template)
}

// shape renders a template with its parameter names left out.
func shape(t string) string {
	segs := split(t)
	for i, s := range segs {
		if isParam(s) {
			segs[i] = "{}"
		}
	}
	return "/" + strings.Join(segs, "/")
}
