package inventory

import (
	"sort"
	"strings"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/axiomhq/hyperloglog"

	"github.com/apiscout/apiscout/analyzer/schema"
)

// Detail is what the inventory knows of an endpoint beyond the core
// fields; it travels as Endpoint.Detail.
type Detail struct {
	Statuses     map[string]int64  `json:"statuses"`
	ContentTypes []string          `json:"content_types,omitempty"`
	Query        map[string]string `json:"query,omitempty"` // name → type
	// QueryPresence is the share of calls that carried each query
	// parameter (1: always, so it is likely required).
	QueryPresence   map[string]float64 `json:"query_presence,omitempty"`
	PathParams      map[string]string  `json:"path_params,omitempty"` // name → kind of values
	RequestFields   map[string]string  `json:"request_fields,omitempty"`
	ResponseFields  map[string]string  `json:"response_fields,omitempty"`
	SensitiveFields map[string]string  `json:"sensitive_fields,omitempty"` // JSON path → class
	Clients         int                `json:"clients"`
	LatencyP50Ms    float64            `json:"latency_p50_ms"`
	LatencyP95Ms    float64            `json:"latency_p95_ms"`
	LatencyP99Ms    float64            `json:"latency_p99_ms"`
	// Completeness: share of calls seen whole (no gap, not truncated,
	// answered), so nobody trusts a picture more than the capture allows.
	Completeness float64          `json:"completeness"`
	Gaps         int64            `json:"gaps"`
	Truncated    int64            `json:"truncated"`
	NoResponse   int64            `json:"no_response"`
	Template     TemplateEvidence `json:"template"`
	Spec         string           `json:"spec,omitempty"`
	Deprecated   bool             `json:"deprecated,omitempty"`
	JWTAlgs      []string         `json:"jwt_algs,omitempty"`
	JWTIssuers   []string         `json:"jwt_issuers,omitempty"`
	// Schemas inferred from the JSON bodies seen.
	RequestSchema  *schema.Doc `json:"request_schema,omitempty"`
	ResponseSchema *schema.Doc `json:"response_schema,omitempty"`
}

// TemplateEvidence says why a path template is what it is.
type TemplateEvidence struct {
	Source     string   `json:"source"` // spec, pinned, inferred
	Confidence float64  `json:"confidence"`
	Examples   []string `json:"examples,omitempty"`
}

// EndpointState accumulates one endpoint's observations.
type EndpointState struct {
	Endpoint
	statuses   map[int]int64
	ctypes     map[string]bool
	auth       map[string]bool
	sensitive  map[string]bool
	sensFields map[string]string
	query      map[string]string
	queryCount map[string]int64
	params     map[string]string
	reqFields  map[string]string
	respFields map[string]string
	// clients estimates distinct callers: exact while few (the sketch's
	// sparse form), then within about 1% in at most 16 KiB, so that a
	// client flood spread over every endpoint stays bounded.
	clients             *hyperloglog.Sketch
	latency             *ddsketch.DDSketch
	gaps, trunc, noResp int64
	unauthOK, authOK    int64
	examples            []string
	source              string
	jwtAlgs, jwtIss     map[string]bool
	deprecated          bool
	specName            string
	reqSchema           *schema.Schema
	respSchema          *schema.Schema
	// Changed is set by every update; the owner clears it once stored.
	Changed bool
}

// NewEndpointState starts an endpoint.
func NewEndpointState(service, method, path, protocol string, t time.Time) *EndpointState {
	sk, _ := ddsketch.NewDefaultDDSketch(0.01)
	// Copies: the names may be substrings of a transaction decoded in place.
	service, method, path, protocol = strings.Clone(service), strings.Clone(method), strings.Clone(path), strings.Clone(protocol)
	return &EndpointState{
		Endpoint: Endpoint{Service: service, Method: method, Path: path, Protocol: protocol, FirstSeen: t, LastSeen: t},
		statuses: map[int]int64{}, ctypes: map[string]bool{}, auth: map[string]bool{}, sensitive: map[string]bool{},
		sensFields: map[string]string{}, query: map[string]string{}, queryCount: map[string]int64{}, params: map[string]string{},
		reqFields: map[string]string{}, respFields: map[string]string{}, clients: hyperloglog.New14(),
		latency: sk, jwtAlgs: map[string]bool{}, jwtIss: map[string]bool{},
	}
}

