package detect

import (
	"math"
	"strconv"
	"time"

	"github.com/apiscout/apiscout/wire"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/baseline"
	"github.com/apiscout/apiscout/analyzer/inventory"
)

// windowEvidence starts an anomaly record for an endpoint window.
func windowEvidence(typ string, ep *baseline.Endpoint, ws *baseline.WindowStats, ids []string) anomaly.Anomaly {
	return anomaly.Anomaly{
		Type: typ, Host: ep.Key.Service, Method: ep.Key.Method, Path: ep.Key.Path,
		Start: ws.Start, End: ws.End, Evidence: append([]string(nil), ids...),
	}
}

// judgeWindow runs the window detectors on one endpoint's closed window.
// It returns false when the window is anomalous, so that it is not
// learned.
func (s *Set) judgeWindow(ep *baseline.Endpoint, ws *baseline.WindowStats) bool {
	if !ep.Ready(ws.End, s.acfg.LearningPeriod, s.acfg.MinSupport) {
		return true
	}
	normal := true
	ref := frozenRef{ep: ep}
	n := float64(ws.Count)

	if s.on[iRateSpike] {
		normal = s.rateSpike(ep, ws, ref) && normal
	}
	if s.on[iRateDrop] {
		normal = s.rateDrop(ep, ws, ref) && normal
	}
	// error_surge — error_surge, no OWASP category, high: the window's 5xx
	// ratio is at least detect.error_surge_ratio above the learned ratio
	// and at least three times it, with at least detect.error_surge_min
	// 5xx responses.
	if s.on[iErrorSurge] && ws.C5xx >= s.cfg.ErrorSurgeMin {
		r, base := float64(ws.C5xx)/n, ep.Err5xx.V
		if r >= base+s.cfg.ErrorSurgeRatio && r >= 3*base {
			ev := windowEvidence(anomaly.TypeErrorSurge, ep, ws, ws.ErrEvidence)
			ev.Observed, ev.Expected = r, base
			ev.Summary = "share of 5xx responses surged"
			ev.Details = details("errors", strconv.Itoa(ws.C5xx), "calls", strconv.Itoa(ws.Count))
			s.raise(ev, ref)
			normal = false
		}
	}
	// latency_regression — no OWASP category, medium: the window's p95
	// latency (response start minus request end, DDSketch) exceeds the
	// learned p95 times detect.latency_factor and by at least
	// detect.latency_min_delta, over at least detect.latency_min_count
	// responses.
	if s.on[iLatency] && ws.Lat != nil && ws.Lat.GetCount() >= float64(s.cfg.LatencyMinCount) && ep.LatP95 > 0 {
		base := ep.LatP95
		if ws.LatP95 > base*s.cfg.LatencyFactor && ws.LatP95-base >= s.cfg.LatencyMinDelta.Seconds() {
			ev := windowEvidence(anomaly.TypeLatencyRegression, ep, ws, ws.Evidence)
			ev.Observed, ev.Expected = ws.LatP95, base
			ev.Summary = "p95 latency regressed (seconds)"
			s.raise(ev, ref)
			normal = false
		}
	}
	// response_size_anomaly — API3:2023, medium: at least
	// detect.size_min_outliers successful responses in the window (and at
	// least 5% of them) are outliers: log size z-score above detect.size_z
	// and at least four times the usual size (excessive data exposure).
	if s.on[iSize] && ws.SizeOutliers >= s.cfg.SizeMinOutliers && float64(ws.SizeOutliers) >= 0.05*n {
		ev := windowEvidence(anomaly.TypeResponseSize, ep, ws, ws.OutlierEvidence)
		ev.Observed = float64(ws.MaxSize)
		ev.Expected = math.Expm1(ep.RespSize.Mean)
		ev.Summary = "responses far larger than usual"
		ev.Details = details("outliers", strconv.Itoa(ws.SizeOutliers))
		s.raise(ev, ref)
		normal = false
	}
	// credential_stuffing (spread) — API2:2023, high: failed logins on a
	// login-like endpoint in one window reach detect.stuffing_endpoint and
	// five times the learned failures per window, from at least
	// detect.stuffing_clients distinct clients.
	if s.on[iStuffing] && ws.AuthFail >= s.cfg.StuffingEndpoint && len(ws.FailClients) >= s.cfg.StuffingClients &&
		float64(ws.AuthFail) >= 5*ep.LoginFail.V {
		ev := windowEvidence(anomaly.TypeCredentialStuffing, ep, ws, ws.FailEvidence)
		ev.Method, ev.Path = ep.Key.Method, ep.Key.Path
		ev.Observed, ev.Expected = float64(ws.AuthFail), ep.LoginFail.V
		ev.Summary = "failed logins spread over many clients (credential stuffing)"
		ev.Details = details("mode", "distributed", "clients", strconv.Itoa(len(ws.FailClients)))
		s.raise(ev, ref)
		normal = false
	}
	return normal
}

