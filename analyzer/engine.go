// Package analyzer turns transactions into the API inventory and hands
// each call, classified, to the detectors. The Engine is pure logic: one
// goroutine, no I/O, time from the transactions (packet time), so a
// replayed capture gives the same inventory and anomalies as live
// traffic. `apiscout run`, `apiscout analyze` and the distributed
// analyzer all drive the same Engine.
package analyzer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/classify"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/analyzer/schema"
	"github.com/apiscout/apiscout/analyzer/spec"
	"github.com/apiscout/apiscout/analyzer/template"
	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/wire"
)

// Detectors receive every classified call. analyzer/detect implements it.
type Detectors interface {
	Observe(obs *inventory.Observation) []anomaly.Anomaly
	Advance(now time.Time) []anomaly.Anomaly
}

// heartbeats and closers are optional detector abilities.
type heartbeats interface{ Heartbeat(hb *wire.Heartbeat) }
type closer interface {
	Close(last time.Time) []anomaly.Anomaly
}

// Options build an Engine.
type Options struct {
	Config    config.AnalyzerConfig
	Log       *zap.Logger
	Reg       prometheus.Registerer
	Detectors Detectors
}

// Engine is the analyzer's state.
type Engine struct {
	// claims caches decoded JWT claims by credential fingerprint: the
	// same token comes back on every call of a session.
	claims   map[string]classify.Auth
	cfg      config.AnalyzerConfig
	log      *zap.Logger
	det      Detectors
	services map[string]*service
	specs    []*spec.Spec
	now      time.Time
	m        *metrics
	// last is the endpoint of the latest Process call (see LastCall).
	last lastCall
	// Scratch space reused by Process (one goroutine).
	key  []byte
	call inventory.Call
	res  schema.Result
	// addrNames caches client addresses rendered as identities.
	addrNames map[netip.Addr]string
	tmpl      templateState // operator decisions on templates (templates.go)
}

// addrName renders a client address once: the same clients call again
// and again, and rendering allocates.
func (e *Engine) addrName(a netip.Addr) string {
	if s, ok := e.addrNames[a]; ok {
		return s
	}
	if e.addrNames == nil || len(e.addrNames) >= 1<<16 {
		e.addrNames = map[netip.Addr]string{}
	}
	s := a.String()
	e.addrNames[a] = s
	return s
}

type lastCall struct {
	service, method, path string
	unauthenticated, ok   bool
}

type service struct {
	host       string
	tree       *template.Tree
	promotions int
	endpoints  map[string]*inventory.EndpointState
	ops        map[string]*opRef // "METHOD /template" of the bound spec
	spec       *spec.Spec
	addrs      map[netip.Addr]struct{}
	mirrors    map[string]bool
	first      time.Time
	last       time.Time
	calls      int64
	evicted    int64
}

type opRef struct {
	op   spec.Operation
	seen bool
}

type metrics struct {
	tx        prometheus.Counter
	endpoints prometheus.Gauge
	evicted   *prometheus.CounterVec
}

// New builds an Engine and loads the configured specs.
func New(o Options) (*Engine, error) {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	e := &Engine{cfg: o.Config, log: o.Log, det: o.Detectors, services: map[string]*service{}, claims: map[string]classify.Auth{}}
	e.m = &metrics{
		tx:        prometheus.NewCounter(prometheus.CounterOpts{Name: "apiscout_analyzer_transactions_total", Help: "Transactions analyzed."}),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{Name: "apiscout_analyzer_endpoints", Help: "Endpoints in the inventory."}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiscout_analyzer_evicted_total",
			Help: "Inventory entries refused or dropped at their caps, by kind."}, []string{"kind"}),
	}
	if o.Reg != nil {
		o.Reg.MustRegister(e.m.tx, e.m.endpoints, e.m.evicted)
	}
	if err := e.readTemplateConfig(); err != nil {
		return nil, err
	}
	if len(o.Config.Specs) > 0 {
		specs, err := spec.LoadPaths(o.Config.Specs, o.Config.SpecServices)
		if err != nil {
			return nil, err
		}
		e.specs = specs
		for _, s := range specs {
			e.log.Info("spec loaded", zap.String("file", s.File), zap.Strings("hosts", s.Hosts), zap.Int("operations", len(s.Ops)))
		}
	}
	return e, nil
}