// Call is one observation of an endpoint.
type Call struct {
	Time                       time.Time
	Status                     int
	Latency                    time.Duration
	ContentType                string
	Auth                       string
	Client                     string
	Sensitive                  map[string]string // JSON path → class (request and response)
	Query                      map[string]string
	Params                     map[string]string
	ReqFields                  map[string]string
	RespFields                 map[string]string
	Gap, Truncated, NoResponse bool
	Example                    string
	JWTAlg, JWTIssuer          string
}

// Add folds a call in and returns the body fields never seen before.
func (e *EndpointState) Add(c *Call) (newFields []string) {
	e.Changed = true
	e.Calls++
	if c.Time.Before(e.FirstSeen) {
		e.FirstSeen = c.Time
	}
	if c.Time.After(e.LastSeen) {
		e.LastSeen = c.Time
	}
	if c.Status > 0 {
		e.statuses[c.Status]++
	}
	if c.ContentType != "" && len(e.ctypes) < 16 {
		ct, _, _ := strings.Cut(c.ContentType, ";")
		setKey(e.ctypes, strings.ToLower(strings.TrimSpace(ct)), true)
	}
	e.auth[c.Auth] = true
	ok := c.Status >= 200 && c.Status < 400
	if ok {
		if c.Auth == "none" {
			e.unauthOK++
		} else {
			e.authOK++
		}
	}
	for p, cl := range c.Sensitive {
		e.sensitive[cl] = true
		if len(e.sensFields) < 256 {
			setKey(e.sensFields, p, cl)
		}
	}
	for k, v := range c.Query {
		if len(e.query) < 64 {
			setKey(e.query, k, v)
		}
	}
	for k, v := range c.Params {
		setKey(e.params, k, v)
	}
	for _, f := range []struct {
		in  map[string]string
		out map[string]string
		tag string
	}{{c.ReqFields, e.reqFields, "request"}, {c.RespFields, e.respFields, "response"}} {
		for p, t := range f.in {
			old, seen := f.out[p]
			if len(f.out) >= 512 && !seen {
				continue
			}
			if !seen || (old != t && old != "null" && t != "null") {
				if e.Calls > 1 {
					newFields = append(newFields, f.tag+":"+p+":"+t)
				}
				setKey(f.out, p, strings.Clone(t))
			}
		}
	}
	if c.Client != "" {
		e.clients.Insert([]byte(c.Client))
	}
	if c.Latency > 0 {
		_ = e.latency.Add(float64(c.Latency) / float64(time.Millisecond))
	}
	if c.Gap {
		e.gaps++
	}
	if c.Truncated {
		e.trunc++
	}
	if c.NoResponse {
		e.noResp++
	}
	if c.Example != "" && len(e.examples) < 5 {
		found := false
		for _, x := range e.examples {
			found = found || x == c.Example
		}
		if !found {
			e.examples = append(e.examples, strings.Clone(c.Example))
		}
	}
	if c.JWTAlg != "" && len(e.jwtAlgs) < 8 {
		e.jwtAlgs[c.JWTAlg] = true
	}
	if c.JWTIssuer != "" && len(e.jwtIss) < 8 {
		e.jwtIss[c.JWTIssuer] = true
	}
	sort.Strings(newFields)
	return newFields
}

// maxQuery bounds the query parameter names kept per endpoint (junk
// names from scanners would grow it without end).
const maxQuery = 64

// setKey puts v under k in m, copying k when it is new: keys come from
// transactions decoded in place, and a kept substring would pin the whole
// Kafka record it arrived in.
func setKey[V any](m map[string]V, k string, v V) {
	if _, ok := m[k]; !ok {
		k = strings.Clone(k)
	}
	m[k] = v
}

// NoteQuery counts one call's query parameter and learns its type; a
// parameter seen with different types becomes a string.
func (e *EndpointState) NoteQuery(name, typ string) {
	if n, ok := e.queryCount[name]; ok {
		e.queryCount[name] = n + 1
		if old := e.query[name]; old != typ && old != "string" {
			e.query[name] = "string"
			e.Changed = true
		}
		return
	}
	if len(e.queryCount) >= maxQuery {
		return
	}
	name = strings.Clone(name) // kept: must not pin the transaction
	e.queryCount[name] = 1
	e.query[name] = typ
	e.Changed = true
}

