package detect

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/baseline"
	"github.com/apiscout/apiscout/analyzer/inventory"
)

// evidence starts an anomaly record for obs. The client's principal (a
// token's subject) goes into the details: the client itself is a
// credential fingerprint, which names no one.
func evidence(typ string, obs *inventory.Observation, client string, c *baseline.Call) anomaly.Anomaly {
	ev := anomaly.Anomaly{
		Type: typ, Host: obs.Service, Method: obs.Method, Path: obs.Path, Client: client,
		Start: obs.Time, Evidence: []string{c.TxID()},
	}
	if obs.Principal != "" {
		ev.Details = details("principal", obs.Principal)
	}
	return ev
}

func success(status int) bool { return status >= 200 && status < 300 }

// beforeFold runs the detectors that compare a call with what its
// endpoint and client learned before it.
func (s *Set) beforeFold(obs *inventory.Observation, ep *baseline.Endpoint, cl *baseline.Client, c *baseline.Call) {
	if !ep.Ready(obs.Time, s.acfg.LearningPeriod, s.acfg.MinSupport) {
		return
	}
	tx := obs.Tx
	ok := success(tx.Status)
	authed := c.Authenticated
	// Unauthenticated sensitive responses are judged (higher) by
	// sensitiveUnauth, before the fold learns them, learned or not.
	if s.on[iSensitive] && ok && authed {
		s.sensitiveNew(obs, ep, c)
	}
	if s.on[iUnauth] && ok && !authed {
		s.unauthenticated(obs, ep, c)
	}
	if s.on[iSchema] && len(obs.NewFields) > 0 {
		s.schemaDrift(obs, ep, c)
	}
	if s.on[iBFLA] && ok && authed && cl != nil {
		s.bfla(obs, ep, cl, c)
	}
}

// sensitiveNew — sensitive_data_exposure (new class), API3:2023, medium:
// a learned endpoint's successful response carries a sensitive data class
// (card, national_id, secret, ...) it never carried while learning, e.g. a
// serializer change that leaks a field.
func (s *Set) sensitiveNew(obs *inventory.Observation, ep *baseline.Endpoint, c *baseline.Call) {
	for _, cls := range obs.ResponseSensitive {
		if contains(ep.Sensitive, cls) {
			continue
		}
		if s.touch(anomaly.TypeSensitiveDataExposure, obs.Service, obs.Method, obs.Path, "", obs.Time) {
			return
		}
		ev := evidence(anomaly.TypeSensitiveDataExposure, obs, "", c)
		ev.Severity = anomaly.Medium
		ev.Summary = "response carries sensitive data class " + cls + " never seen on this endpoint"
		ev.Details = addDetails(ev.Details, "reason", "new_class", "class", cls, "client", obs.Identity)
		s.raise(ev, frozenRef{})
		return
	}
}

// unauthenticated — unauthenticated_access, API2:2023, high: a call
// without credentials succeeds on an endpoint whose learned successes
// carried credentials (at least detect.unauth_min_ratio of at least
// analyzer.min_support successes).
func (s *Set) unauthenticated(obs *inventory.Observation, ep *baseline.Endpoint, c *baseline.Call) {
	total := ep.AuthOK + ep.UnauthOK
	if ep.AuthOK < int64(s.acfg.MinSupport) || float64(ep.AuthOK) < s.cfg.UnauthMinRatio*float64(total) {
		return
	}
	if s.touch(anomaly.TypeUnauthenticatedAccess, obs.Service, obs.Method, obs.Path, "", obs.Time) {
		return
	}
	ev := evidence(anomaly.TypeUnauthenticatedAccess, obs, "", c)
	ev.Observed = 1
	ev.Expected = float64(ep.UnauthOK) / float64(total)
	ev.Summary = "request without credentials succeeded on an endpoint that requires them"
	ev.Details = addDetails(ev.Details, "client", obs.Identity, "status", strconv.Itoa(obs.Tx.Status))
	s.raise(ev, frozenRef{ep: ep})
}

