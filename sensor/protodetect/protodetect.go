// Package protodetect picks the parser of a TCP connection from its first
// bytes: the HTTP/2 client preface, a TLS record, or (by default) HTTP/1.
// Detection is by content, never by port, so APIs on odd ports are found
// and junk on port 80 is not taken for HTTP.
package protodetect

import (
	"bytes"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiscout/apiscout/sensor/http2parse"
	"github.com/apiscout/apiscout/sensor/stream"
)

// Factories are the parsers to choose from; a nil one is never chosen.
type Factories struct {
	HTTP1 stream.Factory
	HTTP2 stream.Factory
	TLS   stream.Factory
}

// maxSniff bounds what is buffered before a decision: the HTTP/2 preface
// is 24 bytes, a TLS record header 5.
const maxSniff = len(http2parse.Preface)

// NewFactory returns a factory whose parsers detect the protocol and then
// hand every byte, the sniffed ones first, to the chosen parser.
func NewFactory(f Factories, reg prometheus.Registerer) stream.Factory {
	detected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apiscout_connections_detected_total",
		Help: "TCP connections by the protocol detected from their first bytes.",
	}, []string{"protocol"})
	if reg != nil {
		reg.MustRegister(detected)
	}
	return func(info stream.ConnInfo, emit stream.Emit) stream.Parser {
		return &sniffer{f: f, info: info, emit: emit, detected: detected}
	}
}

type pending struct {
	dir   stream.Dir
	data  []byte
	ts    time.Time
	gap   int
	isGap bool
}

type sniffer struct {
	f        Factories
	info     stream.ConnInfo
	emit     stream.Emit
	detected *prometheus.CounterVec
	chosen   stream.Parser
	queue    []pending
	client   []byte
	server   []byte
}

func (s *sniffer) Data(d stream.Dir, data []byte, ts time.Time) {
	if s.chosen != nil {
		s.chosen.Data(d, data, ts)
		return
	}
	s.queue = append(s.queue, pending{dir: d, data: append([]byte(nil), data...), ts: ts})
	if d == stream.ClientToServer {
		s.client = append(s.client, data[:min(len(data), maxSniff-min(len(s.client), maxSniff))]...)
	} else {
		s.server = append(s.server, data[:min(len(data), maxSniff-min(len(s.server), maxSniff))]...)
	}
	if p := s.decide(false); p != "" {
		s.choose(p)
	}
}

// decide returns the protocol, or "" to wait for more bytes.
func (s *sniffer) decide(final bool) string {
	c, sv := s.client, s.server
	switch {
	case isTLS(c) || (len(c) == 0 && isTLS(sv)):
		return "tls"
	case len(c) > 0 && http2parse.LooksLikePreface(c):
		if len(c) >= len(http2parse.Preface) {
			return "h2"
		}
		if !final && len(sv) == 0 {
			return "" // could still be the preface: wait
		}
		return "http1"
	case len(c) == 0 && len(sv) < 5 && !final:
		return ""
	case len(c) > 0 && len(c) < 3 && c[0] == 0x16 && !final:
		return "" // a TLS record header split across segments
	}
	return "http1"
}

func isTLS(b []byte) bool {
	// Handshake record, major version 3, and a plausible length.
	return len(b) >= 3 && b[0] == 0x16 && b[1] == 3 && b[2] <= 4
}

func (s *sniffer) choose(proto string) {
	var f stream.Factory
	switch proto {
	case "tls":
		f = s.f.TLS
	case "h2":
		f = s.f.HTTP2
	}
	if f == nil {
		proto, f = "http1", s.f.HTTP1
	}
	s.detected.WithLabelValues(proto).Inc()
	info := s.info
	if proto == "h2" && bytes.HasPrefix(s.client, []byte(http2parse.Preface)) {
		info.Midstream = false
	}
	s.chosen = f(info, s.emit)
	for _, p := range s.queue {
		if p.isGap {
			s.chosen.Gap(p.dir, p.gap, p.ts)
		} else {
			s.chosen.Data(p.dir, p.data, p.ts)
		}
	}
	s.queue, s.client, s.server = nil, nil, nil
}

func (s *sniffer) Gap(d stream.Dir, n int, ts time.Time) {
	if s.chosen == nil {
		s.queue = append(s.queue, pending{dir: d, gap: n, ts: ts, isGap: true})
		// Bytes after a gap are not a connection start: decide now.
		s.choose(s.decide(true))
		return
	}
	s.chosen.Gap(d, n, ts)
}

func (s *sniffer) Tick(now time.Time) {
	if s.chosen != nil {
		s.chosen.Tick(now)
	}
}

func (s *sniffer) Close(reason string, ts time.Time) {
	if s.chosen == nil {
		if len(s.queue) == 0 {
			return // no payload at all: nothing to parse
		}
		s.choose(s.decide(true))
	}
	s.chosen.Close(reason, ts)
}
