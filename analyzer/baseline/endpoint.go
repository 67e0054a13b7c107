package baseline

import (
	"math"
	"strings"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
)

// EndpointKey identifies an endpoint; a struct rather than a joined string
// so that the per-transaction lookup allocates nothing.
type EndpointKey struct{ Service, Method, Path string }

// Endpoint is what is known of normal traffic on one endpoint. Fields
// named Learned* and the rhythm change only through Learn* calls; the
// window fields (W) are the current window of packet time.
type Endpoint struct {
	Key   EndpointKey
	First time.Time // packet time of the first call
	Last  time.Time
	// Seen counts every call; Learned counts the calls learned from
	// (clean capture, no open incident on the endpoint).
	Seen, Learned int64
	// Frozen counts open incidents that stop learning on this endpoint.
	Frozen int

	W Window

	Rate Rhythm
	// Latency holds learned latencies in seconds, decayed hourly.
	Latency   *ddsketch.DDSketch
	LatP95    float64 // cached at each window close
	Err4xx    EWMA    // per-window 4xx ratio
	Err5xx    EWMA    // per-window 5xx ratio
	LoginFail EWMA    // per-window failed authentications (login-like)
	// RespSize is the EWMA mean and variance of log1p(response bytes).
	RespSize MeanVar
	ReqSize  MeanVar
	// Status is the set of status codes seen (100..611).
	Status StatusSet
	// Fields maps body field pointers to their types; PathParams lists
	// template parameter names. Both are capped at MaxFields.
	Fields     map[string]string
	PathParams []string
	// Auth counts learned successful calls with and without credentials.
	AuthOK, UnauthOK int64
	// Sensitive lists the data classes learned in responses;
	// UnauthSensitive those learned in successful responses to calls
	// without credentials.
	Sensitive       []string
	UnauthSensitive []string
	// Kinds counts learned successful calls per client kind (see Kind).
	Kinds map[string]int64
	// BOLAMax is the decayed maximum of new object ids per client window
	// learned on this endpoint.
	BOLAMax float64
	// LowWindows counts consecutive windows below the expected rate.
	LowWindows int
	// Notes holds one-time marks of the detectors (e.g. shadow reported).
	Notes uint32
}

// MaxFields caps the field and parameter sets of an endpoint.
const MaxFields = 512

// Window accumulates one tumbling window of an endpoint's traffic.
type Window struct {
	Count, C4xx, C5xx, AuthFail, Lossy int
	Bytes                              int64
	SizeOutliers                       int
	MaxSize                            int64
	Lat                                *ddsketch.DDSketch
	// FailClients holds the distinct clients that failed to log in,
	// capped at maxFailClients.
	FailClients map[string]struct{}
	// Evidence keeps a few transaction ids of the window for incidents.
	Evidence        []string
	OutlierEvidence []string
	FailEvidence    []string
	ErrEvidence     []string
}

const maxFailClients = 1024

// Ready reports whether the endpoint has been learned long enough and
// with enough support to alert on its baseline.
func (e *Endpoint) Ready(now time.Time, learning time.Duration, minSupport int) bool {
	return now.Sub(e.First) >= learning && e.Learned >= int64(minSupport)
}

func newSketch() *ddsketch.DDSketch {
	// 2% relative accuracy, at most 512 bins (about 4 KiB when full):
	// enough for p95 over latencies from microseconds to minutes.
	s, err := ddsketch.LogCollapsingLowestDenseDDSketch(0.02, 512)
	if err != nil {
		panic(err) // constant arguments: cannot fail
	}
	return s
}

// EWMA is an exponentially weighted mean with a warm-up: the first n
// samples are averaged plainly so that early values are not biased to 0.
type EWMA struct {
	V float64
	N int64
}

// Add folds x with smoothing alpha (after warm-up).
func (e *EWMA) Add(x, alpha float64) {
	e.N++
	a := 1 / float64(e.N)
	if a < alpha {
		a = alpha
	}
	e.V += a * (x - e.V)
}

// MeanVar is an exponentially weighted mean and variance.
type MeanVar struct {
	Mean, Var float64
	N         int64
}

// Add folds x with smoothing alpha (after warm-up).
func (m *MeanVar) Add(x, alpha float64) {
	m.N++
	a := 1 / float64(m.N)
	if a < alpha {
		a = alpha
	}
	d := x - m.Mean
	m.Mean += a * d
	m.Var = (1 - a) * (m.Var + a*d*d)
}

// Z is the z-score of x; the variance has a floor so that endpoints that
// always answer the same size do not turn one extra byte into an outlier.
func (m *MeanVar) Z(x float64) float64 {
	return (x - m.Mean) / math.Sqrt(m.Var+0.05)
}

// StatusSet is a bit set of HTTP status codes 100..611.
type StatusSet [8]uint64

// Add marks code.
func (s *StatusSet) Add(code int) {
	i := code - 100
	if i < 0 || i >= 512 {
		return
	}
	s[i/64] |= 1 << (i % 64)
}

// Has reports whether code was seen.
func (s *StatusSet) Has(code int) bool {
	i := code - 100
	if i < 0 || i >= 512 {
		return false
	}
	return s[i/64]&(1<<(i%64)) != 0
}

// Rhythm learns the expected number of calls per window with its daily
// and weekly rhythm: one smoothed value per hour of the week, per hour of
// the day and overall. Expected uses the most specific one that has seen
// at least a full hour of windows.
type Rhythm struct {
	Week    [168]float32
	WeekN   [168]uint16
	Day     [24]float32
	DayN    [24]uint16
	All     EWMA
	perHour uint16
}

