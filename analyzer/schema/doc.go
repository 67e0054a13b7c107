package schema

import (
	"encoding/json"
	"sort"
)

// Doc is a schema rendered for people and for OpenAPI: the JSON Schema
// subset OpenAPI 3.0 uses, plus how often each property was present.
type Doc struct {
	Type     string `json:"type,omitempty"`
	Format   string `json:"format,omitempty"`
	Nullable bool   `json:"nullable,omitempty"`
	// Enum is offered when a short string field took few values over
	// many observations.
	Enum []string `json:"enum,omitempty"`
	// Presence is the share of the parent objects that had this
	// property (1 for a required one).
	Presence   float64         `json:"presence,omitempty"`
	Sensitive  string          `json:"sensitive,omitempty"`
	Example    any             `json:"example,omitempty"`
	Properties map[string]*Doc `json:"properties,omitempty"`
	// Required lists the properties present in every parent object, once
	// enough objects were seen to tell.
	Required []string `json:"required,omitempty"`
	Items    *Doc     `json:"items,omitempty"`
}

// minRequiredSeen objects before a property may be called required.
const minRequiredSeen = 3

// Render returns the schema as a Doc (nil when no document was seen).
func (s *Schema) Render() *Doc {
	if s == nil || s.Root.Seen == 0 {
		return nil
	}
	return render(s.Root, 0)
}

func render(n *Node, parentObjects int64) *Doc {
	d := &Doc{Sensitive: n.Class}
	// The type is the most common non-null one; integers and numbers
	// together are numbers.
	var best Type = Null
	var bestN int64
	for t := Boolean; t < nTypes; t++ {
		if n.Types[t] > bestN {
			best, bestN = t, n.Types[t]
		}
	}
	if best == Integer && n.Types[Number] > 0 {
		best = Number
	}
	if bestN > 0 {
		d.Type = best.String()
		d.Nullable = n.Types[Null] > 0
	}
	if best == String && n.Types[String] > 0 {
		for f := Email; f < nFormats; f++ {
			if n.Formats[f] == n.Types[String] {
				d.Format = f.String()
			}
		}
		if !n.enumOff && len(n.enum) > 0 && n.Types[String] >= minEnumSeen && int64(len(n.enum))*3 <= n.Types[String] {
			for v := range n.enum {
				d.Enum = append(d.Enum, v)
			}
			sort.Strings(d.Enum)
		}
	}
	if parentObjects > 0 {
		d.Presence = float64(int64(float64(n.Seen)/float64(parentObjects)*1000+0.5)) / 1000
		d.Presence = min(d.Presence, 1)
	}
	if n.Example != "" && n.exType == best {
		switch n.exType {
		case Integer, Number:
			d.Example = json.Number(n.Example)
		case Boolean:
			d.Example = n.Example == "true"
		default:
			d.Example = n.Example
		}
	} else if n.Example != "" && n.Class != "" {
		d.Example = n.Example
	}
	if len(n.Props) > 0 {
		objs := n.Types[Object]
		d.Properties = make(map[string]*Doc, len(n.Props))
		for k, c := range n.Props {
			d.Properties[k] = render(c, objs)
			if objs >= minRequiredSeen && c.Seen >= objs {
				d.Required = append(d.Required, k)
			}
		}
		sort.Strings(d.Required)
	}
	if n.Items != nil {
		d.Items = render(n.Items, 0)
	}
	return d
}
