// Package alert delivers incident events to people and machines: generic
// JSON webhooks, Slack-compatible webhooks and syslog (RFC 5424, plain or
// CEF) for security operations centres.
//
// Every event has a stable id (the same incident event gets the same id on
// every retry, restart and replay), webhook bodies are signed with
// HMAC-SHA256 over timestamp and body, events are routed and rate-limited
// by severity, and each receiver has its own outbox: an event is written
// to disk before Notify returns and removed only once the receiver has
// accepted it, so a restart or an unreachable receiver loses nothing.
// Delivery retries with exponential backoff; an event still undelivered
// after alerts.max_age, or refused outright (HTTP 4xx), is moved to the
// outbox's dead/ folder and counted.
//
// Call order: New, then Run in its own goroutine (it returns when its
// context ends), then Notify from the analyzer for every incident event.
// Notify never waits for a receiver.
package alert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/internal/config"
)

// Event is what receivers get: one lifecycle step of one incident.
type Event struct {
	// ID is stable: a function of the incident id, the step and the
	// step's packet time. Receivers deduplicate by it.
	ID      string          `json:"id"`
	Event   anomaly.Event   `json:"event"`
	Anomaly anomaly.Anomaly `json:"anomaly"`
}

// EventID is the stable id of an incident event.
func EventID(a *anomaly.Anomaly) string {
	h := sha256.Sum256([]byte(a.ID + "/" + string(a.Event) + "/" + strconv.FormatInt(a.Updated.UnixNano(), 10)))
	return hex.EncodeToString(h[:12])
}

// sink delivers one event to one receiver. A permanent error (the
// receiver refuses the event) dead-letters it; any other error retries.
type sink interface {
	Send(ctx context.Context, ev *Event) error
}

// permanentError marks a refusal that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

type receiver struct {
	name, kind string
	sink       sink
	q          *queue
	min        int
	// rate limit state, in packet time: counts of opened events per
	// severity in the current minute.
	minute int64
	counts map[anomaly.Severity]int
	// sent holds incidents whose opened event went out, so that their
	// updates and closing follow and nothing else does.
	sent map[string]struct{}
}

// Dispatcher routes incident events to receivers.
type Dispatcher struct {
	cfg       config.AlertsConfig
	log       *zap.Logger
	limits    map[anomaly.Severity]int
	events    map[anomaly.Event]bool
	receivers []*receiver

	mu sync.Mutex // guards receivers' routing state (Notify may be called from several goroutines)

	mSent    *prometheus.CounterVec
	mDropped *prometheus.CounterVec
	mRetries *prometheus.CounterVec
	mPending *prometheus.GaugeVec
}

// Reasons an alert is dropped (the incident itself is kept by storage).
const (
	reasonRateLimited = "rate_limited"
	reasonQueueFull   = "queue_full"
	reasonDeadLetter  = "dead_letter"
	reasonOutbox      = "outbox_error"
)

// New builds the receivers of cfg and loads what their outboxes hold.
func New(cfg config.AlertsConfig, log *zap.Logger, reg prometheus.Registerer) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	d := &Dispatcher{
		cfg:    cfg,
		log:    log,
		limits: map[anomaly.Severity]int{},
		events: map[anomaly.Event]bool{},
		mSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_alerts_sent_total", Help: "Alerts accepted by a receiver.",
		}, []string{"receiver"}),
		mDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_alerts_dropped_total",
			Help: "Alerts not delivered, by reason (rate_limited, queue_full, dead_letter, outbox_error).",
		}, []string{"receiver", "reason"}),
		mRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiscout_alerts_retries_total", Help: "Failed delivery attempts that will be retried.",
		}, []string{"receiver"}),
		mPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apiscout_alerts_pending", Help: "Alerts waiting in a receiver's outbox.",
		}, []string{"receiver"}),
	}
	for sev, v := range cfg.RateLimit {
		n, _ := strconv.Atoi(v) // validated
		d.limits[anomaly.Severity(sev)] = n
	}
	for _, e := range cfg.Events {
		d.events[anomaly.Event(e)] = true
	}
	minFor := func(kind string) int {
		r := anomaly.Severity(cfg.MinSeverity).Rank()
		if v, ok := cfg.Route[kind]; ok {
			r = max(r, anomaly.Severity(v).Rank())
		}
		return r
	}
	host, _ := os.Hostname()
	add := func(name, kind string, s sink) error {
		q, err := openQueue(cfg.OutboxDir, name)
		if err != nil {
			return err
		}
		d.receivers = append(d.receivers, &receiver{name: name, kind: kind, sink: s, q: q, min: minFor(kind),
			counts: map[anomaly.Severity]int{}, sent: map[string]struct{}{}})
		return nil
	}
	for i, u := range cfg.Webhooks {
		if err := add("webhook-"+strconv.Itoa(i), "webhook", newWebhook(u, cfg.Secret, false, cfg.Timeout)); err != nil {
			return nil, err
		}
	}
	for i, u := range cfg.Slack {
		if err := add("slack-"+strconv.Itoa(i), "slack", newWebhook(u, cfg.Secret, true, cfg.Timeout)); err != nil {
			return nil, err
		}
	}
	if cfg.Syslog != "" {
		s, err := newSyslog(cfg.Syslog, cfg.SyslogCEF, host, cfg.Timeout)
		if err != nil {
			return nil, err
		}
		if err := add("syslog", "syslog", s); err != nil {
			return nil, err
		}
	}
	if reg != nil {
		reg.MustRegister(d.mSent, d.mDropped, d.mRetries, d.mPending)
	}
	for _, r := range d.receivers {
		n := r.q.len()
		d.mPending.WithLabelValues(r.name).Set(float64(n))
		// Events loaded from the outbox belong to incidents whose opening
		// went out: let their later steps follow.
		for _, ev := range r.q.snapshot() {
			r.sent[ev.Anomaly.ID] = struct{}{}
		}
		log.Info("alert receiver", zap.String("receiver", r.name), zap.Int("pending", n),
			zap.String("min_severity", severityName(r.min)), zap.Bool("persistent", cfg.OutboxDir != ""))
	}
	if len(d.receivers) > 0 && cfg.OutboxDir == "" {
		log.Warn("alerts.outbox_dir is empty: undelivered alerts are kept in memory and lost on restart")
	}
	if (len(cfg.Webhooks) > 0 || len(cfg.Slack) > 0) && cfg.Secret == "" {
		log.Warn("alerts.secret is empty: webhook bodies are not signed")
	}
	return d, nil
}