// LoadSpec binds a spec document to a service at run time (upload).
func (e *Engine) LoadSpec(host string, data []byte) error {
	s, err := spec.Parse(data)
	if err != nil {
		return err
	}
	s.Hosts, s.File = []string{host}, "uploaded:"+host
	e.specs = append(e.specs, s)
	if svc := e.services[host]; svc != nil {
		e.bind(svc, s)
		for _, ep := range svc.endpoints {
			e.classify(svc, ep)
		}
	}
	return nil
}

func (e *Engine) service(host string, t time.Time) *service {
	if s := e.services[host]; s != nil {
		return s
	}
	if e.cfg.MaxServices > 0 && len(e.services) >= e.cfg.MaxServices {
		e.m.evicted.WithLabelValues("service").Inc()
		return nil
	}
	host = strings.Clone(host) // kept: must not pin the transaction's bytes
	s := &service{host: host, tree: template.NewTree(template.Options{MaxNodes: 4 * max(e.cfg.MaxEndpointsPerService, 1)}),
		endpoints: map[string]*inventory.EndpointState{}, ops: map[string]*opRef{}, addrs: map[netip.Addr]struct{}{},
		mirrors: map[string]bool{}, first: t, last: t}
	e.applyTemplates(s)
	for _, sp := range e.specs {
		for _, h := range sp.Hosts {
			if h == host || hostOnly(h) == hostOnly(host) {
				e.bind(s, sp)
			}
		}
	}
	e.services[s.host] = s
	return s
}

func hostOnly(h string) string {
	if i := strings.LastIndexByte(h, ':'); i > 0 && !strings.Contains(h[i:], "]") {
		return h[:i]
	}
	return h
}

func (e *Engine) bind(s *service, sp *spec.Spec) {
	s.spec = sp
	for _, op := range sp.Ops {
		s.tree.Pin(op.Path)
		s.ops[op.Method+" "+op.Path] = &opRef{op: op}
	}
}

var versionRE = regexp.MustCompile(`/v([0-9]+)/`)

// classify sets an endpoint's classification against the bound spec.
func (e *Engine) classify(s *service, ep *inventory.EndpointState) {
	path, _, _ := strings.Cut(ep.Path, "#")
	if ref, ok := s.ops[ep.Method+" "+path]; ok {
		ref.seen = true
		ep.Classification = inventory.Documented
		if ref.op.Deprecated {
			ep.Classification = inventory.Zombie
		}
		ep.SetSource("spec", ref.op.Deprecated, s.spec.File)
		return
	}
	ep.Classification = inventory.Shadow
	// An older version of a documented API is a zombie even when the spec
	// no longer lists it: /v1/x called while /v2/x is the documented one.
	if m := versionRE.FindStringSubmatchIndex(path); m != nil && s.spec != nil {
		v := path[m[2]:m[3]]
		for key, ref := range s.ops {
			_ = key
			if ref.op.Method != ep.Method {
				continue
			}
			if mm := versionRE.FindStringSubmatchIndex(ref.op.Path); mm != nil &&
				ref.op.Path[:mm[2]] == path[:m[2]] && ref.op.Path[mm[3]:] == path[m[3]:] && newer(ref.op.Path[mm[2]:mm[3]], v) {
				ep.Classification = inventory.Zombie
				return
			}
		}
	}
}

func newer(a, b string) bool { return len(a) > len(b) || (len(a) == len(b) && a > b) }

