package schema

import "encoding/json"

// scanner walks one body. It accepts what encoding/json accepts for the
// structure (objects, arrays, strings, numbers, literals) and stops at the
// first byte that is not JSON; it does not validate UTF-8 or number
// syntax beyond what typing a value needs.
type scanner struct {
	b     []byte
	i     int
	start int // of the last string's content
	s     *Schema
	r     *Result
}

func (sc *scanner) ws() {
	for sc.i < len(sc.b) {
		switch sc.b[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

// value reads one value into n (nil: scan without learning).
func (sc *scanner) value(n *Node, depth int) bool {
	sc.ws()
	if sc.i >= len(sc.b) {
		return false
	}
	if depth > maxDepth {
		n = nil
	}
	switch c := sc.b[sc.i]; {
	case c == '{':
		return sc.object(n, depth)
	case c == '[':
		return sc.array(n, depth)
	case c == '"':
		raw, esc, ok := sc.str()
		if ok && n != nil {
			sc.learnString(n, raw, esc)
		}
		return ok
	case c == '-' || (c >= '0' && c <= '9'):
		start, integer := sc.i, true
		sc.i++
		for sc.i < len(sc.b) {
			c := sc.b[sc.i]
			if c >= '0' && c <= '9' {
				sc.i++
				continue
			}
			if c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-' {
				integer = false
				sc.i++
				continue
			}
			break
		}
		if n != nil {
			sc.num(n, sc.b[start:sc.i], integer)
		}
		return true
	case c == 't':
		return sc.lit("true", n, Boolean)
	case c == 'f':
		return sc.lit("false", n, Boolean)
	case c == 'n':
		return sc.lit("null", n, Null)
	}
	return false
}

func (sc *scanner) lit(word string, n *Node, t Type) bool {
	if len(sc.b)-sc.i < len(word) || string(sc.b[sc.i:sc.i+len(word)]) != word {
		return false
	}
	sc.i += len(word)
	if n != nil {
		sc.note(n, t)
		if t == Boolean && n.Example == "" {
			n.Example, n.exType = word, Boolean
		}
	}
	return true
}

// str reads a string at sc.i (the opening quote) and returns its raw
// content.
func (sc *scanner) str() (raw []byte, escaped, ok bool) {
	sc.i++
	sc.start = sc.i
	for sc.i < len(sc.b) {
		switch sc.b[sc.i] {
		case '\\':
			escaped = true
			sc.i += 2
		case '"':
			raw = sc.b[sc.start:sc.i]
			sc.i++
			return raw, escaped, true
		default:
			sc.i++
		}
	}
	return nil, false, false
}

func (sc *scanner) object(n *Node, depth int) bool {
	sc.i++ // {
	if n != nil {
		sc.note(n, Object)
	}
	sc.ws()
	if sc.i < len(sc.b) && sc.b[sc.i] == '}' {
		sc.i++
		return true
	}
	for {
		sc.ws()
		if sc.i >= len(sc.b) || sc.b[sc.i] != '"' {
			return false
		}
		key, esc, ok := sc.str()
		if !ok {
			return false
		}
		if esc {
			key = unescapeKey(sc.b[sc.start-1 : sc.i])
		}
		sc.ws()
		if sc.i >= len(sc.b) || sc.b[sc.i] != ':' {
			return false
		}
		sc.i++
		var c *Node
		if n != nil {
			c = sc.s.child(n, key)
		}
		if !sc.value(c, depth+1) {
			return false
		}
		sc.ws()
		if sc.i >= len(sc.b) {
			return false
		}
		switch sc.b[sc.i] {
		case ',':
			sc.i++
		case '}':
			sc.i++
			return true
		default:
			return false
		}
	}
}

func (sc *scanner) array(n *Node, depth int) bool {
	sc.i++ // [
	if n != nil {
		sc.note(n, Array)
	}
	sc.ws()
	if sc.i < len(sc.b) && sc.b[sc.i] == ']' {
		sc.i++
		return true
	}
	for k := 0; ; k++ {
		var it *Node
		if n != nil && k < maxItems {
			it = sc.s.items(n)
		}
		if !sc.value(it, depth+1) {
			return false
		}
		sc.ws()
		if sc.i >= len(sc.b) {
			return false
		}
		switch sc.b[sc.i] {
		case ',':
			sc.i++
		case ']':
			sc.i++
			return true
		default:
			return false
		}
	}
}

// unescapeKey decodes a quoted key with escapes.
func unescapeKey(quoted []byte) []byte {
	var k string
	if err := json.Unmarshal(quoted, &k); err != nil {
		return quoted[1 : len(quoted)-1]
	}
	return []byte(k)
}
