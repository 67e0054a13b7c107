// Package detect turns observed traffic into incidents: it feeds the
// baselines (analyzer/baseline), runs every detector on each transaction
// and on each closed window of packet time, and folds what they find into
// incidents (analyzer/anomaly.Tracker): one open incident per type and
// target, updated while it lasts, closed when traffic is normal again.
//
// Everything runs in packet time, synchronously, with no goroutines and no
// wall clock: the same sequence of Observe and Advance calls gives the same
// anomalies at any replay speed. The attack-payload engine (Coraza with the
// OWASP Core Rule Set) runs inline too, but only on requests that pass a
// cheap prefilter and within a per-window budget, so its cost is bounded
// and its sampling deterministic.
//
// The detectors, what each measures, when it fires, its OWASP API Security
// Top 10 2023 category, severity and configuration are listed in
// README.md next to this file and in the doc comment of each detector's
// function.
package detect

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/baseline"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/wire"
)

// Meta is the fixed description of a detector.
type Meta struct {
	Type     string
	Severity anomaly.Severity
	OWASP    string // OWASP API Security Top 10 2023 category, "" when none applies
	// Freezes: while an incident of this type is open, its endpoint or
	// client (or, for sensor_blind, everything) learns nothing.
	Freezes bool
}

// Detectors lists every detector in the order of the README.
var Detectors = []Meta{
	{anomaly.TypeShadowEndpoint, anomaly.Medium, "API9:2023", false},
	{anomaly.TypeZombieCall, anomaly.Medium, "API9:2023", false},
	{anomaly.TypeRateSpike, anomaly.Medium, "API4:2023", true},
	{anomaly.TypeRateDrop, anomaly.High, "", true},
	{anomaly.TypeErrorSurge, anomaly.High, "", true},
	{anomaly.TypeLatencyRegression, anomaly.Medium, "", true},
	{anomaly.TypeResponseSize, anomaly.Medium, "API3:2023", true},
	{anomaly.TypeCredentialStuffing, anomaly.High, "API2:2023", true},
	{anomaly.TypeBOLAEnumeration, anomaly.High, "API1:2023", true},
	{anomaly.TypeBFLA, anomaly.High, "API5:2023", true},
	{anomaly.TypeScraping, anomaly.Medium, "API6:2023", true},
	{anomaly.TypeDataExfiltration, anomaly.High, "API3:2023", true},
	{anomaly.TypeSensitiveDataExposure, anomaly.High, "API3:2023", false},
	{anomaly.TypeUnauthenticatedAccess, anomaly.High, "API2:2023", true},
	{anomaly.TypeInjectionAttempt, anomaly.High, "API8:2023", true},
	{anomaly.TypeSchemaDrift, anomaly.Low, "API9:2023", false},
	{anomaly.TypeJWTWeakness, anomaly.High, "API2:2023", false},
	{anomaly.TypeSensorBlind, anomaly.High, "", true},
}

// Indices into Detectors, for the per-call checks.
const (
	iShadow = iota
	iZombie
	iRateSpike
	iRateDrop
	iErrorSurge
	iLatency
	iSize
	iStuffing
	iBOLA
	iBFLA
	iScraping
	iExfil
	iSensitive
	iUnauth
	iInjection
	iSchema
	iJWT
	iBlind
	numDetectors
)

func metaIndex(t string) int {
	for i := range Detectors {
		if Detectors[i].Type == t {
			return i
		}
	}
	return -1
}

// Set runs all enabled detectors over one analyzer's traffic. It is not
// safe for concurrent use: the analyzer owns one Set per partition.
//
// Call order: Observe for every transaction, Heartbeat for every sensor
// heartbeat (or Advance whenever packet time moves without transactions),
// Close at the end of input.
// Each returns incident updates; a consumer tells them apart by Event
// (and State): Event opened with a new ID is a new incident, updated
// carries the same ID with more evidence (at most one per incident per
// window), closed is final. Consumers that keep one row per incident
// upsert by ID.
type Set struct {
	cfg  config.DetectConfig
	acfg config.AnalyzerConfig
	log  *zap.Logger

	base *baseline.Store
	tr   *anomaly.Tracker

	on  [numDetectors]bool
	sev [numDetectors]anomaly.Severity

	winStart time.Time
	svcFirst map[string]time.Time
	frozen   map[anomaly.Target]frozenRef

	blind   blindState
	payload *payloadEngine

	out []anomaly.Anomaly

	mTx        prometheus.Counter
	mDropped   *prometheus.CounterVec
	mAnomalies *prometheus.CounterVec
}