func severityName(rank int) string {
	for _, s := range []anomaly.Severity{anomaly.Info, anomaly.Low, anomaly.Medium, anomaly.High, anomaly.Critical} {
		if s.Rank() == rank {
			return string(s)
		}
	}
	return "?"
}

// Notify queues an incident event for every receiver it is routed to. It
// returns once the event is in each outbox (on disk when alerts.outbox_dir
// is set); an error means some outbox could not be written (counted).
func (d *Dispatcher) Notify(a anomaly.Anomaly) error {
	if !d.events[a.Event] && a.Event != anomaly.EventClosed {
		return nil
	}
	ev := Event{ID: EventID(&a), Event: a.Event, Anomaly: a}
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, r := range d.receivers {
		if !d.route(r, &a) {
			continue
		}
		dropped, err := r.q.push(&ev)
		if err != nil {
			d.mDropped.WithLabelValues(r.name, reasonOutbox).Inc()
			errs = append(errs, fmt.Errorf("alert outbox %s: %w", r.name, err))
			continue
		}
		if dropped > 0 {
			d.mDropped.WithLabelValues(r.name, reasonQueueFull).Add(float64(dropped))
		}
		d.mPending.WithLabelValues(r.name).Set(float64(r.q.len()))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%v", errs)
	}
	return nil
}

// route decides whether r gets a: severity at least the receiver's
// minimum, opened events within the rate limit of their severity (per
// minute of packet time), later steps only for incidents whose opening
// went out, closed events only when configured.
func (d *Dispatcher) route(r *receiver, a *anomaly.Anomaly) bool {
	switch a.Event {
	case anomaly.EventOpened:
		if a.Severity.Rank() < r.min {
			return false
		}
		if m := a.Updated.Unix() / 60; m != r.minute {
			r.minute = m
			clear(r.counts)
		}
		if lim := d.limits[a.Severity]; lim > 0 && r.counts[a.Severity] >= lim {
			d.mDropped.WithLabelValues(r.name, reasonRateLimited).Inc()
			return false
		}
		r.counts[a.Severity]++
		r.sent[a.ID] = struct{}{}
		return true
	case anomaly.EventClosed:
		_, ok := r.sent[a.ID]
		delete(r.sent, a.ID)
		return ok && d.events[anomaly.EventClosed]
	default:
		_, ok := r.sent[a.ID]
		return ok
	}
}

// Run delivers queued events until ctx ends, one goroutine per receiver
// so that a slow receiver delays nobody else. Events keep their order per
// receiver (an incident's closing never overtakes its opening).
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, r := range d.receivers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.deliver(ctx, r)
		}()
	}
	wg.Wait()
	return nil
}

func (d *Dispatcher) deliver(ctx context.Context, r *receiver) {
	attempt := 0
	for {
		it, ok := r.q.peek()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-r.q.wake:
				continue
			}
		}
		err := r.sink.Send(ctx, &it.ev)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			attempt = 0
			r.q.remove(it)
			d.mSent.WithLabelValues(r.name).Inc()
			d.mPending.WithLabelValues(r.name).Set(float64(r.q.len()))
			continue
		}
		_, permanent := err.(permanentError)
		if permanent || time.Since(it.first) > d.cfg.MaxAge {
			attempt = 0
			if derr := r.q.deadLetter(it); derr != nil {
				d.log.Error("alert dead-letter", zap.String("receiver", r.name), zap.Error(derr))
			}
			d.mDropped.WithLabelValues(r.name, reasonDeadLetter).Inc()
			d.mPending.WithLabelValues(r.name).Set(float64(r.q.len()))
			d.log.Error("alert given up", zap.String("receiver", r.name), zap.String("event_id", it.ev.ID), zap.Error(err))
			continue
		}
		d.mRetries.WithLabelValues(r.name).Inc()
		delay := d.cfg.RetryInitial << min(attempt, 30)
		if delay > d.cfg.RetryMax || delay <= 0 {
			delay = d.cfg.RetryMax
		}
		attempt++
		if attempt == 1 || attempt%10 == 0 {
			d.log.Warn("alert delivery failed, will retry", zap.String("receiver", r.name),
				zap.Int("attempt", attempt), zap.Duration("delay", delay), zap.Error(err))
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Pending is the number of events waiting across receivers.
func (d *Dispatcher) Pending() int {
	n := 0
	for _, r := range d.receivers {
		n += r.q.len()
	}
	return n
}
