package detect

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/baseline"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/wire"
)

// corazaDirectives run the OWASP Core Rule Set (paranoia level 1, the
// CRS default) in detection-only mode on requests only: apiscout is
// passive, it never blocks, and responses are judged by other detectors.
const corazaDirectives = `
Include @coraza.conf-recommended
SecRuleEngine DetectionOnly
SecRequestBodyAccess On
SecRequestBodyLimit 131072
SecRequestBodyInMemoryLimit 131072
SecRequestBodyLimitAction ProcessPartial
SecResponseBodyAccess Off
SecAuditEngine Off
Include @crs-setup.conf.example
Include @owasp_crs/*.conf
`

// attackTags maps CRS rule tags to the categories apiscout reports.
// Protocol-enforcement, reputation and generic tags are left out: they
// flag odd-but-harmless clients and would make the detector noisy.
var attackTags = map[string]string{
	"attack-sqli":           "sqli",
	"attack-xss":            "xss",
	"attack-lfi":            "path_traversal",
	"attack-rce":            "command_injection",
	"attack-ssrf":           "ssrf",
	"attack-rfi":            "ssrf",
	"attack-injection-php":  "code_injection",
	"attack-injection-java": "code_injection",
	"attack-nodejs":         "code_injection",
	"attack-fixation":       "session_fixation",
}

// payloadEngine inspects request parameters and bodies with Coraza and
// the CRS. Cost is kept off the hot path two ways, both deterministic so
// that replays agree: a prefilter lets through only requests whose path,
// query or body contain characters or words attack payloads need, and a
// budget caps inspections per window (what is over budget is counted).
type payloadEngine struct {
	waf    coraza.WAF
	budget int
	used   int
	buf    []byte

	mInspected *prometheus.CounterVec // result: clean, attack
	mSkipped   *prometheus.CounterVec // reason: prefilter, budget
	mSeconds   prometheus.Counter
}

func newPayloadEngine(budget int, reg prometheus.Registerer) (*payloadEngine, error) {
	waf, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(corazaDirectives))
	if err != nil {
		return nil, fmt.Errorf("coraza with the core rule set: %w", err)
	}
	p := &payloadEngine{
		waf:    waf,
		budget: budget,
		mInspected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_detect_payload_inspections_total",
			Help: "Requests inspected by the attack-payload engine (Coraza + CRS), by result (clean, attack).",
		}, []string{"result"}),
		mSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_detect_payload_skipped_total",
			Help: "Requests not inspected by the attack-payload engine, by reason (prefilter, budget).",
		}, []string{"reason"}),
		mSeconds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apiscout_detect_payload_seconds_total",
			Help: "CPU wall time spent in the attack-payload engine (its cost, apart from the other detectors).",
		}),
	}
	p.mInspected = register(reg, p.mInspected)
	p.mSkipped = register(reg, p.mSkipped)
	p.mSeconds = register(reg, p.mSeconds)
	return p, nil
}

func (p *payloadEngine) newWindow() {
	if p != nil {
		p.used = 0
	}
}

// inspect returns the attack categories and rule ids CRS matched on tx,
// or nothing when tx was not inspected.
func (p *payloadEngine) inspect(tx *wire.Transaction) (cats []string, rules []string, inspected bool) {
	if !suspicious(tx, &p.buf) {
		p.mSkipped.WithLabelValues("prefilter").Inc()
		return nil, nil, false
	}
	if p.budget > 0 && p.used >= p.budget {
		p.mSkipped.WithLabelValues("budget").Inc()
		return nil, nil, false
	}
	p.used++
	t0 := time.Now() // cost metric only; never affects results
	defer func() { p.mSeconds.Add(time.Since(t0).Seconds()) }()

	ctx := p.waf.NewTransaction()
	defer func() { _ = ctx.Close() }()
	ctx.ProcessConnection(tx.Client.Addr().String(), int(tx.Client.Port()), tx.Server.Addr().String(), int(tx.Server.Port()))
	uri := tx.Path
	if tx.Query != "" {
		uri += "?" + tx.Query
	}
	version := tx.Version
	if version == "" {
		version = "HTTP/1.1"
	}
	ctx.ProcessURI(uri, tx.Method, version)
	for _, h := range tx.RequestHeaders {
		ctx.AddRequestHeader(h.Name, h.Value)
	}
	if _, ok := tx.RequestHeader("Host"); !ok && tx.Host != "" {
		ctx.AddRequestHeader("Host", tx.Host)
	}
	if _, ok := tx.RequestHeader("Content-Type"); !ok && tx.RequestContentType != "" {
		ctx.AddRequestHeader("Content-Type", tx.RequestContentType)
	}
	ctx.ProcessRequestHeaders()
	if len(tx.RequestBody) > 0 {
		_, _, _ = ctx.WriteRequestBody(tx.RequestBody)
	}
	_, _ = ctx.ProcessRequestBody()
	seen := map[string]struct{}{}
	for _, m := range ctx.MatchedRules() {
		r := m.Rule()
		for _, tag := range r.Tags() {
			if cat, ok := attackTags[tag]; ok {
				if _, dup := seen[cat]; !dup {
					seen[cat] = struct{}{}
					cats = append(cats, cat)
				}
				if len(rules) < 8 {
					rules = append(rules, strconv.Itoa(r.ID()))
				}
				break
			}
		}
	}
	slices.Sort(cats)
	if len(cats) > 0 {
		p.mInspected.WithLabelValues("attack").Inc()
	} else {
		p.mInspected.WithLabelValues("clean").Inc()
	}
	return cats, rules, true
}

