// Package protocols assembles the sensor's protocol parsers into the one
// stream.Factory that TCP reassembly calls for every connection: content
// detection first (HTTP/2 preface, TLS record, else HTTP/1), then HTTP/1
// with its upgrades handed to WebSocket or HTTP/2, and TLS with optional
// key-log decryption feeding the same HTTP parsers.
package protocols

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/sensor/grpcdecode"
	"github.com/apiscout/apiscout/sensor/http2parse"
	"github.com/apiscout/apiscout/sensor/httpparse"
	"github.com/apiscout/apiscout/sensor/protodetect"
	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/sensor/tlsmeta"
	"github.com/apiscout/apiscout/sensor/wsparse"
	"github.com/apiscout/apiscout/wire"
)

// NewFactory builds the parsers once (their metrics are registered on
// reg) and returns the factory shared by every reassembly worker.
func NewFactory(cfg config.SensorConfig, log *zap.Logger, reg prometheus.Registerer) (stream.Factory, error) {
	h2opts := http2parse.DefaultOptions()
	if cfg.BodyLimit > 0 {
		h2opts.BodyLimit = cfg.BodyLimit
	}
	if cfg.StreamReportAfter > 0 {
		h2opts.StreamReportAfter = cfg.StreamReportAfter
	}
	h2m := http2parse.NewMetrics(reg)
	wsm := wsparse.NewMetrics(reg)
	wsopts := wsparse.DefaultOptions()

	h1opts := httpparse.OptionsFromConfig(cfg)
	h1opts.OnUpgrade = func(u httpparse.Upgrade) stream.Parser {
		switch u.Protocol {
		case "websocket":
			s := wsparse.StartFromHandshake(u.Conn, u.NextIndex, u.Host, u.Path, u.Query, u.Time, u.RequestHeaders, u.ResponseHeaders)
			return wsparse.New(s, wsopts, wsm, u.Emit)
		case "h2c":
			return http2parse.NewUpgraded(u.Conn, h2opts, h2m, u.Emit, u.NextIndex, pseudo(u), u.Time)
		case "h2":
			return http2parse.New(u.Conn, h2opts, h2m, u.Emit, true)
		}
		return nil // other tunnels are counted by the HTTP/1 parser
	}
	http1 := httpparse.NewFactory(h1opts, log, httpparse.NewMetrics(reg))
	http2 := http2parse.NewFactory(h2opts, h2m)

	tlsOpts := tlsmeta.Options{}
	if cfg.TLSKeyLog != "" {
		kl, err := tlsmeta.OpenKeyLog(cfg.TLSKeyLog)
		if err != nil {
			return nil, fmt.Errorf("sensor.tls_keylog: %w", err)
		}
		log.Info("TLS decryption enabled", zap.String("keylog", cfg.TLSKeyLog), zap.Int("entries", kl.Lines))
		tlsOpts.KeyLog = kl
		tlsOpts.Inner = func(info stream.ConnInfo, alpn string, emit stream.Emit) stream.Parser {
			if alpn == "h2" {
				return http2parse.New(info, h2opts, h2m, emit, true)
			}
			return http1(info, emit)
		}
	}
	tls := tlsmeta.NewFactory(tlsOpts, tlsmeta.NewMetrics(reg))
	detect := protodetect.NewFactory(protodetect.Factories{HTTP1: http1, HTTP2: http2, TLS: tls}, reg)
	if cfg.GRPCProtoset == "" {
		return detect, nil
	}
	dec, err := grpcdecode.Load(cfg.GRPCProtoset)
	if err != nil {
		return nil, fmt.Errorf("sensor.grpc_protoset: %w", err)
	}
	log.Info("gRPC message decoding enabled", zap.String("protoset", cfg.GRPCProtoset), zap.Int("methods", dec.Methods()))
	return func(info stream.ConnInfo, emit stream.Emit) stream.Parser {
		return detect(info, func(tx *wire.Transaction) {
			dec.Apply(tx)
			emit(tx)
		})
	}, nil
}

// pseudo gives the HTTP/2 form of an upgraded HTTP/1 request, so that
// stream 1 carries its method, path and authority.
func pseudo(u httpparse.Upgrade) []wire.Header {
	path := u.Path
	if u.Query != "" {
		path += "?" + u.Query
	}
	out := []wire.Header{{Name: ":method", Value: u.Method}, {Name: ":path", Value: path}, {Name: ":authority", Value: u.Host}}
	for _, h := range u.RequestHeaders {
		out = append(out, wire.Header{Name: strings.ToLower(h.Name), Value: h.Value})
	}
	return out
}
