package alert

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/internal/config"
)

var t0 = time.Date(2026, 3, 4, 10, 1, 0, 0, time.UTC)

func incident(id string, sev anomaly.Severity, ev anomaly.Event, at time.Time) anomaly.Anomaly {
	st := anomaly.Open
	if ev == anomaly.EventClosed {
		st = anomaly.Closed
	}
	return anomaly.Anomaly{ID: id, Type: anomaly.TypeBOLAEnumeration, Severity: sev, OWASP: "API1:2023",
		Host: "shop.example", Method: "GET", Path: "/orders/{orderId}", Client: "jwt:user-13",
		Start: t0, End: at, Updated: at, Summary: "identity touching many object ids | it was never given",
		Evidence: []string{"s1-1-0-x"}, State: st, Event: ev, Count: 3}
}

// receiverLog is a real HTTP receiver that records what it got and can be
// told to fail.
type receiverLog struct {
	mu       sync.Mutex
	reqs     []recorded
	failNext int
	status   int // answer after the failures; 0 means 200
}

type recorded struct {
	path   string
	header http.Header
	body   []byte
}

func (rl *receiverLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.failNext > 0 {
		rl.failNext--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	rl.reqs = append(rl.reqs, recorded{r.URL.Path, r.Header.Clone(), b})
	if rl.status != 0 {
		w.WriteHeader(rl.status)
	}
}

func (rl *receiverLog) got() []recorded {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return append([]recorded(nil), rl.reqs...)
}

// waitFor polls cond until it holds or a generous deadline passes (the
// deadline only guards against hanging; it asserts nothing about speed).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func baseConfig(t *testing.T) config.AlertsConfig {
	c := config.Default().Alerts
	c.OutboxDir = t.TempDir()
	c.RetryInitial = 5 * time.Millisecond
	c.RetryMax = 20 * time.Millisecond
	c.Secret = "s3cret"
	return c
}

func start(t *testing.T, d *Dispatcher) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return func() { cancel(); <-done }
}