// schemaDrift — schema_drift, API9:2023, low (medium when a field changes
// type): a learned endpoint's request or response carries a body field
// never seen on it, or a known field with another type.
func (s *Set) schemaDrift(obs *inventory.Observation, ep *baseline.Endpoint, c *baseline.Call) {
	var added, retyped []string
	ok := success(obs.Tx.Status)
	for _, f := range obs.NewFields {
		if !ok && strings.HasPrefix(f, "response:") {
			// An error body is not the endpoint's response schema: the
			// first 400 of an endpoint that never failed is not drift.
			continue
		}
		ptr, typ := baseline.SplitField(f)
		if old, ok := ep.Fields[ptr]; ok && old != typ {
			retyped = append(retyped, ptr+":"+old+"->"+typ)
		} else if !ok {
			added = append(added, f)
		}
	}
	if len(added)+len(retyped) == 0 {
		return
	}
	ev := evidence(anomaly.TypeSchemaDrift, obs, "", c)
	ev.Severity = anomaly.Low
	if ev.Details == nil {
		ev.Details = map[string]string{}
	}
	if len(added) > 0 {
		ev.Details["new_fields"] = strings.Join(added, ",")
	}
	if len(retyped) > 0 {
		ev.Severity = anomaly.Medium
		ev.Details["retyped_fields"] = strings.Join(retyped, ",")
	}
	ev.Observed = float64(len(added) + len(retyped))
	ev.Summary = "body schema changed: " + strconv.Itoa(len(added)) + " new, " + strconv.Itoa(len(retyped)) + " retyped field(s)"
	s.raise(ev, frozenRef{})
}

// bfla — bfla, API5:2023, high (medium when the endpoint is not
// admin-like): an authenticated identity of a learned kind (its role
// claims, else its auth kind, learned over all services: a kind that
// never called this service, such as ordinary users on the admin API, is
// the case that matters most) calls with success a learned endpoint that
// other kinds call but its kind never called while learning.
func (s *Set) bfla(obs *inventory.Observation, ep *baseline.Endpoint, cl *baseline.Client, c *baseline.Call) {
	if ep.Kinds[cl.Kind] > 0 {
		return
	}
	kd := s.base.KindOf(cl.Kind)
	if kd == nil || obs.Time.Sub(kd.First) < s.acfg.LearningPeriod || kd.Learned < int64(s.acfg.MinSupport) {
		return
	}
	var others int64
	for _, n := range ep.Kinds {
		others += n
	}
	if others < int64(s.acfg.MinSupport) {
		return
	}
	if s.touch(anomaly.TypeBFLA, obs.Service, obs.Method, obs.Path, obs.Identity, obs.Time) {
		return
	}
	ev := evidence(anomaly.TypeBFLA, obs, obs.Identity, c)
	ev.Severity = anomaly.Medium
	if adminLike(obs.Path) {
		ev.Severity = anomaly.High
	}
	ev.Summary = "identity of kind " + cl.Kind + " called an endpoint its kind never calls"
	ev.Details = addDetails(ev.Details, "kind", cl.Kind, "principal", obs.Principal, "endpoint", obs.Method+" "+obs.Path)
	s.raise(ev, frozenRef{cl: cl})
}

var adminWords = []string{"admin", "internal", "manage", "debug", "actuator", "system", "config", "setting", "role", "permission", "impersonat", "sudo", "root", "superuser", "staff", "ops"}

// adminLike reports whether a path template names an administrative
// function.
func adminLike(path string) bool {
	p := strings.ToLower(path)
	for _, w := range adminWords {
		if strings.Contains(p, w) {
			return true
		}
	}
	return false
}

// afterFold runs the detectors that look at the call itself or at the
// client's counters including it.
func (s *Set) afterFold(obs *inventory.Observation, ep *baseline.Endpoint, cl *baseline.Client, c *baseline.Call) {
	if s.on[iShadow] && obs.Classification == inventory.Shadow {
		s.shadow(obs, ep, c)
	}
	if s.on[iZombie] && obs.Classification == inventory.Zombie {
		s.zombie(obs, ep, c)
	}
	if s.on[iJWT] && cl != nil && (obs.Auth == "jwt" || obs.Auth == "bearer") {
		s.jwt(obs, cl, c)
	}
	if cl != nil {
		if s.on[iStuffing] && c.LoginLike && c.AuthFailed && cl.WAuthFail >= s.cfg.StuffingClient {
			s.bruteForce(obs, cl, c)
		}
		if s.on[iScraping] && cl.WCount >= s.cfg.ScrapeMinRequests {
			s.scraping(obs, cl, c)
		}
		if s.on[iExfil] && cl.WBytes >= s.cfg.ExfilMinBytes && c.RespBytes > 0 {
			s.exfiltration(obs, cl, c)
		}
		if s.on[iBOLA] && len(obs.PathParams) > 0 && c.Authenticated {
			s.bola(obs, ep, cl, c)
		}
	}
	if s.payload != nil {
		s.injection(obs, cl, c)
	}
}