type frozenRef struct {
	ep    *baseline.Endpoint
	cl    *baseline.Client
	blind bool
}

// New builds the detector set. reg may be nil (tests).
func New(cfg config.DetectConfig, acfg config.AnalyzerConfig, log *zap.Logger, reg prometheus.Registerer) (*Set, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Set{
		cfg:  cfg,
		acfg: acfg,
		log:  log,
		base: baseline.New(baseline.Config{
			Learning: acfg.LearningPeriod, MinSupport: acfg.MinSupport, MaxClients: acfg.MaxClients,
			Window: cfg.Window, ClientWindow: cfg.ClientWindow, SizeZ: cfg.SizeZ,
		}, reg),
		tr:       anomaly.NewTracker(cfg.CloseAfter),
		svcFirst: make(map[string]time.Time),
		frozen:   make(map[anomaly.Target]frozenRef),
		blind:    newBlindState(),
		mTx: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apiscout_detect_transactions_total",
			Help: "Transactions run through the baselines and detectors.",
		}),
		mDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_detect_dropped_total",
			Help: "Observations the detectors could not use, by reason (no_time, no_transaction).",
		}, []string{"reason"}),
		mAnomalies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_detect_incident_events_total",
			Help: "Incident events produced, by anomaly type and event (opened, updated, closed).",
		}, []string{"type", "event"}),
	}
	for i := range s.on {
		s.on[i] = true
		s.sev[i] = Detectors[i].Severity
	}
	for _, name := range acfg.DisabledDetectors {
		i := metaIndex(name)
		if i < 0 {
			return nil, fmt.Errorf("analyzer.disabled_detectors: %q is not a detector (%s)", name, names())
		}
		s.on[i] = false
	}
	for name, sev := range cfg.Severity {
		i := metaIndex(name)
		if i < 0 {
			return nil, fmt.Errorf("detect.severity: %q is not a detector (%s)", name, names())
		}
		s.sev[i] = anomaly.Severity(sev)
	}
	if s.on[metaIndex(anomaly.TypeInjectionAttempt)] && cfg.PayloadEngine == "coraza" {
		pe, err := newPayloadEngine(cfg.PayloadBudget, reg)
		if err != nil {
			return nil, fmt.Errorf("detect.payload_engine: %w", err)
		}
		s.payload = pe
	}
	s.mTx = register(reg, s.mTx)
	s.mDropped = register(reg, s.mDropped)
	s.mAnomalies = register(reg, s.mAnomalies)
	log.Info("detectors ready", zap.Int("enabled", countTrue(s.on[:])),
		zap.Bool("payload_engine", s.payload != nil),
		zap.Duration("window", cfg.Window), zap.Duration("learning_period", acfg.LearningPeriod))
	return s, nil
}

func names() string {
	var n []string
	for _, m := range Detectors {
		n = append(n, m.Type)
	}
	return fmt.Sprint(n)
}

