// Package minutes folds transactions into per-minute endpoint statistics
// (storage.EndpointMinute): calls, errors by class, unauthenticated calls,
// latency quantiles and bytes, by packet time. The analyzer feeds it the
// transactions it has attributed to an endpoint and writes the minutes it
// hands back; replaying a capture gives the same rows.
//
// Call order: Add for each transaction (any order within the lateness
// allowed), Complete with the current packet time to take the minutes that
// can no longer change, Drain at the end of a run for the rest.
package minutes

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"

	"github.com/apiscout/apiscout/storage"
	"github.com/apiscout/apiscout/wire"
)

// RelativeAccuracy of the latency quantiles: a reported p99 is within 1%
// of a true value. Each open minute of an endpoint holds one sketch
// (a few hundred bytes to ~2 KB, whatever the call count).
const RelativeAccuracy = 0.01

type key struct {
	service, method, path string
	minute                int64 // unix seconds of the minute's start
}

type acc struct {
	m      storage.EndpointMinute
	sketch *ddsketch.DDSketch
}

// Aggregator holds the open minutes. It is not safe for concurrent use: the
// analyzer's pipeline owns one per partition.
type Aggregator struct {
	lateness time.Duration
	open     map[key]*acc
	// watermark: minutes before it have been handed out; a transaction
	// for them is late and counted, not added.
	watermark int64
	late      uint64
}

// New returns an aggregator that keeps a minute open until packet time is
// lateness past its end (transactions of a connection arrive up to the
// sensor's response timeout apart; 30s is a fair default).
func New(lateness time.Duration) *Aggregator {
	return &Aggregator{lateness: lateness, open: map[key]*acc{}, watermark: math.MinInt64}
}

// Add counts one transaction of an endpoint. unauthenticated says the call
// carried no credentials. It returns false (and counts it in Late) when
// the transaction's minute was already handed out.
func (a *Aggregator) Add(service, method, path string, t *wire.Transaction, unauthenticated bool) bool {
	minute := t.RequestStart.UTC().Truncate(time.Minute)
	k := key{service, method, path, minute.Unix()}
	if k.minute < a.watermark {
		a.late++
		return false
	}
	c := a.open[k]
	if c == nil {
		sk, err := ddsketch.NewDefaultDDSketch(RelativeAccuracy)
		if err != nil {
			panic(fmt.Sprintf("minutes: sketch: %v", err)) // a constant accuracy cannot be invalid
		}
		c = &acc{m: storage.EndpointMinute{Service: service, Method: method, Path: path, Minute: minute}, sketch: sk}
		a.open[k] = c
	}
	m := &c.m
	m.Calls++
	m.RequestBytes += uint64(max(t.RequestBodyWireLen, 0))
	m.ResponseBytes += uint64(max(t.ResponseBodyWireLen, 0))
	if unauthenticated {
		m.Unauthenticated++
	}
	if t.Status == 0 || t.Flags.Has(wire.FlagNoResponse) {
		m.NoResponse++
		return true
	}
	switch {
	case t.Status >= 500:
		m.Errors5xx++
	case t.Status >= 400:
		m.Errors4xx++
	}
	if m.StatusCodes == nil {
		m.StatusCodes = map[uint16]uint64{}
	}
	m.StatusCodes[uint16(min(t.Status, math.MaxUint16))]++
	if us := storage.TransactionDuration(t); us > 0 {
		ms := float64(us) / 1000
		_ = c.sketch.Add(ms) // only negative or NaN values fail
		m.LatencyMax = max(m.LatencyMax, ms)
	}
	return true
}

// Late is the number of transactions that arrived after their minute was
// handed out.
func (a *Aggregator) Late() uint64 { return a.late }

// Complete hands out the minutes that ended at least lateness before now
// (packet time), sorted by minute, service, method, path.
func (a *Aggregator) Complete(now time.Time) []storage.EndpointMinute {
	// A minute starting at or before cut has ended lateness ago; minutes
	// start on multiples of 60, so those are the ones before wm.
	cut := now.Add(-a.lateness).Add(-time.Minute).Unix()
	wm := floorMinute(cut) + 60
	var out []storage.EndpointMinute
	for k, c := range a.open {
		if k.minute < wm {
			out = append(out, c.finish())
			delete(a.open, k)
		}
	}
	a.watermark = max(a.watermark, wm)
	sortMinutes(out)
	return out
}

// Drain hands out every open minute (the end of a run).
func (a *Aggregator) Drain() []storage.EndpointMinute {
	out := make([]storage.EndpointMinute, 0, len(a.open))
	for k, c := range a.open {
		out = append(out, c.finish())
		a.watermark = max(a.watermark, k.minute+60)
		delete(a.open, k)
	}
	sortMinutes(out)
	return out
}

func floorMinute(unix int64) int64 {
	m := unix / 60 * 60
	if m > unix { // negative times round toward zero
		m -= 60
	}
	return m
}

func (c *acc) finish() storage.EndpointMinute {
	m := c.m
	if c.sketch.GetCount() > 0 {
		q := func(p float64) float64 {
			v, err := c.sketch.GetValueAtQuantile(p)
			if err != nil {
				return 0
			}
			return min(v, m.LatencyMax) // the sketch's bucket may overshoot the true maximum
		}
		m.LatencyP50, m.LatencyP90, m.LatencyP95, m.LatencyP99 = q(0.5), q(0.9), q(0.95), q(0.99)
	}
	return m
}

func sortMinutes(ms []storage.EndpointMinute) {
	slices.SortFunc(ms, func(a, b storage.EndpointMinute) int {
		if c := a.Minute.Compare(b.Minute); c != 0 {
			return c
		}
		return compareEndpoint(a, b)
	})
}

func compareEndpoint(a, b storage.EndpointMinute) int {
	return strings.Compare(a.Service+"\x00"+a.Method+"\x00"+a.Path, b.Service+"\x00"+b.Method+"\x00"+b.Path)
}
