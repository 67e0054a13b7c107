package template

import "strings"

// Apply puts an operator's decision into the tree; later paths follow it.
// The decision's Service is not looked at: the caller picks the trees.
//
//   - pin: the template wins over inference for every path it matches
//     (as Pin).
//   - merge /reports/{report}: the position after /reports is the
//     parameter {report} for every value, those seen before included,
//     except values a split keeps.
//   - split /users/me: "me" stays a literal segment beside the parameter
//     of its position, and pins with a parameter there yield to it.
//   - split /files/{name}: every value at the position is literal again;
//     the parameter and what was learnt under it are dropped, and pins
//     with a parameter there are off. Each value then costs a node, so
//     past MaxNodes new values still become a parameter.
//
// The literal segments a decision names are held: never merged into a
// parameter, whatever traffic does. Templates published before are
// mapped to the new ones by Route.
func (t *Tree) Apply(d Decision) {
	key := string(d.Action) + " " + d.Template
	if t.applied == nil {
		t.applied = map[string]int{}
	}
	if t.applied[key]++; t.applied[key] > 1 {
		return // the same ruling for the service and for all services
	}
	segs := split(d.Template)
	switch d.Action {
	case Pin:
		t.Pin(d.Template)
	case Merge:
		n := t.walk(segs[:len(segs)-1], 1)
		t.mergeAt(n, segs[len(segs)-1])
	case Split:
		t.splits = append(t.splits, segs)
		last := segs[len(segs)-1]
		if isParam(last) {
			t.staticAt(t.walk(segs[:len(segs)-1], 1))
		} else {
			t.walk(segs, 1)
		}
		t.reconcile()
	}
}

// Withdraw takes a decision back from later paths. What it grouped stays
// grouped (promotion is one way, and counts cannot be told apart again):
// a withdrawn pin no longer matches, a withdrawn split lets inference
// merge the value or promote the position again, a withdrawn merge leaves
// its parameter as inference would have made it. The segments it named are
// no longer held.
func (t *Tree) Withdraw(d Decision) {
	key := string(d.Action) + " " + d.Template
	if t.applied[key] == 0 {
		return
	}
	if t.applied[key]--; t.applied[key] > 0 {
		return
	}
	delete(t.applied, key)
	segs := split(d.Template)
	switch d.Action {
	case Pin:
		t.Unpin(d.Template)
		return
	case Merge:
		t.walk(segs[:len(segs)-1], -1)
		return
	}
	path := strings.Join(segs, "/")
	for i, sp := range t.splits {
		if strings.Join(sp, "/") == path {
			t.splits = append(t.splits[:i], t.splits[i+1:]...)
			last := segs[len(segs)-1]
			if isParam(last) {
				t.walk(segs[:len(segs)-1], -1).static = false
			} else {
				t.walk(segs, -1)
			}
			t.reconcile()
			return
		}
	}
}

// Unpin removes a pinned template (one a spec still documents must be
// pinned again by the caller).
func (t *Tree) Unpin(template string) {
	for i, p := range t.pinned {
		if p.template == template && !p.derived {
			t.pinned = append(t.pinned[:i], t.pinned[i+1:]...)
			t.reconcile()
			return
		}
	}
}

// walk follows the segments of a decision from the root, creating what is
// missing: a literal segment is a child (held, or released, by delta), a
// parameter the position's parameter node (named as the decision names it
// when new).
func (t *Tree) walk(segs []string, delta int) *node {
	n := t.root
	for _, s := range segs {
		if isParam(s) {
			if n.param == nil {
				n.param = &node{children: map[string]*node{}, name: s[1 : len(s)-1], paramKind: Literal}
				t.nodes++
			}
			n = n.param
			continue
		}
		c := n.children[s]
		if c == nil {
			s = strings.Clone(s)
			c = &node{seg: s, children: map[string]*node{}}
			n.children[s] = c
			t.nodes++
		}
		was := c.holds > 0
		c.holds = max(c.holds+delta, 0)
		switch {
		case !was && c.holds > 0:
			n.keeps++
		case was && c.holds == 0:
			n.keeps--
		}
		n = c
	}
	return n
}

