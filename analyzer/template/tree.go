package template

import (
	"sort"
	"strings"
)

// Options tune inference. Zero values take the defaults.
type Options struct {
	// MinDistinct literal values at one position before it may become a
	// parameter (default 12).
	MinDistinct int
	// UniqueRatio: promote when distinct/observations at a position is at
	// least this (default 0.3): identifiers rarely repeat, API words do.
	UniqueRatio float64
	// StableShare: a literal sibling seen at least this share of its
	// position's calls stays literal after promotion (default 0.05).
	StableShare float64
	// MaxNodes bounds a service's tree (default 20000); past it new
	// literal segments are taken as parameters.
	MaxNodes int
}

func (o Options) withDefaults() Options {
	if o.MinDistinct <= 0 {
		o.MinDistinct = 12
	}
	if o.UniqueRatio <= 0 {
		o.UniqueRatio = 0.3
	}
	if o.StableShare <= 0 {
		o.StableShare = 0.05
	}
	if o.MaxNodes <= 0 {
		o.MaxNodes = 20000
	}
	return o
}

type node struct {
	seg       string // literal value, or "" for the parameter node
	children  map[string]*node
	param     *node
	paramKind Kind
	name      string // parameter name
	calls     int64
	// literal values promoted into param: they route to it from now on
	promoted bool
	end      bool // a template ends here
	// valLen is the length shared by every value seen at this parameter
	// (0: not one length): random tokens come in one length, so a value
	// of that length that happens to look like a word is one of them.
	valLen int
	// holds counts the operator decisions naming this literal segment:
	// a held segment is never merged into its position's parameter and
	// routes before it. keeps counts the held children.
	holds, keeps int
	// static: a split made this position literal for every value.
	static bool
	// tmpl caches the template of the path ending here, valid while gen
	// equals the tree's Promotions.
	tmpl string
	gen  int
}

// Tree holds one service's templates.
type Tree struct {
	o     Options
	root  *node
	nodes int
	// Pinned templates (spec operations, operator pins) are matched first.
	pinned []pinned
	// Promotions counts positions turned into parameters, for the
	// evidence of templates; it is also the generation of cached
	// templates.
	Promotions int
	params     []Param
	// splits are the split decisions applied, which shape the pins;
	// applied counts each decision in force (the same one may come for
	// the service and for every service).
	splits  [][]string
	applied map[string]int
}

type pinned struct {
	template string
	segs     []string // "{name}" for parameters
	// derived pins come from a pin and a value split (/users/me from
	// /users/{userId} and split /users/me); a pin is off while a split
	// makes its parameter position literal.
	derived, off bool
}

// NewTree returns an empty tree.
func NewTree(o Options) *Tree {
	return &Tree{o: o.withDefaults(), root: &node{children: map[string]*node{}}}
}

// Pin adds a template that wins over inference (from a spec or an
// operator). Parameters are written {name}.
func (t *Tree) Pin(template string) {
	for i, p := range t.pinned {
		if p.template == template {
			if p.derived {
				t.pinned[i].derived = false
			}
			return
		}
	}
	t.pinned = append(t.pinned, pinned{template: template, segs: split(template)})
	if len(t.splits) > 0 {
		t.reconcile()
		return
	}
	t.sortPins()
}

// sortPins puts more literal segments first, so /users/me beats
// /users/{id}.
func (t *Tree) sortPins() {
	sort.SliceStable(t.pinned, func(i, j int) bool { return literals(t.pinned[i].segs) > literals(t.pinned[j].segs) })
}

func literals(segs []string) int {
	n := 0
	for _, s := range segs {
		if !strings.HasPrefix(s, "{") {
			n++
		}
	}
	return n
}

