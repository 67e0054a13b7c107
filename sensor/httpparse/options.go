package httpparse

import (
	"time"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// Options bound what one connection's parser may hold and decide how much
// of each message is kept. The zero value of a field means its default.
type Options struct {
	// BodyLimit caps the decoded body bytes kept in a record per message.
	// Costs up to BodyLimit bytes per record in flight.
	BodyLimit int
	// InspectionDepth caps the compressed body bytes buffered per message
	// for decoding (identity bodies need no buffer beyond BodyLimit).
	// Framing and lengths continue past it. Default 1 MiB: a connection
	// can hold up to this much per direction while a body is in flight.
	InspectionDepth int64
	// DecompressLimit caps the decoded bytes produced from one compressed
	// body (gzip bombs); past it the record gets wire.FlagDecodeError.
	// Default 8 MiB of decoder work (not memory: output past BodyLimit is
	// counted and discarded).
	DecompressLimit int64
	// ResponseTimeout emits a request without response after this much
	// packet time. Default 30s: a pending request costs one record.
	ResponseTimeout time.Duration
	// StreamReportAfter reports a response still arriving this much packet
	// time after it started (flagged wire.FlagStreaming), so an endpoint
	// that streams for hours (server-sent events, an MCP SSE channel)
	// shows in the inventory now rather than when its connection ends;
	// the rest of that response is counted, not reported. Default 1m.
	StreamReportAfter time.Duration
	// Midstream accepts connections whose start was not seen; when false
	// such connections are ignored (and counted).
	Midstream bool

	// MaxHeaderBytes caps a message head (start line and header fields,
	// or a trailer section). Default 64 KiB buffered per direction at most;
	// larger heads are unparsable (a 1 MB header line is an attack, not an
	// API call).
	MaxHeaderBytes int
	// MaxHeaders caps the header fields of one message. Default 256:
	// each costs one wire.Header in the record.
	MaxHeaders int
	// MaxChunkSize rejects chunk sizes above it as unparsable. Default
	// 1 GiB; it guards arithmetic, not memory (chunk data is streamed).
	MaxChunkSize int64
	// MaxPending caps requests waiting for their responses (pipelining
	// depth); past it the oldest is emitted without response. Default 64.
	MaxPending int
	// UpgradeHoldLimit caps client bytes held after an Upgrade or CONNECT
	// request until the response says whether the protocol switched.
	// Default 64 KiB per connection at most.
	UpgradeHoldLimit int

	// OnUpgrade, when set, is asked for the parser that takes over a
	// connection after a protocol switch (101 Switching Protocols, a 2xx
	// answer to CONNECT, the HTTP/2 prior-knowledge preface). It may return
	// nil: the rest of the connection is then dropped and counted.
	OnUpgrade func(u Upgrade) stream.Parser
}

// Upgrade tells the parser that takes over a connection where it starts.
type Upgrade struct {
	// Protocol is "websocket", "h2c", "h2" (prior knowledge), "tunnel"
	// (CONNECT) or the lower-cased first token of the Upgrade header.
	Protocol string
	Conn     stream.ConnInfo
	Emit     stream.Emit
	// NextIndex is the index the next record of this connection should
	// carry, so indexes stay unique per connection.
	NextIndex uint32
	// RequestHeaders are a copy of the upgrade request's headers (h2c
	// needs HTTP2-Settings); nil for prior knowledge.
	RequestHeaders []wire.Header
	// Time is the packet time of the switch: the end of the 101 (or 2xx
	// to CONNECT), or the first byte of the HTTP/2 preface.
	Time time.Time
	// Method, Host, Path and Query are the upgrade request's, and
	// ResponseHeaders the 101's (WebSocket extensions are negotiated
	// there); empty for prior knowledge.
	Method, Host, Path, Query string
	ResponseHeaders           []wire.Header
}

// Defaults of the limits, with their costs documented on Options.
const (
	DefaultBodyLimit        = 64 << 10
	DefaultInspectionDepth  = 1 << 20
	DefaultDecompressLimit  = 8 << 20
	DefaultResponseTimeout  = 30 * time.Second
	DefaultStreamReport     = time.Minute
	DefaultMaxHeaderBytes   = 64 << 10
	DefaultMaxHeaders       = 256
	DefaultMaxChunkSize     = 1 << 30
	DefaultMaxPending       = 64
	DefaultUpgradeHoldLimit = 64 << 10
)

// OptionsFromConfig takes the parser's options from the sensor section.
func OptionsFromConfig(c config.SensorConfig) Options {
	return Options{
		BodyLimit:         c.BodyLimit,
		InspectionDepth:   c.InspectionDepth,
		DecompressLimit:   c.DecompressLimit,
		ResponseTimeout:   c.ResponseTimeout,
		StreamReportAfter: c.StreamReportAfter,
		Midstream:         c.Midstream,
	}
}

func (o Options) withDefaults() Options {
	if o.BodyLimit < 0 {
		o.BodyLimit = 0
	} else if o.BodyLimit == 0 {
		o.BodyLimit = DefaultBodyLimit
	}
	if o.InspectionDepth <= 0 {
		o.InspectionDepth = DefaultInspectionDepth
	}
	if o.DecompressLimit <= 0 {
		o.DecompressLimit = DefaultDecompressLimit
	}
	if o.ResponseTimeout <= 0 {
		o.ResponseTimeout = DefaultResponseTimeout
	}
	if o.StreamReportAfter <= 0 {
		o.StreamReportAfter = DefaultStreamReport
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.MaxHeaders <= 0 {
		o.MaxHeaders = DefaultMaxHeaders
	}
	if o.MaxChunkSize <= 0 {
		o.MaxChunkSize = DefaultMaxChunkSize
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.UpgradeHoldLimit <= 0 {
		o.UpgradeHoldLimit = DefaultUpgradeHoldLimit
	}
	return o
}
