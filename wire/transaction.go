// Package wire holds the contract between sensor and analyzer: the
// transaction record and the sensor heartbeat, their binary encoding
// (protobuf wire format, see apiscout.proto) and their JSON rendering.
//
// It is the only package that knows the encoding; both sides import it and
// nothing else of each other. It depends on the standard library and
// google.golang.org/protobuf/encoding/protowire only.
package wire

import (
	"net/netip"
	"time"
)

// SchemaVersion is written into every record header. Decoders accept any
// version up to and including this one and skip fields they do not know, so
// an older analyzer can read a newer sensor's records and vice versa.
const SchemaVersion = 1

// Content types carried in the record header (Kafka header "content-type").
const (
	ContentTypeTransaction = "application/vnd.apiscout.transaction+protobuf"
	ContentTypeHeartbeat   = "application/vnd.apiscout.heartbeat+protobuf"
)

// Header is one HTTP header as seen on the wire, name case preserved.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Mirror identifies the mirror session a packet arrived through, so the
// analyzer can tell two copies of the same network apart and report which
// span port or cloud mirror is blind.
type Mirror struct {
	// VNI is the VXLAN or GENEVE virtual network id; 0 when absent.
	VNI uint32 `json:"vni,omitempty"`
	// VLANs holds 802.1Q tags outermost first.
	VLANs []uint16 `json:"vlans,omitempty"`
	// ERSPANSession is the ERSPAN session id; 0 when absent.
	ERSPANSession uint16 `json:"erspan_session,omitempty"`
	// Interface or listener the packet was captured on.
	Source string `json:"source,omitempty"`
}

// Empty reports whether no mirror session information is present.
func (m Mirror) Empty() bool {
	return m.VNI == 0 && len(m.VLANs) == 0 && m.ERSPANSession == 0 && m.Source == ""
}

// Transaction is one request and its response (or the lack of one) as the
// sensor saw them on the wire. Times are packet times, never the sensor's
// wall clock, so that a replayed capture yields the same records.
type Transaction struct {
	SensorID string `json:"sensor_id,omitempty"`
	// Seq increases by one for every record a sensor emits; the analyzer
	// drops duplicates by (SensorID, Seq) and reports gaps.
	Seq uint64 `json:"seq,omitempty"`

	// ConnID identifies the TCP connection within the sensor's lifetime;
	// Index is the position of this pair on the connection (0 first).
	ConnID uint64 `json:"conn_id"`
	Index  uint32 `json:"index"`

	Client netip.AddrPort `json:"client"`
	Server netip.AddrPort `json:"server"`
	Mirror Mirror         `json:"mirror,omitempty"`

	// Protocol is "http/1.0", "http/1.1", "h2", "grpc", "websocket".
	Protocol string `json:"protocol,omitempty"`

	RequestStart  time.Time `json:"ts"`
	RequestEnd    time.Time `json:"request_end"`
	ResponseStart time.Time `json:"response_start,omitempty"`
	ResponseEnd   time.Time `json:"response_end,omitempty"`

	Method  string `json:"method"`
	Host    string `json:"host"`
	Path    string `json:"path"`
	Query   string `json:"query"`
	Version string `json:"version"`
	Status  int    `json:"status"`
	Reason  string `json:"reason,omitempty"`

	RequestHeaders  []Header `json:"request_headers,omitempty"`
	ResponseHeaders []Header `json:"response_headers,omitempty"`
	// Trailers of chunked bodies (and gRPC trailers).
	RequestTrailers  []Header `json:"request_trailers,omitempty"`
	ResponseTrailers []Header `json:"response_trailers,omitempty"`

	// Bodies are decoded (Content-Encoding removed) and cut at the sensor's
	// body limit; the lengths below are always the true ones.
	RequestBody  []byte `json:"request_body,omitempty"`
	ResponseBody []byte `json:"response_body,omitempty"`

	// Wire lengths are the bytes of the message body on the wire (after
	// de-chunking, before content decoding); Len is the decoded entity.
	RequestBodyWireLen  int64 `json:"request_body_wire_len"`
	RequestBodyLen      int64 `json:"request_body_len"`
	ResponseBodyWireLen int64 `json:"response_body_wire_len"`
	ResponseBodyLen     int64 `json:"response_body_len"`

	RequestContentType  string `json:"request_content_type,omitempty"`
	ResponseContentType string `json:"response_content_type,omitempty"`

	Flags Flags `json:"flags"`

	// CaptureLoss is the number of bytes the sensor missed on this
	// connection up to the end of this transaction (acknowledged but never
	// seen), so the analyzer can discount what it learns from it.
	CaptureLoss uint64 `json:"capture_loss,omitempty"`

	// Extra carries protocol-specific attributes (gRPC status, WebSocket
	// summary, TLS metadata) as flat key/value pairs.
	Extra []Header `json:"extra,omitempty"`
}

// Key is the Kafka partition key of a transaction: its service, so that one
// analyzer owns all the traffic of a service and its state.
func (t *Transaction) Key() string {
	if t.Host != "" {
		return t.Host
	}
	return t.Server.String()
}

// ID is a stable identifier of a transaction across retries and replays.
func (t *Transaction) ID() string {
	return TransactionID(t.SensorID, t.ConnID, t.Index, t.RequestStart)
}

// RequestHeader returns the first request header with the given name
// (case-insensitive) and whether it was present.
func (t *Transaction) RequestHeader(name string) (string, bool) {
	return lookup(t.RequestHeaders, name)
}

// ResponseHeader returns the first response header with the given name
// (case-insensitive) and whether it was present.
func (t *Transaction) ResponseHeader(name string) (string, bool) {
	return lookup(t.ResponseHeaders, name)
}

func lookup(hs []Header, name string) (string, bool) {
	for i := range hs {
		if equalFold(hs[i].Name, name) {
			return hs[i].Value, true
		}
	}
	return "", false
}

// equalFold is an ASCII-only strings.EqualFold, enough for header names and
// free of the Unicode tables on the hot path.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if ca >= 'A' && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if cb >= 'A' && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}
