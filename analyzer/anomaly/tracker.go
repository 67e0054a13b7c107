package anomaly

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxEvidence bounds the sample transaction ids kept per incident.
const MaxEvidence = 10

// Tracker holds the open incidents, one per Target, and turns a stream of
// evidence into incident updates. It is pure logic driven by packet time:
// the same evidence in the same order gives the same updates.
//
// Call order: Raise for each piece of evidence as it is found, Flush at
// every window boundary (packet time). Raise returns the incident when it
// opens; Flush returns the incidents that received evidence since the last
// Flush (Event updated, at most one copy per incident per Flush, so a
// three-hour attack is one incident with a few hundred updates rather than
// thousands of alerts) and those quiet for closeAfter (Event closed).
type Tracker struct {
	closeAfter time.Duration
	open       map[Target]*incident
}

type incident struct {
	a     Anomaly
	last  time.Time // packet time of the last evidence
	dirty bool
}

// standing are the types that describe a lasting condition of an endpoint
// rather than an event: a zombie that keeps being called, an endpoint that
// keeps serving personal data without credentials, an undocumented
// endpoint in use. Sporadic calls would otherwise close and reopen them
// all day (one alert per quiet spell); they stay open until a day passes
// without evidence.
var standing = map[string]bool{TypeZombieCall: true, TypeSensitiveDataExposure: true, TypeShadowEndpoint: true}

// StandingCloseAfter is how long a standing incident stays open without
// evidence.
const StandingCloseAfter = 24 * time.Hour

func (t *Tracker) closeAfterFor(typ string) time.Duration {
	if standing[typ] && t.closeAfter < StandingCloseAfter {
		return StandingCloseAfter
	}
	return t.closeAfter
}

// NewTracker returns a tracker that closes an incident after closeAfter
// without evidence (StandingCloseAfter for standing conditions).
func NewTracker(closeAfter time.Duration) *Tracker {
	return &Tracker{closeAfter: closeAfter, open: make(map[Target]*incident)}
}

// Raise folds one piece of evidence into the incident of its target. The
// evidence carries Type, Severity, OWASP, the target fields, Start (the
// packet time it was seen), optionally End (the end of the window it
// covers), Observed, Expected, Summary, Evidence and Details. When it opens
// an incident, Raise returns the opened copy and true.
func (t *Tracker) Raise(ev Anomaly) (Anomaly, bool) {
	tg := TargetOf(&ev)
	end := ev.End
	if end.Before(ev.Start) {
		end = ev.Start
	}
	if in, ok := t.open[tg]; ok {
		a := &in.a
		a.Count++
		if end.After(a.End) {
			a.End = end
		}
		if end.After(in.last) {
			in.last = end
		}
		if ev.Severity.Rank() > a.Severity.Rank() {
			a.Severity = ev.Severity
		}
		a.Observed, a.Expected = ev.Observed, ev.Expected
		if ev.Summary != "" {
			a.Summary = strings.Clone(ev.Summary)
		}
		for _, id := range ev.Evidence {
			if len(a.Evidence) >= MaxEvidence {
				break
			}
			a.Evidence = append(a.Evidence, strings.Clone(id))
		}
		for k, v := range ev.Details {
			if a.Details == nil {
				a.Details = make(map[string]string, len(ev.Details))
			}
			a.Details[strings.Clone(k)] = strings.Clone(v)
		}
		in.dirty = true
		return Anomaly{}, false
	}
	a := ev
	a.End = end
	a.ID = IncidentID(tg, ev.Start)
	a.State = Open
	a.Event = EventOpened
	a.Updated = end
	a.Opened = end
	a.Count = 1
	if len(a.Evidence) > MaxEvidence {
		a.Evidence = a.Evidence[:MaxEvidence]
	}
	detach(&a)
	tg = TargetOf(&a)
	t.open[tg] = &incident{a: a, last: end}
	return copyOf(&a), true
}

// detach copies the strings of an incident the tracker keeps: evidence
// comes from transactions decoded in place, and a kept substring would
// pin the whole Kafka record it arrived in.
func detach(a *Anomaly) {
	for _, p := range []*string{&a.Type, &a.OWASP, &a.Host, &a.Method, &a.Path, &a.Client, &a.Summary} {
		*p = strings.Clone(*p)
	}
	ev := make([]string, len(a.Evidence))
	for i, id := range a.Evidence {
		ev[i] = strings.Clone(id)
	}
	a.Evidence = ev
	if a.Details != nil {
		d := make(map[string]string, len(a.Details))
		for k, v := range a.Details {
			d[strings.Clone(k)] = strings.Clone(v)
		}
		a.Details = d
	}
}