// rateSpike — rate_spike, API4:2023, medium: the window's call count is
// above detect.rate_spike_factor × max(expected, detect.rate_min_expected),
// where expected comes from the learned rhythm (same hour of the week,
// else of the day, else overall).
func (s *Set) rateSpike(ep *baseline.Endpoint, ws *baseline.WindowStats, ref frozenRef) bool {
	exp := math.Max(ws.Expected, s.cfg.RateMinExpected)
	limit := s.cfg.RateSpikeFactor*exp + 3*math.Sqrt(exp)
	if float64(ws.Count) <= limit {
		return true
	}
	ev := windowEvidence(anomaly.TypeRateSpike, ep, ws, ws.Evidence)
	ev.Observed, ev.Expected = float64(ws.Count), ws.Expected
	ev.Summary = "request rate far above the learned rhythm"
	s.raise(ev, ref)
	return false
}

// rateDrop — rate_drop, no OWASP category, high: for
// detect.rate_drop_windows consecutive windows the call count stays below
// detect.rate_drop_factor × expected, where expected is at least
// detect.rate_min_expected. Suppressed while the sensor is blind: quiet is
// not the same as unseen.
func (s *Set) rateDrop(ep *baseline.Endpoint, ws *baseline.WindowStats, ref frozenRef) bool {
	if s.base.Blind || ws.Expected < s.cfg.RateMinExpected || float64(ws.Count) >= s.cfg.RateDropFactor*ws.Expected {
		ep.LowWindows = 0
		return true
	}
	ep.LowWindows++
	if ep.LowWindows < s.cfg.RateDropWindows {
		return false
	}
	ev := windowEvidence(anomaly.TypeRateDrop, ep, ws, ws.Evidence)
	ev.Observed, ev.Expected = float64(ws.Count), ws.Expected
	ev.Summary = "request rate collapsed (outage?)"
	ev.Details = details("low_windows", strconv.Itoa(ep.LowWindows))
	s.raise(ev, ref)
	return false
}

// blindState measures what the sensor missed, per window.
type blindState struct {
	total, lossy, missing int
	// from heartbeats, deltas summed over the window
	hbPackets, hbDrops, hbLoss, hbAcked uint64
	sensors                             map[string]wire.Heartbeat
	lastSeq                             map[string]uint64
	mirrors                             map[mirrorKey]*mirrorState
	mirrorOrder                         []mirrorKey
	all                                 baseline.EWMA
	silent                              int
}

type mirrorKey struct {
	Source string
	VNI    uint32
	ERSPAN uint16
	VLAN   uint16
}

func (k mirrorKey) String() string {
	s := k.Source
	if k.VNI != 0 {
		s += " vni=" + strconv.FormatUint(uint64(k.VNI), 10)
	}
	if k.ERSPAN != 0 {
		s += " erspan=" + strconv.FormatUint(uint64(k.ERSPAN), 10)
	}
	if k.VLAN != 0 {
		s += " vlan=" + strconv.FormatUint(uint64(k.VLAN), 10)
	}
	return s
}

type mirrorState struct {
	count  int
	rate   baseline.EWMA
	silent int
}

func newBlindState() blindState {
	return blindState{lastSeq: make(map[string]uint64), mirrors: make(map[mirrorKey]*mirrorState),
		sensors: make(map[string]wire.Heartbeat)}
}

// heartbeat adds the counters that moved since the sensor's previous
// heartbeat. Counters that went backwards mean the sensor restarted: the
// new values are the deltas.
func (b *blindState) heartbeat(hb *wire.Heartbeat) {
	prev, ok := b.sensors[hb.SensorID]
	b.sensors[hb.SensorID] = wire.Heartbeat{Packets: hb.Packets, KernelDrops: hb.KernelDrops,
		CaptureLossBytes: hb.CaptureLossBytes, AckedBytes: hb.AckedBytes}
	if !ok {
		return // the first heartbeat only sets the reference
	}
	delta := func(now, before uint64) uint64 {
		if now < before {
			return now
		}
		return now - before
	}
	b.hbPackets += delta(hb.Packets, prev.Packets)
	b.hbDrops += delta(hb.KernelDrops, prev.KernelDrops)
	b.hbLoss += delta(hb.CaptureLossBytes, prev.CaptureLossBytes)
	b.hbAcked += delta(hb.AckedBytes, prev.AckedBytes)
}