// Process analyzes one transaction.
func (e *Engine) Process(tx *wire.Transaction) []anomaly.Anomaly {
	e.m.tx.Inc()
	e.last.ok = false
	t := tx.RequestStart
	if t.After(e.now) {
		e.now = t
	}
	host := tx.Host
	if host == "" {
		host = tx.Server.String()
	}
	s := e.service(host, t)
	if s == nil {
		return nil
	}
	s.calls++
	if t.After(s.last) {
		s.last = t
	}
	if a := tx.Server.Addr(); len(s.addrs) < 16 {
		s.addrs[a] = struct{}{}
	}
	if !tx.Mirror.Empty() && len(s.mirrors) < 16 {
		s.mirrors[mirrorName(tx.Mirror)] = true
	}

	method, path, op, proto := e.operation(tx)
	var m template.Match
	switch proto {
	case "grpc", "tls":
		m = template.Match{Template: path, Pinned: true}
	default:
		m = s.tree.Observe(path)
		if s.tree.Promotions != s.promotions {
			s.promotions = s.tree.Promotions
			e.regroup(s)
		}
	}
	tmpl := m.Template
	if op != "" {
		tmpl += "#" + op
	}
	// The key is built in a reused buffer: a map lookup by string(bytes)
	// does not allocate, and most calls find their endpoint.
	e.key = append(append(append(e.key[:0], method...), ' '), tmpl...)
	ep := s.endpoints[string(e.key)]
	newEP := false
	if ep == nil {
		key := string(e.key)
		if e.cfg.MaxEndpointsPerService > 0 && len(s.endpoints) >= e.cfg.MaxEndpointsPerService {
			e.m.evicted.WithLabelValues("endpoint").Inc()
			s.evicted++
			return nil
		}
		ep = inventory.NewEndpointState(host, method, tmpl, proto, t)
		src := "inferred"
		if m.Pinned {
			src = "pinned"
		}
		ep.SetSource(src, false, "")
		e.classify(s, ep)
		s.endpoints[key] = ep
		newEP = true
		e.m.endpoints.Inc()
	}

	auth := e.readAuth(tx)
	call := &e.call
	*call = inventory.Call{Time: t, Status: tx.Status, ContentType: tx.ResponseContentType, Auth: auth.Kind,
		Gap: tx.Flags.Has(wire.FlagGap), Truncated: tx.Flags.Has(wire.FlagRequestTruncated) || tx.Flags.Has(wire.FlagResponseTruncated),
		NoResponse: tx.Flags.Has(wire.FlagNoResponse)}
	if !tx.ResponseStart.IsZero() && !tx.RequestEnd.IsZero() {
		call.Latency = tx.ResponseStart.Sub(tx.RequestEnd)
	}
	identity := auth.Identity
	if identity == "" {
		identity = e.addrName(tx.Client.Addr())
	}
	call.Client = identity
	known := ep.ParamKinds()
	for _, p := range m.Params {
		if k := p.Kind.String(); known[p.Name] != k {
			if call.Params == nil {
				call.Params = map[string]string{}
			}
			call.Params[p.Name] = k
		}
	}
	if alg, ok := auth.JWTHeader["alg"].(string); ok {
		call.JWTAlg = alg
	}
	if iss, ok := auth.Claims["iss"].(string); ok {
		call.JWTIssuer = iss
	}
	if tx.Query != "" {
		noteQuery(ep, tx.Query)
	}
	var reqSens, respSens []string
	var respIDs []string
	// Bodies of a busy endpoint are sampled after its first calls: the
	// schema, the data classes and the ids it returns are learned by then,
	// and parsing every JSON body would cost most of the analyzer's time.
	parse := ep.Calls < bodyAlways || ep.Calls%bodySample == 0 || tx.Status >= 400
	if parse && (len(tx.RequestBody) > 0 || len(tx.ResponseBody) > 0) {
		reqSchema, respSchema := ep.Schemas()
		res := &e.res
		res.Reset()
		if reqSchema.Observe(tx.RequestBody, res) {
			call.ReqFields = changedFields(res.Changed)
			call.Sensitive = sensitiveFields(call.Sensitive, "request:", res)
			reqSens = res.Classes()
		}
		res.Reset()
		if respSchema.Observe(tx.ResponseBody, res) {
			call.RespFields = changedFields(res.Changed)
			call.Sensitive = sensitiveFields(call.Sensitive, "response:", res)
			respSens = res.Classes()
			if len(res.IDs) > 0 && e.det != nil {
				respIDs = append([]string(nil), res.IDs...)
			}
		}
	}
	call.Example = tx.Path
	e.last = lastCall{service: host, method: method, path: tmpl, unauthenticated: auth.Kind == classify.AuthNone, ok: true}
	newFields := ep.Add(call)
	if e.det == nil {
		return nil
	}
	obs := &inventory.Observation{
		Tx: tx, Time: t, Service: host, Method: method, Path: tmpl, Classification: ep.Classification,
		NewEndpoint: newEP, PathParams: m.Values(), Identity: identity, Principal: auth.Principal(), Roles: auth.Roles(),
		Auth: auth.Kind, LoginLike: loginLike(method, path),
		RequestSensitive: reqSens, ResponseSensitive: respSens, NewFields: newFields, ResponseIDs: respIDs,
	}
	obs.AuthFailed = tx.Status == 401 || (tx.Status == 403 && obs.LoginLike)
	return e.det.Observe(obs)
}

