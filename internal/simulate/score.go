package simulate

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Incident is what the scorer reads of one line of the analyzer's
// anomalies.jsonl: the incident's type, target and time.
type Incident struct {
	ID     string    `json:"id"`
	Type   string    `json:"type"`
	Host   string    `json:"host"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Client string    `json:"client"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	// Opened is when the incident was first reported (zero in records
	// that predate it: Start is used).
	Opened  time.Time         `json:"opened"`
	Details map[string]string `json:"details"`
}

// labelAnomaly maps each episode type the simulator labels to the anomaly
// type that detects it. The names agree today; the map is explicit so
// that a renamed detector or a new episode kind fails the scorer instead
// of silently scoring nothing.
var labelAnomaly = map[string]string{
	"credential_stuffing":     "credential_stuffing",
	"bola_enumeration":        "bola_enumeration",
	"injection_attempt":       "injection_attempt",
	"bfla":                    "bfla",
	"shadow_endpoint":         "shadow_endpoint",
	"zombie_call":             "zombie_call",
	"rate_spike":              "rate_spike",
	"rate_drop":               "rate_drop",
	"error_surge":             "error_surge",
	"latency_regression":      "latency_regression",
	"response_size_anomaly":   "response_size_anomaly",
	"scraping":                "scraping",
	"data_exfiltration":       "data_exfiltration",
	"sensitive_data_exposure": "sensitive_data_exposure",
	"unauthenticated_access":  "unauthenticated_access",
	"schema_drift":            "schema_drift",
	"jwt_weakness":            "jwt_weakness",
	"sensor_blind":            "sensor_blind",
}

// AnomalyTypeOf returns the anomaly type that detects episodes labelled
// typ, and whether there is one.
func AnomalyTypeOf(typ string) (string, bool) {
	t, ok := labelAnomaly[typ]
	return t, ok
}

// Score is how well a run's incidents match the labelled episodes.
type Score struct {
	// Types has one row per anomaly type that has an episode or an
	// incident, in the order of the first episode, then by name.
	Types    []TypeScore
	Episodes []EpisodeScore
	// False are incidents that match no episode: not of an episode's
	// type, target and time, nor on an episode's target at its time.
	False []Incident
	// CoAlerts are incidents of another type on an episode's target
	// during it: real effects of the attack (a scraper raises the rate
	// of the pages it scrapes), neither detections nor false alarms.
	CoAlerts []Incident
}

// TypeScore sums one anomaly type.
type TypeScore struct {
	Type                                       string
	Episodes, Detected, Missed, False, CoAlert int
	// MedianTTD and MaxTTD are times to detect of the detected episodes.
	MedianTTD, MaxTTD time.Duration
}

// EpisodeScore is one labelled episode and the incident that detected it.
type EpisodeScore struct {
	Label    Label
	Type     string // anomaly type expected
	Detected bool
	// Incident is the earliest matching incident; TTD from the episode's
	// start to its opening (zero when it opened before the start, e.g.
	// in the same window).
	Incident Incident
	TTD      time.Duration
}

// ReadLabels reads labels.jsonl.
func ReadLabels(r io.Reader) ([]Label, error) {
	return readJSONL[Label](r, "labels")
}

// ReadIncidents reads an analyzer's anomalies.jsonl.
func ReadIncidents(r io.Reader) ([]Incident, error) {
	return readJSONL[Incident](r, "anomalies")
}

