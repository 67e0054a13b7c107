// Package schema infers the JSON schema of an endpoint's request or
// response bodies from the bodies observed: nested objects and arrays,
// types, string formats (email, uuid, date-time, date, ipv4, uri, phone),
// enums, nullable fields and how often each property is present (its
// required ratio), with one example per field whose sensitive values are
// masked. It also reports, per body, the fields never seen before, the
// sensitive data classes found per field and the object ids returned.
//
// Bodies are read by a small scanner that walks the bytes into the
// schema's tree directly, never building a generic value tree: the
// analyzer reads every body of an endpoint's first calls, and decoding
// into interface values was most of its cost.
package schema

import (
	"encoding/json"
	"net/netip"
	"strings"

	"github.com/apiscout/apiscout/analyzer/classify"
)

// Type is a JSON type.
type Type uint8

const (
	Null Type = iota
	Boolean
	Integer
	Number
	String
	Object
	Array
	nTypes
)

var typeNames = [nTypes]string{"null", "boolean", "integer", "number", "string", "object", "array"}

func (t Type) String() string { return typeNames[t] }

// Format is a string format.
type Format uint8

const (
	NoFormat Format = iota
	Email
	UUID
	DateTime
	Date
	IPv4
	URI
	Phone
	nFormats
)

var formatNames = [nFormats]string{"", "email", "uuid", "date-time", "date", "ipv4", "uri", "phone"}

func (f Format) String() string { return formatNames[f] }

// Limits. Each is a memory bound per endpoint and direction.
const (
	// DefaultMaxNodes bounds the fields of one schema (about 200 bytes
	// each): bodies keyed by ids (maps of user id → object) would grow
	// it without end.
	DefaultMaxNodes = 256
	maxDepth        = 32
	// maxItems of an array are learned; the rest are only scanned.
	maxItems = 20
	// Enums: at most maxEnum distinct short values, offered once the
	// field was seen minEnumSeen times.
	maxEnum     = 8
	maxEnumLen  = 32
	minEnumSeen = 10
	maxExample  = 64
	maxIDs      = 50
)

// Node is the inferred schema of one position in the bodies.
type Node struct {
	// Path is the position as a JSON pointer with arrays as []:
	// /items/[]/sku; the root is "/".
	Path string
	key  string
	// Seen counts the values observed here.
	Seen    int64
	Types   [nTypes]int64
	Formats [nFormats]int64
	// Class is the sensitive data class found here, if any.
	Class   string
	Example string
	exType  Type
	enum    map[string]int64
	enumOff bool
	Props   map[string]*Node
	Items   *Node
}

// Schema is the schema of one endpoint's bodies in one direction.
type Schema struct {
	Root     *Node
	MaxNodes int
	nodes    int
	// Docs counts the JSON documents observed; Dropped the fields not
	// learned because of MaxNodes.
	Docs, Dropped int64
}

// New returns an empty schema bounded to maxNodes fields (0: the
// default).
func New(maxNodes int) *Schema {
	if maxNodes <= 0 {
		maxNodes = DefaultMaxNodes
	}
	return &Schema{Root: &Node{Path: "/"}, MaxNodes: maxNodes, nodes: 1}
}

// Field is a position and its type.
type Field struct {
	Path string
	Type Type
}

// Result is what one body taught.
type Result struct {
	// Changed lists fields seen for the first time, or with a type not
	// seen before at their position.
	Changed []Field
	// Sensitive fields with their class.
	Sensitive []classify.Field
	// IDs are the values of fields named id, *_id or *Id.
	IDs []string
}

// Reset empties r, keeping its storage.
func (r *Result) Reset() {
	r.Changed, r.Sensitive, r.IDs = r.Changed[:0], r.Sensitive[:0], r.IDs[:0]
}

// Classes returns the distinct sensitive classes of r, sorted.
func (r *Result) Classes() []string {
	if len(r.Sensitive) == 0 {
		return nil
	}
	return classify.Classes(r.Sensitive)
}

// Observe learns one body (a JSON document, or JSON lines) and adds what
// it taught to r. ok is false when b does not start as JSON; a body cut
// short (a truncated capture) still teaches the fields before the cut.
func (s *Schema) Observe(b []byte, r *Result) (ok bool) {
	sc := scanner{b: b, s: s, r: r}
	sc.ws()
	if sc.i >= len(b) || (b[sc.i] != '{' && b[sc.i] != '[') {
		return false
	}
	for sc.i < len(b) {
		if !sc.value(s.Root, 0) {
			return ok
		}
		ok = true
		s.Docs++
		sc.ws()
	}
	return ok
}

// child returns the property node k of n, creating it within bounds.
func (s *Schema) child(n *Node, k []byte) *Node {
	if c, ok := n.Props[string(k)]; ok {
		return c
	}
	if s.nodes >= s.MaxNodes {
		s.Dropped++
		return nil
	}
	if n.Props == nil {
		n.Props = map[string]*Node{}
	}
	key := string(k)
	base := n.Path
	if n == s.Root {
		base = ""
	}
	c := &Node{Path: base + "/" + key, key: key}
	n.Props[key] = c
	s.nodes++
	return c
}