// Merge folds o (an endpoint whose template was generalised) into e.
func (e *EndpointState) Merge(o *EndpointState) {
	e.Changed = true
	e.Calls += o.Calls
	if o.FirstSeen.Before(e.FirstSeen) {
		e.FirstSeen = o.FirstSeen
	}
	if o.LastSeen.After(e.LastSeen) {
		e.LastSeen = o.LastSeen
	}
	for k, v := range o.statuses {
		e.statuses[k] += v
	}
	for _, m := range []struct{ a, b map[string]bool }{{e.ctypes, o.ctypes}, {e.auth, o.auth}, {e.sensitive, o.sensitive}, {e.jwtAlgs, o.jwtAlgs}, {e.jwtIss, o.jwtIss}} {
		for k := range m.b {
			m.a[k] = true
		}
	}
	for _, m := range []struct{ a, b map[string]string }{{e.sensFields, o.sensFields}, {e.query, o.query}, {e.reqFields, o.reqFields}, {e.respFields, o.respFields}} {
		for k, v := range m.b {
			m.a[k] = v
		}
	}
	for k, n := range o.queryCount {
		e.queryCount[k] += n
	}
	_ = e.clients.Merge(o.clients) // both are New14: cannot fail
	_ = e.latency.MergeWith(o.latency)
	e.gaps += o.gaps
	e.trunc += o.trunc
	e.noResp += o.noResp
	e.unauthOK += o.unauthOK
	e.authOK += o.authOK
	// Schemas are trees of counts that do not merge cheaply: the busier
	// endpoint's picture is kept.
	if o.reqSchema != nil && (e.reqSchema == nil || o.reqSchema.Docs+o.respSchema.Docs > e.reqSchema.Docs+e.respSchema.Docs) {
		e.reqSchema, e.respSchema = o.reqSchema, o.respSchema
	}
}

// Schemas returns the endpoint's request and response schemas, made on
// first use (an endpoint without JSON bodies costs nothing).
func (e *EndpointState) Schemas() (req, resp *schema.Schema) {
	if e.reqSchema == nil {
		e.reqSchema, e.respSchema = schema.New(0), schema.New(0)
	}
	return e.reqSchema, e.respSchema
}

// Restore reloads what a checkpoint kept of the endpoint (its snapshot
// and detail): counts, times, auth kinds, data classes, statuses, content
// types, query and body fields. Schemas, latencies and clients start
// again from the traffic that follows.
func (e *EndpointState) Restore(ep Endpoint, d Detail) {
	e.Calls, e.FirstSeen, e.LastSeen = ep.Calls, ep.FirstSeen, ep.LastSeen
	for _, a := range ep.Auth {
		e.auth[a] = true
	}
	for _, c := range ep.Sensitive {
		e.sensitive[c] = true
	}
	if ep.Unauthenticated {
		e.unauthOK = max(e.unauthOK, 1)
	}
	for k, n := range d.Statuses {
		code := 0
		for _, c := range k {
			if c < '0' || c > '9' {
				code = -1
				break
			}
			code = code*10 + int(c-'0')
		}
		if code > 0 {
			e.statuses[code] += n
		}
	}
	for _, ct := range d.ContentTypes {
		e.ctypes[ct] = true
	}
	for _, m := range []struct{ dst, src map[string]string }{{e.query, d.Query}, {e.params, d.PathParams},
		{e.reqFields, d.RequestFields}, {e.respFields, d.ResponseFields}, {e.sensFields, d.SensitiveFields}} {
		for k, v := range m.src {
			m.dst[k] = v
		}
	}
	for k, share := range d.QueryPresence {
		e.queryCount[k] = int64(share*float64(ep.Calls) + 0.5)
	}
	e.gaps, e.trunc, e.noResp = d.Gaps, d.Truncated, d.NoResponse
	e.examples = append(e.examples[:0], d.Template.Examples...)
	for _, a := range d.JWTAlgs {
		e.jwtAlgs[a] = true
	}
	for _, a := range d.JWTIssuers {
		e.jwtIss[a] = true
	}
}

// SetSource records where the template comes from.
func (e *EndpointState) SetSource(source string, deprecated bool, specName string) {
	e.source, e.deprecated, e.specName = source, deprecated, specName
}

// AuthKinds lists the kinds seen, sorted.
func (e *EndpointState) AuthKinds() []string { return keys(e.auth) }

// ContentTypes lists the response media types seen, sorted.
func (e *EndpointState) ContentTypes() []string { return keys(e.ctypes) }

// Statuses returns the status counts.
func (e *EndpointState) Statuses() map[int]int64 { return e.statuses }