// shadow — shadow_endpoint, API9:2023, medium: an endpoint absent from the
// specs (classification shadow) that first appeared after its service was
// learned starts answering with success. Endpoints seen during the
// service's learning period are inventory findings, not incidents; 404
// probes of a scanner are not endpoints.
func (s *Set) shadow(obs *inventory.Observation, ep *baseline.Endpoint, c *baseline.Call) {
	if ep.Notes&noteShadow != 0 || c.Status < 200 || c.Status >= 400 {
		return
	}
	first := s.svcFirst[obs.Service]
	if ep.First.Sub(first) < s.acfg.LearningPeriod {
		return
	}
	ep.Notes |= noteShadow
	ev := evidence(anomaly.TypeShadowEndpoint, obs, "", c)
	ev.Summary = "undocumented endpoint started receiving traffic"
	ev.Details = addDetails(ev.Details, "client", obs.Identity, "first_seen", ep.First.UTC().Format(time.RFC3339))
	s.raise(ev, frozenRef{})
}

const noteShadow = 1

// zombie — zombie_call, API9:2023, medium: an endpoint the specs mark
// deprecated (classification zombie), quiet through its service's
// learning period, is called. Every call refreshes the incident, so it
// stays open while the endpoint is in use. A deprecated endpoint already
// in use while the service was learned is a standing condition, which
// the inventory reports as a finding ("deprecated (zombie) endpoint
// still called"), not an event: an incident open from the first packet
// to the last says nothing the inventory does not.
func (s *Set) zombie(obs *inventory.Observation, ep *baseline.Endpoint, c *baseline.Call) {
	if s.touch(anomaly.TypeZombieCall, obs.Service, obs.Method, obs.Path, "", obs.Time) {
		return
	}
	if ep.First.Sub(s.svcFirst[obs.Service]) < s.acfg.LearningPeriod {
		return
	}
	ev := evidence(anomaly.TypeZombieCall, obs, "", c)
	ev.Summary = "deprecated endpoint called"
	ev.Details = addDetails(ev.Details, "client", obs.Identity, "status", strconv.Itoa(c.Status))
	s.raise(ev, frozenRef{})
}

// sensitiveUnauth — sensitive_data_exposure (unauthenticated), API3:2023,
// high: after its service's learning period, a call without credentials
// gets a successful response carrying a sensitive data class that the
// endpoint's successful unauthenticated responses never carried before
// (ep is nil for an endpoint's first call: every class is new). What an
// endpoint served without credentials while its service was learned (a
// login handing out tokens, a public export of contacts) is a standing
// condition the inventory reports as a finding; an incident is the change.
func (s *Set) sensitiveUnauth(obs *inventory.Observation, ep *baseline.Endpoint, c *baseline.Call) {
	if obs.Time.Sub(s.svcFirst[obs.Service]) < s.acfg.LearningPeriod {
		return
	}
	var fresh []string
	for _, cls := range obs.ResponseSensitive {
		if ep == nil || !contains(ep.UnauthSensitive, cls) {
			fresh = append(fresh, cls)
		}
	}
	if len(fresh) == 0 || s.touch(anomaly.TypeSensitiveDataExposure, obs.Service, obs.Method, obs.Path, "", obs.Time) {
		return
	}
	ev := evidence(anomaly.TypeSensitiveDataExposure, obs, "", c)
	ev.Summary = "sensitive data served without authentication"
	ev.Details = addDetails(ev.Details, "reason", "unauthenticated", "class", strings.Join(fresh, ","), "client", obs.Identity)
	s.raise(ev, frozenRef{})
}

// bruteForce — credential_stuffing (one client), API2:2023, high: one
// client fails to authenticate on login-like endpoints at least
// detect.stuffing_client times in one client window.
func (s *Set) bruteForce(obs *inventory.Observation, cl *baseline.Client, c *baseline.Call) {
	if s.touch(anomaly.TypeCredentialStuffing, obs.Service, "", "", obs.Identity, obs.Time) {
		return
	}
	ev := evidence(anomaly.TypeCredentialStuffing, obs, obs.Identity, c)
	ev.Observed = float64(cl.WAuthFail)
	ev.Expected = float64(s.cfg.StuffingClient)
	ev.Summary = "one client failing to log in repeatedly (brute force)"
	ev.Details = addDetails(ev.Details, "mode", "brute_force")
	s.raise(ev, frozenRef{cl: cl})
}

