package httpparse

import "github.com/prometheus/client_golang/prometheus"

// Reasons label the problems counter; the set is fixed so the label's
// cardinality is too.
const (
	ReasonBadStartLine     = "bad_start_line"
	ReasonBadHeader        = "bad_header"
	ReasonHeaderTooLarge   = "header_too_large"
	ReasonTooManyHeaders   = "too_many_headers"
	ReasonBadContentLength = "bad_content_length"
	ReasonBadChunk         = "bad_chunk"
	ReasonChunkTooLarge    = "chunk_too_large"
	ReasonAmbiguous        = "ambiguous_framing"
	ReasonGap              = "gap"
	ReasonNoRequest        = "no_request"
	ReasonNoResponse       = "no_response"
	ReasonDecodeError      = "decode_error"
	ReasonDecompressLimit  = "decompress_limit"
	ReasonPendingOverflow  = "pending_overflow"
	ReasonUpgradeHold      = "upgrade_hold_overflow"
	ReasonIncomplete       = "incomplete_at_close"
	ReasonMidstreamIgnored = "midstream_ignored"
	ReasonTunnelDropped    = "tunnel_dropped"
	ReasonNoBodyGuessed    = "response_body_was_response"
)

var reasons = []string{
	ReasonBadStartLine, ReasonBadHeader, ReasonHeaderTooLarge, ReasonTooManyHeaders,
	ReasonBadContentLength, ReasonBadChunk, ReasonChunkTooLarge, ReasonAmbiguous,
	ReasonGap, ReasonNoRequest, ReasonNoResponse, ReasonDecodeError,
	ReasonDecompressLimit, ReasonPendingOverflow, ReasonUpgradeHold,
	ReasonIncomplete, ReasonMidstreamIgnored, ReasonTunnelDropped, ReasonNoBodyGuessed,
}

// Metrics counts what the parsers saw and what they could not parse. One
// Metrics is shared by every connection of a sensor; counters are resolved
// once so the hot path does no label lookups.
type Metrics struct {
	transactions prometheus.Counter
	streaming    prometheus.Counter
	skipped      prometheus.Counter
	problems     *prometheus.CounterVec
	upgrades     *prometheus.CounterVec
	byReason     map[string]prometheus.Counter
}

// NewMetrics registers the parser's counters on reg (nil: unregistered,
// for tests and tools).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		transactions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "apiscout", Subsystem: "httpparse", Name: "transactions_total",
			Help: "HTTP/1.x transactions emitted (including those flagged incomplete).",
		}),
		streaming: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "apiscout", Subsystem: "httpparse", Name: "streaming_reported_total",
			Help: "HTTP/1.x responses reported while still streaming (sensor.stream_report_after); each is one of the transactions.",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "apiscout", Subsystem: "httpparse", Name: "skipped_bytes_total",
			Help: "Bytes skipped while looking for the next message start (midstream, after gaps or garbage).",
		}),
		problems: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "apiscout", Subsystem: "httpparse", Name: "problems_total",
			Help: "Messages the parser flagged, cut or could not parse, by reason.",
		}, []string{"reason"}),
		upgrades: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "apiscout", Subsystem: "httpparse", Name: "upgrades_total",
			Help: "Connections that switched away from HTTP/1, by protocol (websocket, h2c, h2, tunnel, other).",
		}, []string{"protocol"}),
		byReason: make(map[string]prometheus.Counter, len(reasons)),
	}
	for _, r := range reasons {
		m.byReason[r] = m.problems.WithLabelValues(r)
	}
	for _, p := range []string{"websocket", "h2c", "h2", "tunnel", "other"} {
		m.upgrades.WithLabelValues(p)
	}
	if reg != nil {
		reg.MustRegister(m.transactions, m.streaming, m.skipped, m.problems, m.upgrades)
	}
	return m
}

func (m *Metrics) problem(reason string) { m.byReason[reason].Inc() }

func (m *Metrics) upgrade(protocol string) {
	switch protocol {
	case "websocket", "h2c", "h2", "tunnel":
	default:
		protocol = "other"
	}
	m.upgrades.WithLabelValues(protocol).Inc()
}