// Fields returns the request and response field types.
func (e *EndpointState) Fields() (req, resp map[string]string) { return e.reqFields, e.respFields }

// QueryTypes and ParamKinds for export.
func (e *EndpointState) QueryTypes() map[string]string { return e.query }
func (e *EndpointState) ParamKinds() map[string]string { return e.params }

// UnauthenticatedSuccess reports successful calls without credentials,
// and successful calls with.
func (e *EndpointState) UnauthenticatedSuccess() (without, with int64) { return e.unauthOK, e.authOK }

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Snapshot renders the endpoint with its detail, findings and risk.
func (e *EndpointState) Snapshot() Endpoint {
	out := e.Endpoint
	out.Auth = keys(e.auth)
	out.Sensitive = keys(e.sensitive)
	out.Unauthenticated = e.unauthOK > 0
	st := map[string]int64{}
	for k, v := range e.statuses {
		st[itoa(k)] = v
	}
	d := Detail{Statuses: st, ContentTypes: keys(e.ctypes), Query: copyMap(e.query), PathParams: copyMap(e.params),
		RequestFields: copyMap(e.reqFields), ResponseFields: copyMap(e.respFields), SensitiveFields: copyMap(e.sensFields),
		Clients: int(e.clients.Estimate()), Gaps: e.gaps, Truncated: e.trunc, NoResponse: e.noResp,
		Template: TemplateEvidence{Source: e.source, Confidence: confidence(e), Examples: append([]string(nil), e.examples...)},
		Spec:     e.specName, Deprecated: e.deprecated, JWTAlgs: keys(e.jwtAlgs), JWTIssuers: keys(e.jwtIss),
		RequestSchema: e.reqSchema.Render(), ResponseSchema: e.respSchema.Render()}
	if e.Calls > 0 && len(e.queryCount) > 0 {
		d.QueryPresence = make(map[string]float64, len(e.queryCount))
		for k, n := range e.queryCount {
			d.QueryPresence[k] = round(min(1, float64(n)/float64(e.Calls)))
		}
	}
	if e.Calls > 0 {
		bad := e.gaps + e.trunc + e.noResp
		d.Completeness = 1 - min(1, float64(bad)/float64(e.Calls))
	}
	if e.latency.GetCount() > 0 {
		qs, _ := e.latency.GetValuesAtQuantiles([]float64{0.5, 0.95, 0.99})
		d.LatencyP50Ms, d.LatencyP95Ms, d.LatencyP99Ms = round(qs[0]), round(qs[1]), round(qs[2])
	}
	out.Findings, out.RiskScore = assess(e, &d)
	out.Detail = d
	return out
}

func round(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func confidence(e *EndpointState) float64 {
	switch e.source {
	case "spec", "pinned":
		return 1
	}
	// Inferred: confidence grows with the calls behind the template.
	c := 0.5 + 0.5*min(1, float64(e.Calls)/50)
	return round(c)
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func itoa(n int) string {
	var b [12]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// assess lists posture findings that need no baseline, each with its
// OWASP API Security Top 10 2023 category, and a risk score.
func assess(e *EndpointState, d *Detail) ([]string, float64) {
	var f []string
	score := 0.0
	changesState := e.Method == "POST" || e.Method == "PUT" || e.Method == "PATCH" || e.Method == "DELETE"
	if e.unauthOK > 0 && (len(e.sensitive) > 0 || changesState) {
		f = append(f, "API2:2023 no authentication on an endpoint that returns sensitive data or changes state")
		score += 40
	}
	if e.auth["basic"] {
		f = append(f, "API2:2023 HTTP Basic authentication")
		score += 10
	}
	for a := range e.jwtAlgs {
		if strings.EqualFold(a, "none") {
			f = append(f, "API2:2023 JWT with alg none")
			score += 40
		}
	}
	if e.Classification == Shadow {
		f = append(f, "API9:2023 undocumented (shadow) endpoint")
		score += 15
	}
	if e.Classification == Zombie {
		f = append(f, "API9:2023 deprecated (zombie) endpoint still called")
		score += 20
	}
	for _, c := range []string{"card", "national_id", "secret", "private_key", "iban"} {
		if e.sensitive[c] {
			score += 10
		}
	}
	if len(e.sensitive) > 0 {
		score += 5 * float64(len(e.sensitive))
	}
	sort.Strings(f)
	return f, min(100, score)
}
