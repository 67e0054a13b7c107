package alert

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apiscout/apiscout/analyzer/anomaly"
)

// facilityAuth is syslog facility 4, security/authorisation messages.
const facilityAuth = 4

// sdID is the structured-data id of apiscout's parameters; 32473 is the
// private enterprise number reserved for documentation (RFC 5612).
const sdID = "apiscout@32473"

// syslogSink sends RFC 5424 messages over UDP (one datagram each) or TCP
// (octet-counting framing, RFC 6587), optionally with a CEF message for
// SIEMs.
type syslogSink struct {
	network, addr string
	cef           bool
	hostname      string
	timeout       time.Duration

	mu   sync.Mutex
	conn net.Conn
}

func newSyslog(rawURL string, cef bool, hostname string, timeout time.Duration) (*syslogSink, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("alerts.syslog: %w", err)
	}
	if hostname == "" {
		hostname = "-"
	}
	return &syslogSink{network: u.Scheme, addr: u.Host, cef: cef, hostname: hostname, timeout: timeout}, nil
}

func (s *syslogSink) Send(ctx context.Context, ev *Event) error {
	msg := FormatSyslog(ev, s.hostname, s.cef)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		d := net.Dialer{Timeout: s.timeout}
		c, err := d.DialContext(ctx, s.network, s.addr)
		if err != nil {
			return fmt.Errorf("syslog %s://%s: %w", s.network, s.addr, err)
		}
		s.conn = c
	}
	var frame []byte
	if s.network == "tcp" {
		frame = append(strconv.AppendInt(nil, int64(len(msg)), 10), ' ')
	}
	frame = append(frame, msg...)
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.timeout))
	if _, err := s.conn.Write(frame); err != nil {
		_ = s.conn.Close()
		s.conn = nil
		return fmt.Errorf("syslog %s://%s: %w", s.network, s.addr, err)
	}
	return nil
}

// syslogSeverity maps anomaly severities onto RFC 5424 severities.
func syslogSeverity(s anomaly.Severity) int {
	switch s {
	case anomaly.Critical:
		return 2
	case anomaly.High:
		return 3
	case anomaly.Medium:
		return 4
	case anomaly.Low:
		return 5
	}
	return 6
}

// FormatSyslog renders ev as one RFC 5424 message:
//
//	<PRI>1 TIMESTAMP HOSTNAME apiscout - TYPE [apiscout@32473 id=".." event=".." ...] MSG
//
// TIMESTAMP is the event's packet time; MSG is the summary or, with cef,
// a CEF:0 record.
func FormatSyslog(ev *Event, hostname string, cef bool) string {
	a := &ev.Anomaly
	var b strings.Builder
	fmt.Fprintf(&b, "<%d>1 ", facilityAuth*8+syslogSeverity(a.Severity))
	if a.Updated.IsZero() {
		b.WriteString("-")
	} else {
		b.WriteString(a.Updated.UTC().Format("2006-01-02T15:04:05.000000Z07:00"))
	}
	fmt.Fprintf(&b, " %s apiscout - %s [%s", printable(hostname, 255), printable(a.Type, 32), sdID)
	param := func(k, v string) {
		if v == "" {
			return
		}
		b.WriteString(" " + k + "=\"" + sdEscape(v) + "\"")
	}
	param("event_id", ev.ID)
	param("incident", a.ID)
	param("event", string(ev.Event))
	param("severity", string(a.Severity))
	param("owasp", a.OWASP)
	param("host", a.Host)
	param("method", a.Method)
	param("path", a.Path)
	param("client", a.Client)
	param("start", a.Start.UTC().Format(time.RFC3339Nano))
	param("end", a.End.UTC().Format(time.RFC3339Nano))
	param("count", strconv.FormatInt(a.Count, 10))
	b.WriteString("] ")
	if cef {
		b.WriteString(FormatCEF(ev))
	} else {
		b.WriteString(a.Summary)
	}
	return b.String()
}

// printable makes s a valid RFC 5424 header field: printable US-ASCII
// without spaces, at most n characters, "-" when empty.
func printable(s string, n int) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(out) < n; i++ {
		if c := s[i]; c > 32 && c < 127 {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return string(out)
}

func sdEscape(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(v)
}

// cefSeverity maps anomaly severities onto CEF's 0..10.
func cefSeverity(s anomaly.Severity) int {
	switch s {
	case anomaly.Critical:
		return 10
	case anomaly.High:
		return 8
	case anomaly.Medium:
		return 5
	case anomaly.Low:
		return 3
	}
	return 1
}

// FormatCEF renders ev as a CEF:0 record (ArcSight Common Event Format):
// vendor apiscout, signature id the anomaly type, standard keys for
// times (ms since epoch), host, request and user, custom strings for the
// incident id, OWASP category and event.
func FormatCEF(ev *Event) string {
	a := &ev.Anomaly
	hdr := strings.NewReplacer(`\`, `\\`, `|`, `\|`, "\n", " ", "\r", " ")
	ext := strings.NewReplacer(`\`, `\\`, `=`, `\=`, "\n", `\n`, "\r", `\r`)
	var b strings.Builder
	fmt.Fprintf(&b, "CEF:0|apiscout|apiscout|1|%s|%s|%d|", hdr.Replace(a.Type), hdr.Replace(a.Summary), cefSeverity(a.Severity))
	kv := func(k, v string) {
		if v == "" {
			return
		}
		if b.Len() > 0 && !strings.HasSuffix(b.String(), "|") {
			b.WriteByte(' ')
		}
		b.WriteString(k + "=" + ext.Replace(v))
	}
	ms := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return strconv.FormatInt(t.UnixMilli(), 10)
	}
	kv("rt", ms(a.Updated))
	kv("start", ms(a.Start))
	kv("end", ms(a.End))
	kv("dhost", a.Host)
	if a.Path != "" {
		kv("requestMethod", a.Method)
		kv("request", a.Path)
	}
	kv("suser", a.Client)
	kv("cnt", strconv.FormatInt(a.Count, 10))
	kv("externalId", ev.ID)
	kv("cs1Label", "incident")
	kv("cs1", a.ID)
	if a.OWASP != "" {
		kv("cs2Label", "owasp")
		kv("cs2", a.OWASP)
	}
	kv("cs3Label", "event")
	kv("cs3", string(ev.Event))
	return b.String()
}