func split(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// Param is one parameter of a matched path.
type Param struct {
	Name, Value string
	// Kind of the value (Literal for free-form names and slugs).
	Kind Kind
}

// Match is the template a path belongs to.
type Match struct {
	Template string
	// Params in path order. The slice is the tree's scratch space: it is
	// valid until the next Observe or MatchPinned (one goroutine owns a
	// tree, and the hot path must not allocate per call).
	Params []Param
	// Pinned is true when a spec or operator template matched.
	Pinned bool
}

// Values copies the parameters into a map (name → value).
func (m Match) Values() map[string]string {
	if len(m.Params) == 0 {
		return nil
	}
	out := make(map[string]string, len(m.Params))
	for _, p := range m.Params {
		out[p.Name] = p.Value
	}
	return out
}

// Param returns the value of the named parameter.
func (m Match) Param(name string) (string, bool) {
	for _, p := range m.Params {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// maxSegs bounds the segments walked without allocating; longer paths
// still work, through an allocated slice.
const maxSegs = 32

// appendSegs splits path like split, into substrings of path.
func appendSegs(dst []string, p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return dst
	}
	for {
		i := strings.IndexByte(p, '/')
		if i < 0 {
			return append(dst, p)
		}
		dst = append(dst, p[:i])
		p = p[i+1:]
	}
}

// MatchPinned matches path against the pinned templates only.
func (t *Tree) MatchPinned(path string) (Match, bool) {
	if len(t.pinned) == 0 {
		return Match{}, false
	}
	var buf [maxSegs]string
	return t.matchPinned(appendSegs(buf[:0], path))
}

func (t *Tree) matchPinned(segs []string) (Match, bool) {
outer:
	for i := range t.pinned {
		p := &t.pinned[i]
		if len(p.segs) != len(segs) || p.off {
			continue
		}
		for j, s := range p.segs {
			if !isParam(s) && s != segs[j] {
				continue outer
			}
		}
		t.params = t.params[:0]
		for j, s := range p.segs {
			if isParam(s) {
				t.params = append(t.params, Param{Name: s[1 : len(s)-1], Value: segs[j], Kind: Classify(segs[j])})
			}
		}
		return Match{Template: p.template, Params: t.params, Pinned: true}, true
	}
	return Match{}, false
}

func isParam(s string) bool { return len(s) >= 2 && s[0] == '{' && s[len(s)-1] == '}' }

// Observe learns from one path and returns its template.
func (t *Tree) Observe(path string) Match {
	var buf [maxSegs]string
	segs := appendSegs(buf[:0], path)
	if len(t.pinned) > 0 {
		if m, ok := t.matchPinned(segs); ok {
			return m
		}
	}
	n := t.root
	n.calls++
	var outBuf [maxSegs]*node
	out := outBuf[:0]
	t.params = t.params[:0]
	prev := ""
	for _, s := range segs {
		k := Classify(s)
		if n.static {
			k = Literal
		} else if k == Literal && n.param != nil && n.param.valLen >= 8 && len(s) == n.param.valLen && n.children[s] == nil {
			k = n.param.paramKind
		}
		if c := n.held(s); c != nil {
			n = c // an operator's literal routes before the parameter
		} else if n.param != nil && (k != Literal || n.promoted) {
			if c, ok := n.children[s]; ok && k == Literal {
				n = c // a stable literal sibling kept beside the parameter
			} else {
				n = n.param
				t.params = append(t.params, Param{Name: n.name, Value: s, Kind: k})
				n.noteLen(s)
			}
		} else if k != Literal || (t.nodes >= t.o.MaxNodes && n.children[s] == nil) {
			// Past MaxNodes only new values become the parameter: a
			// literal known before keeps its route, so a junk storm does
			// not move the real endpoints.
			if n.param == nil {
				n.param = &node{children: map[string]*node{}, name: ParamName(prev, t.taken()), paramKind: k}
				t.nodes++
			}
			n = n.param
			t.params = append(t.params, Param{Name: n.name, Value: s, Kind: k})
			n.noteLen(s)
		} else {
			c := n.children[s]
			if c == nil {
				s = strings.Clone(s) // kept: must not pin the caller's buffer
				s = strings.Clone(s) // kept: must not pin the transaction's bytes
				c = &node{seg: s, children: map[string]*node{}}
				n.children[s] = c
				t.nodes++
				t.maybePromote(n, prev)
				if n.promoted {
					// This very value may have just been merged.
					if c2, ok := n.children[s]; ok {
						c = c2
					} else {
						c = n.param
						t.params = append(t.params, Param{Name: c.name, Value: s, Kind: k})
					}
				}
			}
			n = c
		}
		n.calls++
		out = append(out, n)
		if n.seg != "" {
			prev = n.seg
		} else {
			prev = "{" + n.name + "}"
		}
	}
	n.end = true
	return Match{Template: t.template(n, out), Params: t.params}
}

// taken lists the parameter names already used on the current path.
func (t *Tree) taken() map[string]bool {
	if len(t.params) == 0 {
		return nil
	}
	m := make(map[string]bool, len(t.params))
	for _, p := range t.params {
		m[p.Name] = true
	}
	return m
}

// template renders the path of nodes, cached on its last node: a node's
// ancestry only changes when a position is promoted, which bumps the
// tree's generation.
func (t *Tree) template(end *node, path []*node) string {
	if end.tmpl != "" && end.gen == t.Promotions {
		return end.tmpl
	}
	var b strings.Builder
	for _, n := range path {
		b.WriteByte('/')
		if n.seg != "" {
			b.WriteString(n.seg)
		} else {
			b.WriteByte('{')
			b.WriteString(n.name)
			b.WriteByte('}')
		}
	}
	if len(path) == 0 {
		b.WriteByte('/')
	}
	end.tmpl, end.gen = b.String(), t.Promotions
	return end.tmpl
}

func (n *node) noteLen(s string) {
	switch {
	case n.calls == 0 && n.valLen == 0:
		n.valLen = len(s)
	case n.valLen != len(s):
		n.valLen = -1
	}
}

// maybePromote turns a position whose literal values keep multiplying into
// a parameter. Literal siblings that carry a stable share of the calls
// stay (the /users/me case).
func (t *Tree) maybePromote(n *node, prev string) {
	if n.promoted || n.static || len(n.children) < t.o.MinDistinct {
		return
	}
	var sum int64
	for _, c := range n.children {
		sum += c.calls
	}
	if sum == 0 || float64(len(n.children))/float64(sum+1) < t.o.UniqueRatio {
		return
	}
	if n.param == nil {
		n.param = &node{children: map[string]*node{}, name: ParamName(prev, t.taken()), paramKind: Literal}
		t.nodes++
	}
	n.promoted = true
	t.Promotions++
	for v, c := range n.children {
		if c.holds > 0 || (float64(c.calls) >= t.o.StableShare*float64(n.calls) && c.calls >= 5) {
			continue
		}
		merge(n.param, c)
		delete(n.children, v)
	}
}

// merge folds subtree b into a.
func merge(a, b *node) {
	a.calls += b.calls
	a.end = a.end || b.end
	a.holds += b.holds
	a.static = a.static || b.static
	for v, c := range b.children {
		if ac, ok := a.children[v]; ok {
			merge(ac, c)
		} else {
			a.children[v] = c
		}
	}
	if b.keeps > 0 {
		a.keeps = 0
		for _, c := range a.children {
			if c.holds > 0 {
				a.keeps++
			}
		}
	}
	if b.param != nil {
		if a.param == nil {
			a.param = b.param
		} else {
			merge(a.param, b.param)
		}
	}
}

// Nodes is the tree's size (for memory accounting).
func (t *Tree) Nodes() int { return t.nodes }

// Resolve maps a template the tree published earlier to the template its
// paths take now (after a later promotion), without learning anything.
func (t *Tree) Resolve(template string) string {
	if _, ok := t.MatchPinned(template); ok {
		return template
	}
	n := t.root
	var out []string
	for _, s := range split(template) {
		if c, ok := n.children[s]; ok && !strings.HasPrefix(s, "{") {
			n = c
			out = append(out, c.seg)
			continue
		}
		if n.param == nil {
			return template // not a path of this tree
		}
		n = n.param
		out = append(out, "{"+n.name+"}")
	}
	return "/" + strings.Join(out, "/")
}