// injection — injection_attempt, API8:2023 (API7:2023 when the payload is
// only server-side request forgery), high: the OWASP Core Rule Set
// (Coraza, detection only, paranoia level 1) matches an attack rule (SQL
// injection, XSS, path traversal, command injection, SSRF/RFI, code
// injection) in the request's path, query, headers or body. Requests that
// fail the prefilter or exceed detect.payload_budget per window are not
// inspected (counted in apiscout_detect_payload_skipped_total).
func (s *Set) injection(obs *inventory.Observation, cl *baseline.Client, c *baseline.Call) {
	cats, rules, ok := s.payload.inspect(obs.Tx)
	if !ok || len(cats) == 0 {
		return
	}
	client := obs.Identity
	if client == "" {
		client = obs.Tx.Client.Addr().String()
	}
	if s.touch(anomaly.TypeInjectionAttempt, obs.Service, "", "", client, obs.Time) {
		return
	}
	ev := evidence(anomaly.TypeInjectionAttempt, obs, client, c)
	if len(cats) == 1 && cats[0] == "ssrf" {
		ev.OWASP = "API7:2023"
	}
	ev.Summary = "attack payload in request: " + strings.Join(cats, ", ")
	ev.Details = addDetails(ev.Details, "categories", strings.Join(cats, ","), "rules", strings.Join(rules, ","),
		"status", strconv.Itoa(c.Status))
	ref := frozenRef{}
	if cl != nil {
		ref.cl = cl
	}
	s.raise(ev, ref)
}

// suspicious is the prefilter: it reports whether the request's path,
// query or body (first 8 KiB) hold anything an injection, XSS,
// traversal, command injection or SSRF payload needs. It only decides
// what Coraza sees, never what is an attack. The query is percent-decoded
// and lowercased into buf first.
func suspicious(tx *wire.Transaction, buf *[]byte) bool {
	b := decodeLower((*buf)[:0], tx.Path)
	if tx.Query != "" {
		b = append(b, '?')
		b = decodeLower(b, tx.Query)
	}
	*buf = b
	if hasTrigger(b, true) {
		return true
	}
	body := tx.RequestBody
	if len(body) > 8192 {
		body = body[:8192]
	}
	if len(body) == 0 {
		return false
	}
	// JSON bodies always hold quotes and colons: look only for the
	// rarer characters there. Other bodies (forms, XML, text) are decoded
	// like a query.
	if strings.Contains(tx.RequestContentType, "json") {
		return hasTrigger(body, false)
	}
	*buf = decodeLower((*buf)[:0], string(body))
	return hasTrigger(*buf, true)
}

var triggerChar = func() (t [256]bool) {
	for _, c := range []byte("'<>;|`$\\") {
		t[c] = true
	}
	return
}()

// triggerWords: the first four are looked for in JSON bodies too.
var triggerWords = [][]byte{[]byte(".."), []byte("://"), []byte("--"), []byte("/*"),
	[]byte("#"), []byte(" or "), []byte(" and "), []byte(" union "), []byte("("), []byte("&&"),
	[]byte("file:"), []byte("localhost"), []byte("169.254."), []byte("127.0."), []byte("%00"), {0}}

func hasTrigger(b []byte, words bool) bool {
	for _, c := range b {
		if triggerChar[c] {
			return true
		}
	}
	for i, w := range triggerWords {
		if !words && i > 3 {
			break
		}
		if bytes.Contains(b, w) {
			return true
		}
	}
	return false
}

// decodeLower appends s percent-decoded ('+' as space) and ASCII
// lowercased to b.
func decodeLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			c = ' '
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			c = unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
