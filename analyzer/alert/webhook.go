package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Headers of a webhook delivery.
const (
	HeaderEventID   = "X-Apiscout-Event-Id"
	HeaderTimestamp = "X-Apiscout-Timestamp"
	HeaderSignature = "X-Apiscout-Signature"
)

// Sign returns the signature header value of body sent at timestamp (Unix
// seconds as decimal text): "v1=" and the hex HMAC-SHA256 of
// timestamp + "." + body. Receivers recompute it with the shared secret
// and reject old timestamps to stop replays.
func Sign(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header in constant time.
func Verify(secret, timestamp string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, timestamp, body)), []byte(signature))
}

// webhook posts events as JSON: the Event itself (generic) or a Slack
// message ({"text": ...}).
type webhook struct {
	url    string
	secret string
	slack  bool
	client *http.Client
	now    func() time.Time // wall clock of the delivery, for the signature
}

func newWebhook(url, secret string, slack bool, timeout time.Duration) *webhook {
	return &webhook{url: url, secret: secret, slack: slack, client: &http.Client{Timeout: timeout}, now: time.Now}
}

func (w *webhook) Send(ctx context.Context, ev *Event) error {
	var body []byte
	var err error
	if w.slack {
		body, err = json.Marshal(map[string]string{"text": slackText(ev)})
	} else {
		body, err = json.Marshal(ev)
	}
	if err != nil {
		return permanentError{err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return permanentError{err}
	}
	ts := strconv.FormatInt(w.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "apiscout-alert/1")
	req.Header.Set(HeaderEventID, ev.ID)
	req.Header.Set(HeaderTimestamp, ts)
	if w.secret != "" {
		req.Header.Set(HeaderSignature, Sign(w.secret, ts, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", redact(w.url), err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooEarly,
		resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return fmt.Errorf("webhook %s: status %d", redact(w.url), resp.StatusCode)
	}
	return permanentError{fmt.Errorf("webhook %s refused the event: status %d", redact(w.url), resp.StatusCode)}
}

// redact keeps the scheme and host of a URL: Slack webhook paths are
// secrets.
func redact(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.IndexByte(u[i+3:], '/'); j >= 0 {
			return u[:i+3+j] + "/…"
		}
	}
	return u
}

func slackText(ev *Event) string {
	a := &ev.Anomaly
	var b strings.Builder
	icon := map[string]string{"critical": ":rotating_light:", "high": ":red_circle:", "medium": ":large_orange_circle:",
		"low": ":large_yellow_circle:", "info": ":information_source:"}[string(a.Severity)]
	fmt.Fprintf(&b, "%s *%s* `%s` %s on %s", icon, strings.ToUpper(string(a.Severity)), a.Type, ev.Event, a.Host)
	if a.Path != "" {
		fmt.Fprintf(&b, " `%s %s`", a.Method, a.Path)
	}
	if a.Client != "" {
		fmt.Fprintf(&b, " client `%s`", a.Client)
	}
	fmt.Fprintf(&b, "\n%s", a.Summary)
	if a.OWASP != "" {
		fmt.Fprintf(&b, " (OWASP %s)", a.OWASP)
	}
	fmt.Fprintf(&b, "\nstart %s, last %s, %d event(s), incident %s", a.Start.UTC().Format(time.RFC3339),
		a.End.UTC().Format(time.RFC3339), a.Count, a.ID)
	return b.String()
}