func (s *Schema) items(n *Node) *Node {
	if n.Items == nil {
		if s.nodes >= s.MaxNodes {
			s.Dropped++
			return nil
		}
		base := n.Path
		if n == s.Root {
			base = ""
		}
		n.Items = &Node{Path: base + "/[]", key: n.key}
		s.nodes++
	}
	return n.Items
}

// Nodes is the number of fields the schema holds.
func (s *Schema) Nodes() int { return s.nodes }

// note counts a value of type t at n and reports a new type.
func (sc *scanner) note(n *Node, t Type) {
	n.Seen++
	n.Types[t]++
	if n.Types[t] == 1 {
		sc.r.Changed = append(sc.r.Changed, Field{Path: n.Path, Type: t})
	}
}

// learnString learns a string value (raw: its bytes between the quotes,
// escapes included).
func (sc *scanner) learnString(n *Node, raw []byte, escaped bool) {
	sc.note(n, String)
	var v string
	if escaped {
		if err := json.Unmarshal(sc.b[sc.start-1:sc.i], &v); err != nil {
			v = string(raw)
		}
	} else {
		v = string(raw)
	}
	class := classify.ValueClass(v)
	if class == "" {
		class = classify.NameClass(n.key)
	}
	f := format(v, class)
	n.Formats[f]++
	if class != "" {
		sc.r.Sensitive = append(sc.r.Sensitive, classify.Field{Path: n.Path, Class: class})
		if n.Class == "" {
			n.Class = class
			n.Example, n.exType = mask(class), String
		}
		n.enumOff, n.enum = true, nil
	} else if n.Example == "" {
		n.Example, n.exType = clip(v), String
	}
	if classify.IsIDKey(n.key) && len(sc.r.IDs) < maxIDs {
		sc.r.IDs = append(sc.r.IDs, v)
	}
	if !n.enumOff {
		if f != NoFormat || len(v) > maxEnumLen || v == "" {
			n.enumOff, n.enum = true, nil
			return
		}
		if _, ok := n.enum[v]; !ok {
			if len(n.enum) >= maxEnum {
				n.enumOff, n.enum = true, nil
				return
			}
			if n.enum == nil {
				n.enum = map[string]int64{}
			}
		}
		n.enum[v]++
	}
}

func (sc *scanner) num(n *Node, raw []byte, integer bool) {
	t := Number
	if integer {
		t = Integer
	}
	sc.note(n, t)
	// A card number sent as a bare JSON number.
	if integer && len(raw) >= 13 && len(raw) <= 19 {
		if c := classify.ValueClass(string(raw)); c == classify.Card {
			sc.r.Sensitive = append(sc.r.Sensitive, classify.Field{Path: n.Path, Class: c})
			if n.Class == "" {
				n.Class, n.Example, n.exType = c, mask(c), String
			}
		}
	}
	if n.Example == "" {
		n.Example, n.exType = string(raw), t
	}
	if classify.IsIDKey(n.key) && len(sc.r.IDs) < maxIDs {
		sc.r.IDs = append(sc.r.IDs, string(raw))
	}
}

// mask is the example written for a sensitive field.
func mask(class string) string { return "[" + class + "]" }

func clip(v string) string {
	if len(v) <= maxExample {
		return v
	}
	cut := maxExample
	for cut > 0 && v[cut]&0xC0 == 0x80 { // not inside a UTF-8 sequence
		cut--
	}
	return v[:cut] + "…"
}

// format tells a string's format; class is its sensitive class.
func format(v, class string) Format {
	switch class {
	case classify.Email:
		return Email
	case classify.Phone:
		return Phone
	}
	n := len(v)
	switch {
	case n == 36 && v[8] == '-' && v[13] == '-' && v[18] == '-' && v[23] == '-' && hexOrDash(v):
		return UUID
	case n == 10 && isDate(v):
		return Date
	case n >= 19 && isDate(v[:10]) && (v[10] == 'T' || v[10] == 't' || v[10] == ' ') && v[13] == ':' && v[16] == ':':
		return DateTime
	case n >= 7 && n <= 15 && v[0] >= '0' && v[0] <= '9' && strings.Count(v, ".") == 3:
		if a, err := netip.ParseAddr(v); err == nil && a.Is4() {
			return IPv4
		}
	case strings.HasPrefix(v, "https://") || strings.HasPrefix(v, "http://"):
		if !strings.ContainsAny(v, " \t\n") {
			return URI
		}
	}
	return NoFormat
}

func hexOrDash(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-') {
			return false
		}
	}
	return true
}

func isDate(v string) bool {
	if len(v) != 10 || v[4] != '-' || v[7] != '-' {
		return false
	}
	for i, c := range []byte(v) {
		if i != 4 && i != 7 && (c < '0' || c > '9') {
			return false
		}
	}
	return v[5:7] >= "01" && v[5:7] <= "12" && v[8:10] >= "01" && v[8:10] <= "31"
}