// changedFields renders the fields a body taught as the path → type map
// the endpoint keeps (nil when nothing changed: the common case).
func changedFields(fs []schema.Field) map[string]string {
	if len(fs) == 0 {
		return nil
	}
	m := make(map[string]string, len(fs))
	for _, f := range fs {
		m[f.Path] = f.Type.String()
	}
	return m
}

func sensitiveFields(m map[string]string, prefix string, res *schema.Result) map[string]string {
	for _, f := range res.Sensitive {
		if m == nil {
			m = map[string]string{}
		}
		m[prefix+f.Path] = f.Class
	}
	return m
}

// Body sampling: every body of an endpoint's first bodyAlways calls is
// parsed, then one in bodySample (errors always).
const (
	bodyAlways = 256
	bodySample = 8
)

// readAuth classifies credentials, decoding a JWT's claims once per token.
func (e *Engine) readAuth(tx *wire.Transaction) classify.Auth {
	return classify.ReadAuthCached(tx, e.claims)
}

// operation names what was called: method, path, a sub-operation
// (GraphQL operation, JSON-RPC or MCP method/tool) and the protocol.
func (e *Engine) operation(tx *wire.Transaction) (method, path, op, proto string) {
	method, path, proto = tx.Method, tx.Path, tx.Protocol
	if proto == "" {
		proto = "http/1.1"
	}
	switch {
	case proto == "tls":
		return "TLS", "*", "", proto
	case proto == "grpc":
		return "POST", path, "", proto
	}
	if path == "" {
		path = "/"
	}
	if method == "POST" && len(tx.RequestBody) > 0 && tx.RequestBody[0] == '{' && maybeRPC(path, tx.RequestBody) {
		var body struct {
			OperationName string          `json:"operationName"`
			Query         string          `json:"query"`
			JSONRPC       string          `json:"jsonrpc"`
			Method        string          `json:"method"`
			Params        json.RawMessage `json:"params"`
		}
		if json.Unmarshal(tx.RequestBody, &body) == nil {
			switch {
			case body.Query != "" && strings.Contains(path, "graphql"):
				op = body.OperationName
				if op == "" {
					op = graphqlOp(body.Query)
				}
				return method, path, op, "graphql"
			case body.JSONRPC == "2.0" && body.Method != "":
				op = body.Method
				if body.Method == "tools/call" || body.Method == "resources/read" || body.Method == "prompts/get" {
					var p struct {
						Name string `json:"name"`
						URI  string `json:"uri"`
					}
					_ = json.Unmarshal(body.Params, &p)
					if p.Name != "" {
						op += ":" + p.Name
					} else if p.URI != "" {
						op += ":" + p.URI
					}
				}
				if strings.HasPrefix(body.Method, "tools/") || strings.HasPrefix(body.Method, "resources/") ||
					strings.HasPrefix(body.Method, "prompts/") || body.Method == "initialize" {
					return method, path, op, "mcp"
				}
				return method, path, op, "jsonrpc"
			}
		}
	}
	return method, path, "", proto
}

// maybeRPC tells cheaply whether a JSON body may be a GraphQL query or a
// JSON-RPC (MCP) call, before it is decoded for its operation.
func maybeRPC(path string, body []byte) bool {
	return bytes.Contains(body, []byte(`"jsonrpc"`)) || (strings.Contains(path, "graphql") && bytes.Contains(body, []byte(`"query"`)))
}

var gqlRE = regexp.MustCompile(`^\s*(query|mutation|subscription)\s*([A-Za-z_][A-Za-z0-9_]*)?`)

func graphqlOp(q string) string {
	m := gqlRE.FindStringSubmatch(q)
	if m == nil {
		return "anonymous"
	}
	if m[2] != "" {
		return m[2]
	}
	return m[1]
}

func loginLike(method, path string) bool {
	p := strings.ToLower(path)
	for _, w := range []string{"login", "signin", "sign-in", "oauth/token", "/token", "/auth", "password", "session"} {
		if strings.Contains(p, w) {
			return method == "POST" || method == "PUT"
		}
	}
	return false
}

// noteQuery counts each query parameter's presence on the endpoint and
// learns its type, without allocating for names already known.
func noteQuery(ep *inventory.EndpointState, q string) {
	for n := 0; q != "" && n < 64; n++ {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			if u, err := url.QueryUnescape(k); err == nil {
				k = u
			}
		}
		if k == "" {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			if u, err := url.QueryUnescape(v); err == nil {
				v = u
			}
		}
		ep.NoteQuery(k, queryType(v))
	}
}