func countTrue(b []bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

// Baselines exposes the learned state (read-only use: API, tests).
func (s *Set) Baselines() *baseline.Store { return s.base }

// Observe runs one transaction through the baselines and detectors and
// returns the incident events it caused (usually none).
func (s *Set) Observe(obs *inventory.Observation) []anomaly.Anomaly {
	if obs == nil || obs.Tx == nil {
		s.mDropped.WithLabelValues("no_transaction").Inc()
		return nil
	}
	if obs.Time.IsZero() {
		s.mDropped.WithLabelValues("no_time").Inc()
		return nil
	}
	s.mTx.Inc()
	s.out = nil
	s.advance(obs.Time)
	if _, ok := s.svcFirst[obs.Service]; !ok {
		s.svcFirst[strings.Clone(obs.Service)] = obs.Time
	}
	s.blind.observe(obs)

	// Detectors that compare the call with what was learned before it
	// run first; those that count run after the call is folded in.
	ep := s.base.Endpoint(baseline.EndpointKey{Service: obs.Service, Method: obs.Method, Path: obs.Path})
	var cl *baseline.Client
	if obs.Identity != "" {
		cl = s.base.ClientOf(obs)
	}
	c := s.base.Call(obs)
	if ep != nil {
		s.beforeFold(obs, ep, cl, c)
	}
	if s.on[iSensitive] && success(obs.Tx.Status) && !c.Authenticated && len(obs.ResponseSensitive) > 0 {
		s.sensitiveUnauth(obs, ep, c)
	}
	ep, cl = s.base.Fold(c)
	s.afterFold(obs, ep, cl, c)
	if cl != nil {
		cl.NoteReturned(obs.ResponseIDs)
	}
	return s.out
}

// Heartbeat takes a sensor's health report: the counters that moved since
// its previous heartbeat (kernel drops, acknowledged bytes never seen)
// feed sensor_blind, and its packet time advances windows like Advance.
// Optional: an engine that does not see heartbeats loses only those two
// signals.
func (s *Set) Heartbeat(hb *wire.Heartbeat) []anomaly.Anomaly {
	s.out = nil
	if hb == nil || hb.Time.IsZero() {
		s.mDropped.WithLabelValues("no_time").Inc()
		return nil
	}
	s.advance(hb.Time)
	s.blind.heartbeat(hb)
	return s.out
}

// Advance moves packet time to now without a transaction: windows that
// ended are judged and incidents updated or closed.
func (s *Set) Advance(now time.Time) []anomaly.Anomaly {
	s.out = nil
	s.advance(now)
	return s.out
}

// Close ends the input at packet time now (normally the last packet's):
// every open incident is closed at now. The current, partial window is
// not judged (a cut window would look like a rate drop), and windows
// between the last transaction and now are not replayed as silence.
func (s *Set) Close(now time.Time) []anomaly.Anomaly {
	s.out = nil
	for _, a := range s.tr.CloseAll(now) {
		s.emit(a)
	}
	return s.out
}

// maxCatchUp bounds how many windows one jump of packet time replays; a
// longer silence (a capture resumed days later) restarts the window clock.
const maxCatchUp = 7 * 24 * 60

func (s *Set) advance(now time.Time) {
	w := s.cfg.Window
	if s.winStart.IsZero() {
		s.winStart = now.Truncate(w)
		return
	}
	if now.Sub(s.winStart) > maxCatchUp*w {
		s.winStart = now.Truncate(w).Add(-maxCatchUp * w)
	}
	for !now.Before(s.winStart.Add(w)) {
		start, end := s.winStart, s.winStart.Add(w)
		s.closeWindow(start, end)
		s.winStart = end
	}
}

func (s *Set) closeWindow(start, end time.Time) {
	s.judgeBlind(start, end)
	s.base.CloseWindow(start, end, func(ep *baseline.Endpoint, ws *baseline.WindowStats) bool {
		return s.judgeWindow(ep, ws)
	})
	s.payload.newWindow()
	for _, a := range s.tr.Flush(end) {
		s.emit(a)
	}
}

// raise folds evidence into its incident. ref names what the incident
// freezes while open (endpoint, client or the sensor).
func (s *Set) raise(ev anomaly.Anomaly, ref frozenRef) {
	i := metaIndex(ev.Type)
	if ev.Severity == "" || ev.Severity == Detectors[i].Severity {
		ev.Severity = s.sev[i]
	}
	if ev.OWASP == "" {
		ev.OWASP = Detectors[i].OWASP
	}
	a, opened := s.tr.Raise(ev)
	if !opened {
		return
	}
	if Detectors[i].Freezes {
		tg := anomaly.TargetOf(&a)
		switch {
		case ref.blind:
			s.base.Blind = true
		case ref.ep != nil:
			ref.ep.Frozen++
		case ref.cl != nil:
			ref.cl.Frozen++
		}
		s.frozen[tg] = ref
	}
	s.emit(a)
}

// touch refreshes an open incident cheaply; false means raise instead.
func (s *Set) touch(typ, host, method, path, client string, at time.Time) bool {
	tg := anomaly.Target{Type: typ, Host: host, Client: client}
	if !anomaly.ClientScoped(typ) {
		tg.Method, tg.Path = method, path
	}
	return s.tr.Touch(tg, at)
}

func (s *Set) emit(a anomaly.Anomaly) {
	if a.Event == anomaly.EventClosed {
		s.unfreeze(anomaly.TargetOf(&a))
	}
	s.mAnomalies.WithLabelValues(a.Type, string(a.Event)).Inc()
	if a.Event != anomaly.EventUpdated {
		s.log.Info("incident", zap.String("event", string(a.Event)), zap.String("id", a.ID),
			zap.String("type", a.Type), zap.String("host", a.Host), zap.String("path", a.Path),
			zap.String("client", a.Client), zap.Time("start", a.Start))
	}
	s.out = append(s.out, a)
}

func (s *Set) anyBlindOpen() bool {
	for _, ref := range s.frozen {
		if ref.blind {
			return true
		}
	}
	return false
}

// register registers c with reg, or returns the collector already
// registered under the same name, so that several instances (one per
// partition) can share one registry and its counters.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing
			}
		}
		panic(err) // a name clash with another kind of metric: a programming error
	}
	return c
}