// held returns the child for s when a decision holds it.
func (n *node) held(s string) *node {
	if n.keeps == 0 {
		return nil
	}
	if c := n.children[s]; c != nil && c.holds > 0 {
		return c
	}
	return nil
}

// mergeAt makes n's position the parameter named by seg ({name}) for
// every value but the held ones.
func (t *Tree) mergeAt(n *node, seg string) {
	name := seg[1 : len(seg)-1]
	n.static = false
	if n.param == nil {
		n.param = &node{children: map[string]*node{}, name: name, paramKind: Literal}
		t.nodes++
	}
	n.param.name = name
	for v, c := range n.children {
		if c.holds > 0 {
			continue
		}
		merge(n.param, c)
		delete(n.children, v)
	}
	n.promoted = true
	t.Promotions++ // cached templates may name the old parameter
}

// staticAt makes n's position literal for every value.
func (t *Tree) staticAt(n *node) {
	n.static = true
	n.promoted = false
	if n.param != nil {
		t.nodes -= n.param.size()
		n.param = nil
	}
	t.Promotions++
}

func (n *node) size() int {
	c := 1
	for _, ch := range n.children {
		c += ch.size()
	}
	if n.param != nil {
		c += n.param.size()
	}
	return c
}

// reconcile rebuilds the pins the splits derive or turn off.
func (t *Tree) reconcile() {
	base := make([]pinned, 0, len(t.pinned))
	for _, p := range t.pinned {
		if !p.derived {
			p.off = t.shadowed(p.segs)
			base = append(base, p)
		}
	}
	out := base
	have := map[string]bool{}
	for _, p := range base {
		have[p.template] = true
	}
	for _, sp := range t.splits {
		last := len(sp) - 1
		if isParam(sp[last]) {
			continue
		}
		for _, p := range base {
			if p.off || len(p.segs) <= last || !isParam(p.segs[last]) || !prefixOf(sp[:last], p.segs[:last]) {
				continue
			}
			segs := append([]string(nil), p.segs...)
			segs[last] = sp[last]
			tmpl := "/" + strings.Join(segs, "/")
			if !have[tmpl] {
				have[tmpl] = true
				out = append(out, pinned{template: tmpl, segs: segs, derived: true})
			}
		}
	}
	t.pinned = out
	t.sortPins()
}

// shadowed tells whether a static split covers a parameter of the pin.
func (t *Tree) shadowed(segs []string) bool {
	for _, sp := range t.splits {
		last := len(sp) - 1
		if isParam(sp[last]) && len(segs) > last && isParam(segs[last]) && prefixOf(sp[:last], segs[:last]) {
			return true
		}
	}
	return false
}

// prefixOf tells whether a split's prefix names the same positions as a
// pin's: equal literals, parameters against parameters, or a literal the
// pin's parameter would take.
func prefixOf(split, pin []string) bool {
	for i, s := range split {
		p := pin[i]
		switch {
		case isParam(s):
			if !isParam(p) {
				return false
			}
		case s != p && !isParam(p):
			return false
		}
	}
	return true
}

// Route maps a template published earlier to the one its paths take now,
// after decisions, without learning anything: a matching pin first (its
// literals must be the template's own), then the tree, where a literal
// segment still present stays and one merged away takes its position's
// parameter. A template the tree no longer leads to (a parameter a split
// dropped) stays as it is.
func (t *Tree) Route(template string) string {
	segs := split(template)
	if m, ok := t.matchPinned(segs); ok {
		return m.Template
	}
	n := t.root
	out := make([]string, 0, len(segs))
	for _, s := range segs {
		if !isParam(s) {
			if c, ok := n.children[s]; ok {
				n = c
				out = append(out, c.seg)
				continue
			}
		}
		if n.param == nil {
			return template
		}
		n = n.param
		out = append(out, "{"+n.name+"}")
	}
	return "/" + strings.Join(out, "/")
}

// IsPinned tells whether template is pinned (as given or derived from a
// split) and in force.
func (t *Tree) IsPinned(template string) bool {
	for _, p := range t.pinned {
		if p.template == template && !p.off {
			return true
		}
	}
	return false
}