func (b *blindState) observe(obs *inventory.Observation) {
	tx := obs.Tx
	b.total++
	if baseline.Lossy(tx) {
		b.lossy++
	}
	if tx.Seq != 0 {
		if last, ok := b.lastSeq[tx.SensorID]; ok && tx.Seq > last+1 {
			b.missing += int(min(tx.Seq-last-1, 1<<20))
		}
		if last := b.lastSeq[tx.SensorID]; tx.Seq > last {
			b.lastSeq[tx.SensorID] = tx.Seq
		}
	}
	if tx.Mirror.Empty() {
		return
	}
	k := mirrorKey{Source: tx.Mirror.Source, VNI: tx.Mirror.VNI, ERSPAN: tx.Mirror.ERSPANSession}
	if len(tx.Mirror.VLANs) > 0 {
		k.VLAN = tx.Mirror.VLANs[0]
	}
	m := b.mirrors[k]
	if m == nil {
		m = &mirrorState{}
		b.mirrors[k] = m
		b.mirrorOrder = append(b.mirrorOrder, k)
	}
	m.count++
}

// judgeBlind — sensor_blind, no OWASP category, high: in one window the
// share of transactions with capture loss plus records missing from the
// sensor's sequence reaches detect.blind_loss_ratio (over at least 20), or
// so does, from heartbeats, the share of packets dropped by the kernel
// (over at least 1000) or of acknowledged bytes never seen (over at least
// 1 MiB); or
// a mirror session that carried at least detect.rate_min_expected
// transactions per window stays silent for detect.blind_silent_windows
// windows while others deliver; or all traffic stops for that long after
// the same rate. While a sensor_blind incident is open nothing is learned
// and rate_drop is suppressed.
func (s *Set) judgeBlind(start, end time.Time) {
	b := &s.blind
	defer func() {
		b.total, b.lossy, b.missing = 0, 0, 0
		b.hbPackets, b.hbDrops, b.hbLoss, b.hbAcked = 0, 0, 0, 0
	}()
	if !s.on[iBlind] {
		return
	}
	raise := func(reason, target string, observed, expected float64, summary string) {
		ev := anomaly.Anomaly{Type: anomaly.TypeSensorBlind, Host: target, Start: start, End: end,
			Observed: observed, Expected: expected, Summary: summary, Details: details("reason", reason)}
		s.raise(ev, frozenRef{blind: true})
	}
	seen := b.total + b.missing
	lossyWin := false
	if seen >= 20 {
		r := float64(b.lossy+b.missing) / float64(seen)
		if r >= s.cfg.BlindLossRatio {
			raise("capture_loss", "", r, s.cfg.BlindLossRatio, "sensor missing traffic (capture loss or lost records)")
			lossyWin = true
		}
	}
	if n := b.hbPackets + b.hbDrops; n >= 1000 && !lossyWin {
		if r := float64(b.hbDrops) / float64(n); r >= s.cfg.BlindLossRatio {
			raise("kernel_drops", "", r, s.cfg.BlindLossRatio, "sensor dropping packets before capture (kernel drops)")
			lossyWin = true
		}
	}
	if b.hbAcked >= 1<<20 && !lossyWin {
		if r := float64(b.hbLoss) / float64(b.hbAcked); r >= s.cfg.BlindLossRatio {
			raise("capture_loss", "", r, s.cfg.BlindLossRatio, "sensor missing traffic (acknowledged bytes never seen)")
			lossyWin = true
		}
	}
	if b.total == 0 {
		b.silent++
		if b.all.V >= s.cfg.RateMinExpected && b.silent >= s.cfg.BlindSilentWindows {
			raise("silent", "", 0, b.all.V, "no traffic at all from the sensor")
		}
	} else {
		b.silent = 0
		if !lossyWin {
			b.all.Add(float64(b.total), 0.05)
		}
	}
	for _, k := range b.mirrorOrder {
		m := b.mirrors[k]
		if m.count == 0 && b.total > 0 {
			m.silent++
			if m.rate.V >= s.cfg.RateMinExpected && m.silent >= s.cfg.BlindSilentWindows {
				raise("silent_mirror", "mirror:"+k.String(), 0, m.rate.V, "mirror session went silent while others deliver")
			}
		} else if m.count > 0 {
			m.silent = 0
			m.rate.Add(float64(m.count), 0.05)
		}
		m.count = 0
	}
}