func queryType(v string) string {
	switch template.Classify(v) {
	case template.Int:
		return "integer"
	case template.UUID:
		return "uuid"
	case template.Date:
		return "date"
	case template.Email:
		return "email"
	}
	if v == "true" || v == "false" {
		return "boolean"
	}
	return "string"
}

// regroup merges endpoints whose templates a promotion generalised.
func (e *Engine) regroup(s *service) { e.relocate(s, s.tree.Resolve, false) }

// relocate moves each endpoint of s to the template route gives its path,
// adding it to the endpoint already there. After an operator's decision
// (decided), gRPC and TLS endpoints stay (their templates are not paths
// of the tree) and an endpoint moved to a pinned template says so.
func (e *Engine) relocate(s *service, route func(string) string, decided bool) {
	keys := make([]string, 0, len(s.endpoints))
	for k := range s.endpoints {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ep := s.endpoints[k]
		if ep == nil || decided && (ep.Protocol == "grpc" || ep.Protocol == "tls") {
			continue
		}
		path, op, _ := strings.Cut(ep.Path, "#")
		to := route(path)
		if to == path {
			continue
		}
		pinned := decided && s.tree.IsPinned(to)
		if op != "" {
			to += "#" + op
		}
		delete(s.endpoints, k)
		nk := ep.Method + " " + to
		if dst, ok := s.endpoints[nk]; ok {
			dst.Merge(ep)
			e.m.endpoints.Dec()
			continue
		}
		ep.Path = to
		ep.Changed = true
		if pinned {
			ep.SetSource("pinned", false, "")
		}
		e.classify(s, ep)
		s.endpoints[nk] = ep
	}
}

func mirrorName(m wire.Mirror) string {
	var parts []string
	if m.Source != "" {
		parts = append(parts, m.Source)
	}
	if m.VNI != 0 {
		parts = append(parts, fmt.Sprintf("vni %d", m.VNI))
	}
	for _, v := range m.VLANs {
		parts = append(parts, fmt.Sprintf("vlan %d", v))
	}
	if m.ERSPANSession != 0 {
		parts = append(parts, fmt.Sprintf("erspan %d", m.ERSPANSession))
	}
	return strings.Join(parts, " ")
}

// LastCall names the endpoint the latest Process call was counted on, for
// per-minute statistics kept beside the inventory; ok is false when the
// call was refused (caps).
func (e *Engine) LastCall() (service, method, path string, unauthenticated, ok bool) {
	l := e.last
	return l.service, l.method, l.path, l.unauthenticated, l.ok
}

// Heartbeat hands a sensor heartbeat to detectors that use it.
func (e *Engine) Heartbeat(hb *wire.Heartbeat) {
	if h, ok := e.det.(heartbeats); ok {
		h.Heartbeat(hb)
	}
}

// Advance moves packet time without traffic.
func (e *Engine) Advance(now time.Time) []anomaly.Anomaly {
	if now.After(e.now) {
		e.now = now
	}
	if e.det == nil {
		return nil
	}
	return e.det.Advance(now)
}

// Close ends the input: detectors close their open incidents.
func (e *Engine) Close() []anomaly.Anomaly {
	if c, ok := e.det.(closer); ok {
		return c.Close(e.now)
	}
	return nil
}

// Services returns the inventory, services and endpoints sorted, orphan
// operations of bound specs included.
func (e *Engine) Services() []inventory.Service {
	hosts := make([]string, 0, len(e.services))
	for h := range e.services {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	out := make([]inventory.Service, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, e.view(h, e.services[h]))
	}
	return out
}

// view renders one service with its endpoints.
func (e *Engine) view(h string, s *service) inventory.Service {
	svc := inventory.Service{Host: h, FirstSeen: s.first, LastSeen: s.last, Calls: s.calls,
		Addresses: sortedAddrs(s.addrs), Mirrors: sortedSet(s.mirrors)}
	if s.spec != nil {
		svc.Spec = s.spec.File
	}
	for _, ep := range s.endpoints {
		svc.Endpoints = append(svc.Endpoints, ep.Snapshot())
	}
	for _, ref := range s.ops {
		if ref.seen {
			continue
		}
		orphan := inventory.Endpoint{Service: h, Method: ref.op.Method, Path: ref.op.Path,
			Classification: inventory.Orphan, Auth: []string{}, Sensitive: []string{},
			Detail: inventory.Detail{Template: inventory.TemplateEvidence{Source: "spec", Confidence: 1}, Deprecated: ref.op.Deprecated, Spec: s.spec.File}}
		svc.Endpoints = append(svc.Endpoints, orphan)
	}
	sort.Slice(svc.Endpoints, func(i, j int) bool {
		a, b := svc.Endpoints[i], svc.Endpoints[j]
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Method < b.Method
	})
	for _, ep := range svc.Endpoints {
		svc.RiskScore = max(svc.RiskScore, ep.RiskScore)
	}
	return svc
}