func readJSONL[T any](r io.Reader, what string) ([]T, error) {
	var out []T
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", what, n, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// ScoreIncidents matches incidents to episodes. An incident detects an
// episode when it has the episode's anomaly type, began during the
// episode widened by slack on both sides, and names the same service,
// endpoint (method and path template, parameter names ignored) and
// client where the label names them. The label's client is an address
// or a credential's subject; an incident names its client in Client,
// or in Details as client or principal.
func ScoreIncidents(labels []Label, incs []Incident, slack time.Duration) (*Score, error) {
	sc := &Score{}
	rows := map[string]*TypeScore{}
	var order []string
	row := func(typ string) *TypeScore {
		r := rows[typ]
		if r == nil {
			r = &TypeScore{Type: typ}
			rows[typ] = r
			order = append(order, typ)
		}
		return r
	}
	matched := make([]bool, len(incs))
	ttds := map[string][]time.Duration{}
	for _, l := range labels {
		typ, ok := labelAnomaly[l.Type]
		if !ok {
			return nil, fmt.Errorf("label type %q has no anomaly type", l.Type)
		}
		r := row(typ)
		r.Episodes++
		es := EpisodeScore{Label: l, Type: typ}
		for i := range incs {
			in := &incs[i]
			if in.Type != typ || !during(l, in, slack) || !sameTarget(l, in, true) {
				continue
			}
			matched[i] = true
			if !es.Detected || opened(in).Before(opened(&es.Incident)) {
				es.Detected, es.Incident = true, *in
			}
		}
		if es.Detected {
			r.Detected++
			es.TTD = max(0, opened(&es.Incident).Sub(l.Start))
			ttds[typ] = append(ttds[typ], es.TTD)
		} else {
			r.Missed++
		}
		sc.Episodes = append(sc.Episodes, es)
	}
	for i := range incs {
		if matched[i] {
			continue
		}
		in := &incs[i]
		co := false
		for _, l := range labels {
			if during(l, in, slack) && sameTarget(l, in, false) {
				co = true
				break
			}
		}
		if co {
			sc.CoAlerts = append(sc.CoAlerts, *in)
			row(in.Type).CoAlert++
		} else {
			sc.False = append(sc.False, *in)
			row(in.Type).False++
		}
	}
	for typ, ds := range ttds {
		slices.Sort(ds)
		rows[typ].MedianTTD = ds[len(ds)/2]
		rows[typ].MaxTTD = ds[len(ds)-1]
	}
	for _, typ := range order {
		sc.Types = append(sc.Types, *rows[typ])
	}
	return sc, nil
}

func opened(in *Incident) time.Time {
	if !in.Opened.IsZero() {
		return in.Opened
	}
	return in.Start
}

// during reports whether the incident began in the episode, widened by
// slack: an incident open since before an attack is not caused by it.
func during(l Label, in *Incident, slack time.Duration) bool {
	return !in.Start.Before(l.Start.Add(-slack)) && !in.Start.After(l.End.Add(slack))
}

// sameTarget reports whether the incident is about what the label names.
// With all set it must match every named part (a detection); without, a
// related incident on the same service needs the same endpoint or the
// same client (a co-alert). A label naming no service (capture loss on
// every service) relates to everything.
func sameTarget(l Label, in *Incident, all bool) bool {
	if l.Host != "" && l.Host != in.Host {
		return false
	}
	ep := l.Path == "" || (l.Method == in.Method && TemplateShape(l.Path) == TemplateShape(in.Path))
	cl := l.Client == "" || l.Client == in.Client || l.Client == in.Details["client"] || l.Client == in.Details["principal"]
	if all {
		return ep && cl
	}
	return l.Host == "" || (l.Path != "" && ep) || (l.Client != "" && cl)
}

// TemplateShape is a path template with its parameter names left out,
// so /ledger/{entryId} and /ledger/{ledgerId} compare equal: the
// analyzer names parameters from the path, the simulator from its code.
func TemplateShape(p string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(p, '{')
		if i < 0 {
			b.WriteString(p)
			return b.String()
		}
		j := strings.IndexByte(p[i:], '}')
		if j < 0 {
			b.WriteString(p)
			return b.String()
		}
		b.WriteString(p[:i])
		b.WriteString("{}")
		p = p[i+j+1:]
	}
}

// Table writes the per-type figures as an aligned text table.
func (s *Score) Table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "type\tepisodes\tdetected\tmissed\tfalse\tco-alerts\tTTD median\tTTD max")
	var e, d, m, f, c int
	for _, r := range s.Types {
		ttd := func(x time.Duration) string {
			if r.Detected == 0 {
				return "-"
			}
			return x.Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Type, r.Episodes, r.Detected, r.Missed, r.False, r.CoAlert,
			ttd(r.MedianTTD), ttd(r.MaxTTD))
		e, d, m, f, c = e+r.Episodes, d+r.Detected, m+r.Missed, f+r.False, c+r.CoAlert
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t\t\n", e, d, m, f, c)
	tw.Flush()
}