func TestWebhookSignedAndSlack(t *testing.T) {
	rl := &receiverLog{}
	srv := httptest.NewServer(rl)
	defer srv.Close()
	c := baseConfig(t)
	c.Webhooks = []string{srv.URL + "/hook"}
	c.Slack = []string{srv.URL + "/slack"}
	d, err := New(c, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	if err := d.Notify(incident("inc1", anomaly.High, anomaly.EventOpened, t0)); err != nil {
		t.Fatal(err)
	}
	if err := d.Notify(incident("inc1", anomaly.High, anomaly.EventUpdated, t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if err := d.Notify(incident("inc1", anomaly.High, anomaly.EventClosed, t0.Add(15*time.Minute))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "4 deliveries", func() bool { return len(rl.got()) >= 4 })
	var generic []Event
	for _, r := range rl.got() {
		ts, sig := r.header.Get(HeaderTimestamp), r.header.Get(HeaderSignature)
		if !Verify("s3cret", ts, r.body, sig) {
			t.Errorf("%s: signature %q does not verify", r.path, sig)
		}
		if Verify("other", ts, r.body, sig) || Verify("s3cret", ts+"1", r.body, sig) {
			t.Errorf("%s: signature verifies with the wrong secret or timestamp", r.path)
		}
		switch r.path {
		case "/hook":
			var ev Event
			if err := json.Unmarshal(r.body, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.ID != r.header.Get(HeaderEventID) || ev.Anomaly.ID != "inc1" || ev.Anomaly.Path != "/orders/{orderId}" {
				t.Errorf("generic body: %+v", ev)
			}
			generic = append(generic, ev)
		case "/slack":
			var m map[string]string
			if err := json.Unmarshal(r.body, &m); err != nil || !strings.Contains(m["text"], "bola_enumeration") {
				t.Errorf("slack body %s", r.body)
			}
		}
	}
	// Updates are not sent by default; opened then closed, in order,
	// with distinct stable ids.
	if len(generic) != 2 || generic[0].Event != anomaly.EventOpened || generic[1].Event != anomaly.EventClosed {
		t.Fatalf("generic events: %+v", generic)
	}
	a := incident("inc1", anomaly.High, anomaly.EventOpened, t0)
	if generic[0].ID != EventID(&a) || generic[0].ID == generic[1].ID {
		t.Fatalf("event ids not stable: %s %s", generic[0].ID, generic[1].ID)
	}
	waitFor(t, "empty outbox", func() bool { return d.Pending() == 0 })
	if left := jsonFiles(t, filepath.Join(c.OutboxDir, "webhook-0")); len(left) != 0 {
		t.Fatalf("outbox keeps delivered files: %v", left)
	}
}

func jsonFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// An unreachable receiver loses nothing across a restart: the event waits
// in the outbox on disk and the next process delivers it, once, with the
// same id; a receiver answering 503 is retried.
func TestOutboxSurvivesRestartAndRetries(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	deadURL := down.URL
	down.Close() // connection refused from now on

	c := baseConfig(t)
	c.Webhooks = []string{deadURL + "/hook"}
	reg := prometheus.NewRegistry()
	d1, err := New(c, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, d1)
	a := incident("inc2", anomaly.Critical, anomaly.EventOpened, t0)
	if err := d1.Notify(a); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed attempt", func() bool { return counterValue(d1.mRetries.WithLabelValues("webhook-0")) >= 2 })
	stop()
	if n := len(jsonFiles(t, filepath.Join(c.OutboxDir, "webhook-0"))); n != 1 {
		t.Fatalf("outbox holds %d files after a failed delivery, want 1", n)
	}

	rl := &receiverLog{failNext: 2}
	srv := httptest.NewServer(rl)
	defer srv.Close()
	c.Webhooks = []string{srv.URL + "/hook"}
	d2, err := New(c, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if d2.Pending() != 1 {
		t.Fatalf("restarted dispatcher has %d pending, want 1", d2.Pending())
	}
	start(t, d2)
	// The closing step of an incident opened before the restart follows.
	if err := d2.Notify(incident("inc2", anomaly.Critical, anomaly.EventClosed, t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery after restart", func() bool { return len(rl.got()) >= 2 })
	got := rl.got()
	if got[0].header.Get(HeaderEventID) != EventID(&a) {
		t.Fatalf("event id changed across restart: %s", got[0].header.Get(HeaderEventID))
	}
	var ev Event
	if err := json.Unmarshal(got[1].body, &ev); err != nil || ev.Event != anomaly.EventClosed {
		t.Fatalf("second delivery: %s", got[1].body)
	}
	waitFor(t, "empty outbox", func() bool { return d2.Pending() == 0 })
	time.Sleep(50 * time.Millisecond)
	if n := len(rl.got()); n != 2 {
		t.Fatalf("%d deliveries, want exactly 2", n)
	}
}

func TestRefusedEventIsDeadLettered(t *testing.T) {
	rl := &receiverLog{status: http.StatusBadRequest}
	srv := httptest.NewServer(rl)
	defer srv.Close()
	c := baseConfig(t)
	c.Webhooks = []string{srv.URL}
	d, err := New(c, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	if err := d.Notify(incident("inc3", anomaly.High, anomaly.EventOpened, t0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dead letter", func() bool { return len(jsonFiles(t, filepath.Join(c.OutboxDir, "webhook-0", "dead"))) == 1 })
	if v := counterValue(d.mDropped.WithLabelValues("webhook-0", reasonDeadLetter)); v != 1 {
		t.Fatalf("dead_letter counter %v", v)
	}
}

func TestRoutingAndRateLimit(t *testing.T) {
	c := baseConfig(t)
	c.OutboxDir = "" // memory: nothing is delivered, the queues are inspected
	c.Webhooks = []string{"http://127.0.0.1:1/hook"}
	c.Slack = []string{"http://127.0.0.1:1/slack"}
	c.Route = map[string]string{"slack": "high"}
	c.RateLimit = map[string]string{"medium": "2"}
	d, err := New(c, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		_ = d.Notify(incident("m"+strconv.Itoa(i), anomaly.Medium, anomaly.EventOpened, t0.Add(time.Duration(i)*time.Second)))
	}
	_ = d.Notify(incident("low", anomaly.Low, anomaly.EventOpened, t0))
	_ = d.Notify(incident("h", anomaly.High, anomaly.EventOpened, t0))
	// The next minute of packet time has a fresh budget.
	_ = d.Notify(incident("m9", anomaly.Medium, anomaly.EventOpened, t0.Add(time.Minute)))
	// Closing a rate-limited incident sends nothing; closing a sent one does.
	_ = d.Notify(incident("m4", anomaly.Medium, anomaly.EventClosed, t0.Add(2*time.Minute)))
	_ = d.Notify(incident("m0", anomaly.Medium, anomaly.EventClosed, t0.Add(2*time.Minute)))
	ids := func(name string) string {
		for _, r := range d.receivers {
			if r.name == name {
				var out []string
				for _, ev := range r.q.snapshot() {
					out = append(out, ev.Anomaly.ID+":"+string(ev.Event))
				}
				return strings.Join(out, ",")
			}
		}
		return "?"
	}
	if got, want := ids("webhook-0"), "m0:opened,m1:opened,h:opened,m9:opened,m0:closed"; got != want {
		t.Errorf("webhook got %s, want %s", got, want)
	}
	if got, want := ids("slack-0"), "h:opened"; got != want {
		t.Errorf("slack got %s, want %s", got, want)
	}
	if v := counterValue(d.mDropped.WithLabelValues("webhook-0", reasonRateLimited)); v != 3 {
		t.Errorf("rate_limited %v, want 3", v)
	}
}

var rfc5424 = regexp.MustCompile(`^<(\d+)>1 (\S+) (\S+) apiscout - (\S+) \[apiscout@32473((?: [a-z_]+="(?:[^"\\\]]|\\.)*")+)\] (.*)$`)

func TestSyslogUDPWithCEF(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := baseConfig(t)
	c.Syslog = "udp://" + pc.LocalAddr().String()
	c.SyslogCEF = true
	d, err := New(c, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	a := incident("inc4", anomaly.High, anomaly.EventOpened, t0)
	if err := d.Notify(a); err != nil {
		t.Fatal(err)
	}
	_ = pc.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 65536)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	m := rfc5424.FindStringSubmatch(string(buf[:n]))
	if m == nil {
		t.Fatalf("not RFC 5424: %q", buf[:n])
	}
	if m[1] != "35" || m[2] != "2026-03-04T10:01:00.000000Z" || m[4] != "bola_enumeration" ||
		!strings.Contains(m[5], `incident="inc4"`) || !strings.Contains(m[5], `event_id="`+EventID(&a)+`"`) {
		t.Errorf("header/structured data: %q", m[:6])
	}
	cef := m[6]
	if !strings.HasPrefix(cef, `CEF:0|apiscout|apiscout|1|bola_enumeration|identity touching many object ids \| it was never given|8|`) ||
		!strings.Contains(cef, "suser=jwt:user-13") || !strings.Contains(cef, "cs1=inc4") || !strings.Contains(cef, "cs2=API1:2023") {
		t.Errorf("CEF: %q", cef)
	}
}

func TestSyslogTCPOctetCounting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	msgs := make(chan string, 4)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		for {
			lenStr, err := r.ReadString(' ')
			if err != nil {
				return
			}
			n, err := strconv.Atoi(strings.TrimSpace(lenStr))
			if err != nil {
				msgs <- "bad frame " + lenStr
				return
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil {
				return
			}
			msgs <- string(b)
		}
	}()
	c := baseConfig(t)
	c.Syslog = "tcp://" + ln.Addr().String()
	d, err := New(c, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	_ = d.Notify(incident("inc5", anomaly.Critical, anomaly.EventOpened, t0))
	_ = d.Notify(incident("inc5", anomaly.Critical, anomaly.EventClosed, t0.Add(time.Hour)))
	for i, want := range []string{`event="opened"`, `event="closed"`} {
		select {
		case m := <-msgs:
			sm := rfc5424.FindStringSubmatch(m)
			if sm == nil || sm[1] != "34" || !strings.Contains(sm[5], want) || sm[6] != "identity touching many object ids | it was never given" {
				t.Errorf("message %d: %q", i, m)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no syslog message")
		}
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// BenchmarkNotifyToReceiver measures the alert half of event-to-alert
// latency: from Notify (outbox file written and synced) to the HTTP
// receiver holding the signed request.
func BenchmarkNotifyToReceiver(b *testing.B) {
	got := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got <- struct{}{}
	}))
	defer srv.Close()
	c := config.Default().Alerts
	c.OutboxDir = b.TempDir()
	c.Secret = "s"
	c.Webhooks = []string{srv.URL}
	c.RateLimit = nil
	d, err := New(c, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = d.Run(ctx) }()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := d.Notify(incident("b"+strconv.Itoa(i), anomaly.High, anomaly.EventOpened, t0.Add(time.Duration(i)*time.Second))); err != nil {
			b.Fatal(err)
		}
		<-got
	}
}