func sortedAddrs(m map[netip.Addr]struct{}) []string {
	out := make([]string, 0, len(m))
	for a := range m {
		out = append(out, a.String())
	}
	sort.Strings(out)
	return out
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ErrUnknownService is returned for a host the inventory has not seen.
var ErrUnknownService = errors.New("unknown service")

// Spec renders the OpenAPI 3 document reconstructed from the traffic of
// a service.
func (e *Engine) Spec(host string) ([]byte, error) {
	s := e.services[host]
	if s == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownService, host)
	}
	var obs []spec.Observed
	seen := map[string]bool{}
	keys := make([]string, 0, len(s.endpoints))
	for k := range s.endpoints {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ep := s.endpoints[k]
		if ep.Method == "TLS" || ep.Protocol == "grpc" || ep.Protocol == "websocket" {
			continue
		}
		path, _, _ := strings.Cut(ep.Path, "#")
		if seen[ep.Method+" "+path] {
			continue
		}
		seen[ep.Method+" "+path] = true
		req, resp := ep.Fields()
		rs, ps := ep.Schemas()
		o := spec.Observed{Method: ep.Method, Path: path, Query: ep.QueryTypes(), ReqFields: req, RespFields: resp,
			ReqSchema: rs.Render(), RespSchema: ps.Render(),
			Deprecated: ep.Classification == inventory.Zombie, PathTypes: map[string]string{}}
		for name, kind := range ep.ParamKinds() {
			switch kind {
			case "integer":
				o.PathTypes[name] = "integer"
			case "uuid", "date", "email":
				o.PathTypes[name] = kind
			}
		}
		for st := range ep.Statuses() {
			o.Statuses = append(o.Statuses, st)
		}
		sort.Ints(o.Statuses)
		for _, a := range ep.AuthKinds() {
			if a != classify.AuthNone {
				o.Auth = append(o.Auth, a)
			}
		}
		obs = append(obs, o)
	}
	return spec.Export(host, host+" (observed)", obs)
}

// Diff compares a service's traffic with its spec.
type Diff struct {
	Service string   `json:"service"`
	Spec    string   `json:"spec"`
	Shadow  []string `json:"shadow"` // observed, not documented
	Zombie  []string `json:"zombie"` // deprecated (or older versions) still called
	Orphan  []string `json:"orphan"` // documented, not observed
	Drift   []string `json:"drift"`  // per operation: undocumented statuses, query parameters, auth
}