// clientReady reports whether the per-client distributions have enough
// support to judge a client against them.
func (s *Set) clientReady() bool {
	return s.base.ClientSupport() >= float64(s.acfg.MinSupport)
}

// scraping — scraping, API6:2023, medium: one client makes at least
// detect.scrape_min_requests requests in a client window and more than
// detect.scrape_factor times the learned 99th percentile of requests per
// client window.
func (s *Set) scraping(obs *inventory.Observation, cl *baseline.Client, c *baseline.Call) {
	if !s.clientReady() || float64(cl.WCount) < s.cfg.ScrapeFactor*s.base.P99Req {
		return
	}
	if s.touch(anomaly.TypeScraping, obs.Service, "", "", obs.Identity, obs.Time) {
		return
	}
	ev := evidence(anomaly.TypeScraping, obs, obs.Identity, c)
	ev.Observed = float64(cl.WCount)
	ev.Expected = s.base.P99Req
	ev.Summary = "one client requesting far more than any normal client"
	s.raise(ev, frozenRef{cl: cl})
}

// exfiltration — data_exfiltration, API3:2023, high: one client receives
// at least detect.exfil_min_bytes of response bodies in a client window
// and more than detect.exfil_factor times the learned 99th percentile.
func (s *Set) exfiltration(obs *inventory.Observation, cl *baseline.Client, c *baseline.Call) {
	if !s.clientReady() || float64(cl.WBytes) < s.cfg.ExfilFactor*s.base.P99Bytes {
		return
	}
	if s.touch(anomaly.TypeDataExfiltration, obs.Service, "", "", obs.Identity, obs.Time) {
		return
	}
	ev := evidence(anomaly.TypeDataExfiltration, obs, obs.Identity, c)
	ev.Observed = float64(cl.WBytes)
	ev.Expected = s.base.P99Bytes
	ev.Summary = "one client receiving bulk data"
	s.raise(ev, frozenRef{cl: cl})
}

// bola — bola_enumeration, API1:2023, high: one authenticated identity
// (object-level authorisation means nothing without credentials) touches,
// on one endpoint and within one client window, at least max(detect.bola_min_ids,
// 2 × the learned maximum) object ids (path parameters) that it never
// touched before and that no response ever returned to it. Sequential
// numeric ids are reported as such.
func (s *Set) bola(obs *inventory.Observation, ep *baseline.Endpoint, cl *baseline.Client, c *baseline.Call) {
	var os *baseline.ObjectSet
	fresh := false
	// Parameters in name order: the sequence detection must not depend on
	// map iteration order.
	var buf [4]string
	names := buf[:0]
	for name := range obs.PathParams {
		names = append(names, name)
	}
	slices.Sort(names)
	roll := func(n int) { s.base.LearnBOLA(ep, cl, n) }
	for _, name := range names {
		o, f := cl.TouchObject(ep.Key, obs.PathParams[name], obs.Time, s.cfg.ClientWindow, c.TxID, s.cfg.BOLAMinIDs-3, roll)
		if o != nil {
			os = o
		}
		fresh = fresh || f
	}
	if os == nil || !fresh {
		return
	}
	limit := max(float64(s.cfg.BOLAMinIDs), 2*ep.BOLAMax)
	if float64(os.NewIDs) < limit {
		return
	}
	if s.touch(anomaly.TypeBOLAEnumeration, obs.Service, "", "", obs.Identity, obs.Time) {
		return
	}
	ev := evidence(anomaly.TypeBOLAEnumeration, obs, obs.Identity, c)
	ev.Evidence = append([]string(nil), os.Evidence...)
	ev.Observed = float64(os.NewIDs)
	ev.Expected = limit
	ev.Summary = "identity touching many object ids it was never given"
	ev.Details = addDetails(ev.Details, "sequential", strconv.Itoa(os.Seq), "endpoint", obs.Method+" "+obs.Path)
	if os.Seq*2 >= os.NewIDs {
		ev.Severity = anomaly.Critical
	}
	s.raise(ev, frozenRef{cl: cl})
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