// details builds a detail map from key/value pairs.
func details(kv ...string) map[string]string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// addDetails adds key/value pairs to m (made when nil) and returns it.
func addDetails(m map[string]string, kv ...string) map[string]string {
	if m == nil {
		return details(kv...)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// ExportBaselines, ImportBaselines and ForgetBaselines carry the learned
// endpoint baselines of some services through a checkpoint, so that a
// restarted analyzer does not learn them again.
func (s *Set) ExportBaselines(services []string) ([]byte, error) { return s.base.Export(services) }
func (s *Set) ImportBaselines(b []byte) error                    { return s.base.Import(b) }
func (s *Set) ForgetBaselines(services []string)                 { s.base.Forget(services) }

// ExportIncidents, ImportIncidents and ForgetIncidents carry the open
// incidents on some services through a checkpoint: a restarted analyzer,
// or the next owner of a partition, goes on updating an ongoing incident
// under its id instead of opening it again (a second alert for one
// attack). Import after the baselines: an incident that freezes its
// endpoint's learning freezes the restored baseline. Client baselines are
// not checkpointed, so a restored client incident freezes nothing.
func (s *Set) ExportIncidents(services []string) ([]byte, error) { return s.tr.Export(services) }

func (s *Set) ImportIncidents(b []byte) error {
	tgs, err := s.tr.Import(b)
	if err != nil {
		return err
	}
	for _, tg := range tgs {
		s.unfreeze(tg)
		if !Detectors[metaIndex(tg.Type)].Freezes || anomaly.ClientScoped(tg.Type) {
			continue
		}
		if ep := s.base.Endpoint(baseline.EndpointKey{Service: tg.Host, Method: tg.Method, Path: tg.Path}); ep != nil {
			ep.Frozen++
			s.frozen[tg] = frozenRef{ep: ep}
		}
	}
	return nil
}

func (s *Set) ForgetIncidents(services []string) {
	for _, tg := range s.tr.Forget(services) {
		s.unfreeze(tg)
	}
}

// unfreeze releases what the incident on tg froze, if anything.
func (s *Set) unfreeze(tg anomaly.Target) {
	ref, ok := s.frozen[tg]
	if !ok {
		return
	}
	delete(s.frozen, tg)
	switch {
	case ref.blind:
		s.base.Blind = s.anyBlindOpen()
	case ref.ep != nil:
		ref.ep.Frozen--
	case ref.cl != nil:
		ref.cl.Frozen--
	}
}