// Diff returns the differences between traffic and the bound spec.
func (e *Engine) Diff(host string) (Diff, error) {
	s := e.services[host]
	if s == nil {
		return Diff{}, fmt.Errorf("%w: %s", ErrUnknownService, host)
	}
	d := Diff{Service: host, Shadow: []string{}, Zombie: []string{}, Orphan: []string{}, Drift: []string{}}
	if s.spec != nil {
		d.Spec = s.spec.File
	}
	for _, ep := range e.Services() {
		if ep.Host != host {
			continue
		}
		for _, x := range ep.Endpoints {
			name := x.Method + " " + x.Path
			switch x.Classification {
			case inventory.Shadow:
				d.Shadow = append(d.Shadow, name)
			case inventory.Zombie:
				d.Zombie = append(d.Zombie, name)
			case inventory.Orphan:
				d.Orphan = append(d.Orphan, name)
			}
		}
	}
	for key, ref := range s.ops {
		ep := s.endpoints[key]
		if ep == nil {
			continue
		}
		documented := map[string]bool{}
		for _, st := range ref.op.Statuses {
			documented[st] = true
		}
		for st := range ep.Statuses() {
			code := fmt.Sprint(st)
			if len(documented) > 0 && !documented[code] && !documented["default"] && !documented[code[:1]+"XX"] {
				d.Drift = append(d.Drift, fmt.Sprintf("%s: undocumented status %d", key, st))
			}
		}
		known := map[string]bool{}
		for _, q := range ref.op.Query {
			known[q] = true
		}
		for q := range ep.QueryTypes() {
			if !known[q] {
				d.Drift = append(d.Drift, fmt.Sprintf("%s: undocumented query parameter %q", key, q))
			}
		}
		req, resp := ep.Fields()
		for _, f := range []struct {
			dir      string
			seen     map[string]string
			document map[string]bool
		}{{"request", req, ref.op.ReqFields}, {"response", resp, ref.op.RespFields}} {
			if f.document == nil {
				continue // the spec gives no schema to compare with
			}
			n := 0
			for _, p := range sortedKeys(f.seen) {
				if spec.Documents(f.document, p) {
					continue
				}
				if n++; n > maxDriftFields {
					d.Drift = append(d.Drift, fmt.Sprintf("%s: more undocumented %s fields", key, f.dir))
					break
				}
				d.Drift = append(d.Drift, fmt.Sprintf("%s: undocumented %s field %s (%s)", key, f.dir, p, f.seen[p]))
			}
		}
		if len(ref.op.RespTypes) > 0 {
			for _, ct := range ep.ContentTypes() {
				if !mediaDocumented(ref.op.RespTypes, ct) {
					d.Drift = append(d.Drift, fmt.Sprintf("%s: undocumented response content type %s", key, ct))
				}
			}
		}
		without, _ := ep.UnauthenticatedSuccess()
		if len(ref.op.Security) > 0 && without > 0 {
			d.Drift = append(d.Drift, fmt.Sprintf("%s: %d successful calls without the credentials the spec requires", key, without))
		}
	}
	for _, l := range [][]string{d.Shadow, d.Zombie, d.Orphan, d.Drift} {
		sort.Strings(l)
	}
	return d, nil
}

// maxDriftFields bounds the undocumented fields listed per operation and
// direction.
const maxDriftFields = 20

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// mediaDocumented matches a media type against documented ones,
// wildcards (application/*, */*) included.
func mediaDocumented(documented []string, ct string) bool {
	for _, d := range documented {
		d, _, _ = strings.Cut(d, ";")
		d = strings.TrimSpace(strings.ToLower(d))
		if d == ct || d == "*/*" || (strings.HasSuffix(d, "/*") && strings.HasPrefix(ct, d[:len(d)-1])) {
			return true
		}
	}
	return false
}