// Touch folds one more piece of evidence at packet time at into the open
// incident on tg, without building a record (the cheap path for detectors
// that see every call of an ongoing incident). It reports false when no
// incident is open on tg; the caller then Raises.
func (t *Tracker) Touch(tg Target, at time.Time) bool {
	in, ok := t.open[tg]
	if !ok {
		return false
	}
	in.a.Count++
	if at.After(in.a.End) {
		in.a.End = at
	}
	if at.After(in.last) {
		in.last = at
	}
	in.dirty = true
	return true
}

// IsOpen reports whether an incident is open on tg.
func (t *Tracker) IsOpen(tg Target) bool { _, ok := t.open[tg]; return ok }

// Len is the number of open incidents.
func (t *Tracker) Len() int { return len(t.open) }

// Flush reports, as of packet time now, the incidents updated since the
// last Flush and closes those without evidence for closeAfter. The result
// is ordered by start time, then id, so that replays compare equal.
func (t *Tracker) Flush(now time.Time) []Anomaly {
	if len(t.open) == 0 {
		return nil
	}
	var out []Anomaly
	for tg, in := range t.open {
		switch {
		case now.Sub(in.last) >= t.closeAfterFor(tg.Type):
			in.a.State = Closed
			in.a.Event = EventClosed
			in.a.Updated = now
			out = append(out, copyOf(&in.a))
			delete(t.open, tg)
		case in.dirty:
			in.dirty = false
			in.a.Event = EventUpdated
			in.a.Updated = now
			out = append(out, copyOf(&in.a))
		}
	}
	slices.SortFunc(out, func(x, y Anomaly) int {
		if c := x.Start.Compare(y.Start); c != 0 {
			return c
		}
		if x.ID < y.ID {
			return -1
		}
		if x.ID > y.ID {
			return 1
		}
		return 0
	})
	return out
}

// CloseAll closes every open incident at now (end of input), ordered like
// Flush.
func (t *Tracker) CloseAll(now time.Time) []Anomaly {
	for tg, in := range t.open {
		in.last = now.Add(-t.closeAfterFor(tg.Type))
	}
	return t.Flush(now)
}

// IncidentID is the stable id of the incident on tg that started at start:
// the same capture replayed gives the same ids.
func IncidentID(tg Target, start time.Time) string {
	h := sha256.New()
	for _, s := range []string{tg.Type, tg.Host, tg.Method, tg.Path, tg.Client} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(strconv.AppendInt(nil, start.UnixNano(), 10))
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:12])
}

// copyOf returns a with its slices and maps copied, so that a consumer
// holding it never sees later updates.
func copyOf(a *Anomaly) Anomaly {
	c := *a
	c.Evidence = slices.Clone(a.Evidence)
	c.Details = maps.Clone(a.Details)
	return c
}

// savedIncident is what a checkpoint keeps of an open incident.
type savedIncident struct {
	Anomaly
	Last  time.Time `json:"last_evidence"`
	Dirty bool      `json:"dirty,omitempty"`
}

// Export serialises the open incidents on the named services, for a
// checkpoint: the analyzer that restores it carries them on under the
// same ids instead of opening (and alerting on) them again.
func (t *Tracker) Export(services []string) ([]byte, error) {
	out := []savedIncident{}
	for _, in := range t.open {
		if slices.Contains(services, in.a.Host) {
			out = append(out, savedIncident{Anomaly: copyOf(&in.a), Last: in.last, Dirty: in.dirty})
		}
	}
	// Map order is random; a checkpoint of the same state is the same.
	slices.SortFunc(out, func(x, y savedIncident) int { return strings.Compare(x.ID, y.ID) })
	return json.Marshal(out)
}

// Import opens the incidents Export wrote, replacing any open on the same
// target, and returns their targets.
func (t *Tracker) Import(b []byte) ([]Target, error) {
	var in []savedIncident
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("incidents: %w", err)
	}
	tgs := make([]Target, 0, len(in))
	for i := range in {
		a := in[i].Anomaly
		if a.ID == "" || a.Type == "" || a.State != Open {
			return nil, fmt.Errorf("incidents: entry %d is not an open incident (id %q, type %q, state %q)", i, a.ID, a.Type, a.State)
		}
		tg := TargetOf(&a)
		t.open[tg] = &incident{a: a, last: in[i].Last, dirty: in[i].Dirty}
		tgs = append(tgs, tg)
	}
	return tgs, nil
}

// Forget drops the open incidents on the named services without closing
// them: their new owner carries them on.
func (t *Tracker) Forget(services []string) []Target {
	var out []Target
	for tg := range t.open {
		if slices.Contains(services, tg.Host) {
			delete(t.open, tg)
			out = append(out, tg)
		}
	}
	return out
}