// slotAlpha: after warm-up, a slot follows about the last 20 windows it
// saw, i.e. the recent part of the same hour on previous days or weeks.
const slotAlpha = 0.05

func hourOfWeek(t time.Time) (int, int) {
	t = t.UTC()
	h := t.Hour()
	return int(t.Weekday())*24 + h, h
}

// Learn folds the count of the window that started at start.
func (r *Rhythm) Learn(start time.Time, count float64, windowsPerHour int) {
	r.perHour = uint16(min(windowsPerHour, 60000))
	w, d := hourOfWeek(start)
	fold := func(v *float32, n *uint16) {
		if *n < math.MaxUint16 {
			*n++
		}
		a := 1 / float32(*n)
		if a < slotAlpha {
			a = slotAlpha
		}
		*v += a * (float32(count) - *v)
	}
	fold(&r.Week[w], &r.WeekN[w])
	fold(&r.Day[d], &r.DayN[d])
	r.All.Add(count, 0.01)
}

// Expected returns the expected count for the window starting at start.
func (r *Rhythm) Expected(start time.Time) float64 {
	w, d := hourOfWeek(start)
	full := r.perHour
	if full == 0 {
		full = 1
	}
	switch {
	case r.WeekN[w] >= full:
		return float64(r.Week[w])
	case r.DayN[d] >= full:
		return float64(r.Day[d])
	}
	return r.All.V
}

// observe folds one call into the current window. It is the per-call hot
// path: no allocation except the first fail client or field of a window.
func (e *Endpoint) observe(c *Call) {
	e.Seen++
	e.Last = c.Time
	w := &e.W
	w.Count++
	switch {
	case c.Status >= 500:
		w.C5xx++
		if len(w.ErrEvidence) < 3 {
			w.ErrEvidence = append(w.ErrEvidence, c.TxID())
		}
	case c.Status >= 400:
		w.C4xx++
	}
	w.Bytes += c.RespBytes
	if c.RespBytes > w.MaxSize {
		w.MaxSize = c.RespBytes
	}
	if c.Lossy {
		w.Lossy++
	}
	if c.Latency > 0 {
		if w.Lat == nil {
			w.Lat = newSketch()
		}
		_ = w.Lat.Add(c.Latency.Seconds())
	}
	if c.Status >= 200 && c.Status < 300 && e.RespSize.N >= 50 {
		ls := math.Log1p(float64(c.RespBytes))
		// An outlier is far in log space and at least four times the
		// usual size, so tiny, steady responses do not flap.
		if e.RespSize.Z(ls) > c.SizeZ && ls-e.RespSize.Mean > math.Ln2*2 {
			w.SizeOutliers++
			if len(w.OutlierEvidence) < 3 {
				w.OutlierEvidence = append(w.OutlierEvidence, c.TxID())
			}
		}
	}
	if c.LoginLike && c.AuthFailed {
		w.AuthFail++
		if w.FailClients == nil {
			w.FailClients = make(map[string]struct{})
		}
		if len(w.FailClients) < maxFailClients {
			w.FailClients[strings.Clone(c.Client)] = struct{}{}
		}
		if len(w.FailEvidence) < 3 {
			w.FailEvidence = append(w.FailEvidence, c.TxID())
		}
	}
	if len(w.Evidence) < 3 {
		w.Evidence = append(w.Evidence, c.TxID())
	}
}

// learnCall folds the per-call parts of a clean call into the baseline.
func (e *Endpoint) learnCall(c *Call) {
	e.Learned++
	e.Status.Add(c.Status)
	if c.Status >= 200 && c.Status < 300 {
		e.RespSize.Add(math.Log1p(float64(c.RespBytes)), 0.01)
		if c.Authenticated {
			e.AuthOK++
		} else {
			e.UnauthOK++
		}
	}
	if c.ReqBytes > 0 {
		e.ReqSize.Add(math.Log1p(float64(c.ReqBytes)), 0.01)
	}
}

// WindowStats is the closed window as the detectors judge it.
type WindowStats struct {
	Start, End time.Time
	Window
	Expected float64
	LatP95   float64 // seconds; 0 when no latency was seen
}

// closeWindow ends the window that started at start: when learn is set
// it folds the window into the baseline; then it resets the window.
func (e *Endpoint) closeWindow(start time.Time, learn bool, windowsPerHour int, hourly bool) {
	if learn {
		e.Rate.Learn(start, float64(e.W.Count), windowsPerHour)
		if e.W.Count > 0 {
			n := float64(e.W.Count)
			e.Err4xx.Add(float64(e.W.C4xx)/n, 0.02)
			e.Err5xx.Add(float64(e.W.C5xx)/n, 0.02)
		}
		e.LoginFail.Add(float64(e.W.AuthFail), 0.02)
		if e.W.Lat != nil && e.W.Lat.GetCount() > 0 {
			if e.Latency == nil {
				e.Latency = newSketch()
			}
			_ = e.Latency.MergeWith(e.W.Lat)
		}
	}
	if e.Latency != nil {
		if hourly && e.Latency.GetCount() > 1000 {
			// Forget slowly (half-life of about a day) so that a
			// deliberate change of speed becomes the new normal.
			_ = e.Latency.Reweight(0.97)
		}
		if e.Latency.GetCount() > 0 {
			e.LatP95, _ = e.Latency.GetValueAtQuantile(0.95)
		}
	}
	// The window's slices and maps may be held by the judged statistics:
	// start fresh ones, but keep the latency sketch's memory.
	lat := e.W.Lat
	if lat != nil {
		lat.Clear()
	}
	e.W = Window{Lat: lat}
}