// ChangedEndpoints returns the endpoints updated since the last call and
// clears their marks (what a store needs to write).
func (e *Engine) ChangedEndpoints() []inventory.Endpoint {
	var out []inventory.Endpoint
	for _, s := range e.services {
		for _, ep := range s.endpoints {
			if ep.Changed {
				ep.Changed = false
				out = append(out, ep.Snapshot())
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// Snapshot serialises the inventory (as the stores keep it) and the
// operator's template decisions for a checkpoint.
func (e *Engine) Snapshot() ([]byte, error) { return e.snapshot(e.Services()) }

// learner is a Detectors that learns per-endpoint baselines a checkpoint
// can carry (analyzer/detect).
type learner interface {
	ExportBaselines(services []string) ([]byte, error)
	ImportBaselines(b []byte) error
	ForgetBaselines(services []string)
}

// incidentKeeper is a Detectors whose open incidents a checkpoint can
// carry (analyzer/detect).
type incidentKeeper interface {
	ExportIncidents(services []string) ([]byte, error)
	ImportIncidents(b []byte) error
	ForgetIncidents(services []string)
}

// checkpoint is the form of SnapshotServices: the inventory of some
// services, the baselines the detectors learned on them and the
// incidents open on them.
type checkpoint struct {
	Services  []inventory.Service `json:"services"`
	Baselines json.RawMessage     `json:"baselines,omitempty"`
	Incidents json.RawMessage     `json:"incidents,omitempty"`
}

// SnapshotServices serialises the named services alone (those a Kafka
// partition carries) with their learned baselines, in a form Restore
// reads; unknown hosts are left out.
func (e *Engine) SnapshotServices(hosts []string) ([]byte, error) {
	sorted := slices.Clone(hosts)
	sort.Strings(sorted)
	sorted = slices.Compact(sorted)
	var cp checkpoint
	for _, h := range sorted {
		if s := e.services[h]; s != nil {
			cp.Services = append(cp.Services, e.view(h, s))
		}
	}
	if l, ok := e.det.(learner); ok {
		b, err := l.ExportBaselines(sorted)
		if err != nil {
			return nil, err
		}
		cp.Baselines = b
	}
	if k, ok := e.det.(incidentKeeper); ok {
		b, err := k.ExportIncidents(sorted)
		if err != nil {
			return nil, err
		}
		cp.Incidents = b
	}
	return json.Marshal(cp)
}

// Forget drops the named services' inventory, baselines and open
// incidents (without closing them), so that a checkpoint of them can be
// restored in their place: the state of a partition another analyzer
// owned for a while is stale here.
func (e *Engine) Forget(hosts []string) {
	for _, h := range hosts {
		if s := e.services[h]; s != nil {
			e.m.endpoints.Sub(float64(len(s.endpoints)))
			delete(e.services, h)
		}
	}
	if k, ok := e.det.(incidentKeeper); ok {
		k.ForgetIncidents(hosts)
	}
	if l, ok := e.det.(learner); ok {
		l.ForgetBaselines(hosts)
	}
}

// Restore reloads the inventory from a checkpoint (Snapshot's services
// and template decisions, SnapshotServices' services and baselines, or a
// bare list of services): the decisions are put in force first; endpoints
// keep their templates, calls, first and last seen, auth kinds, sensitive
// classes, statuses and fields; templates are pinned so the restored
// inventory does not flap; the detectors get their learned baselines
// and open incidents back.
func (e *Engine) Restore(b []byte) error {
	if err := e.restoreTemplates(b); err != nil {
		return err
	}
	if b = bytes.TrimSpace(b); len(b) > 0 && b[0] == '{' {
		var cp struct {
			Services  json.RawMessage `json:"services"`
			Baselines json.RawMessage `json:"baselines"`
			Incidents json.RawMessage `json:"incidents"`
		}
		if err := json.Unmarshal(b, &cp); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		if len(cp.Baselines) > 0 {
			if l, ok := e.det.(learner); ok {
				if err := l.ImportBaselines(cp.Baselines); err != nil {
					return fmt.Errorf("checkpoint: %w", err)
				}
			}
		}
		// After the baselines: a restored incident freezes its endpoint's.
		if len(cp.Incidents) > 0 && string(cp.Incidents) != "null" {
			if k, ok := e.det.(incidentKeeper); ok {
				if err := k.ImportIncidents(cp.Incidents); err != nil {
					return fmt.Errorf("checkpoint: %w", err)
				}
			}
		}
		if len(cp.Services) == 0 || string(cp.Services) == "null" {
			return nil
		}
		b = cp.Services
	}
	return e.restoreServices(b)
}

func (e *Engine) restoreServices(b []byte) error {
	type endpoint struct {
		inventory.Endpoint
		Detail inventory.Detail `json:"detail"`
	}
	var svcs []struct {
		inventory.Service
		Endpoints []endpoint `json:"endpoints"`
	}
	if err := json.Unmarshal(b, &svcs); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	for _, sv := range svcs {
		s := e.service(sv.Host, sv.FirstSeen)
		if s == nil {
			continue
		}
		s.calls, s.last = sv.Calls, sv.LastSeen
		for _, a := range sv.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				s.addrs[ip] = struct{}{}
			}
		}
		for _, m := range sv.Mirrors {
			s.mirrors[m] = true
		}
		for _, ep := range sv.Endpoints {
			if ep.Classification == inventory.Orphan {
				continue
			}
			path, _, _ := strings.Cut(ep.Path, "#")
			if ep.Protocol != "grpc" && ep.Protocol != "tls" {
				if !strings.Contains(path, "{") {
					s.tree.Observe(path)
				} else {
					s.tree.Pin(path)
				}
			}
			key := ep.Method + " " + ep.Path
			if _, dup := s.endpoints[key]; dup {
				continue
			}
			st := inventory.NewEndpointState(sv.Host, ep.Method, ep.Path, ep.Protocol, ep.FirstSeen)
			st.Restore(ep.Endpoint, ep.Detail)
			st.SetSource(ep.Detail.Template.Source, ep.Detail.Deprecated, ep.Detail.Spec)
			e.classify(s, st)
			s.endpoints[key] = st
			e.m.endpoints.Inc()
		}
	}
	return nil
}
