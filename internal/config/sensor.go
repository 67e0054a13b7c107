package config

import (
	"errors"
	"fmt"
	"time"
)

// SensorConfig configures capture, reassembly, HTTP parsing and redaction.
type SensorConfig struct {
	// ID names this sensor in every record; defaults to the host name.
	ID string `yaml:"id" help:"sensor id carried on every record (default: host name)"`
	// Pcap lists capture files read in time order (pcap, pcapng, .gz).
	Pcap []string `yaml:"pcap" help:"capture files to read (pcap, pcapng, gzip), comma separated"`
	// Interface captures live with AF_PACKET.
	Interface string `yaml:"interface" help:"network interface to capture on with AF_PACKET"`
	// Fanout is the number of AF_PACKET workers in one fanout group. Each
	// worker costs one ring (RingSize) and one reassembler.
	Fanout int `yaml:"fanout" help:"AF_PACKET fanout workers (one per core scales best)"`
	// RingSize is the TPACKET_V3 ring size per worker in bytes.
	RingSize int64 `yaml:"ring_size" help:"AF_PACKET ring size per worker in bytes (accepts MiB)"`
	// BPF is a capture filter in tcpdump syntax.
	BPF string `yaml:"bpf" help:"capture filter in tcpdump syntax"`
	// VXLANListen receives VXLAN-encapsulated mirrored traffic on UDP.
	VXLANListen string `yaml:"vxlan_listen" help:"UDP address to receive VXLAN mirror traffic on (e.g. :4789)"`
	// GeneveListen receives GENEVE-encapsulated mirrored traffic on UDP.
	GeneveListen string `yaml:"geneve_listen" help:"UDP address to receive GENEVE mirror traffic on (e.g. :6081)"`
	// Snaplen is the capture length of each frame.
	Snaplen int `yaml:"snaplen" help:"bytes captured per frame"`

	// MaxBufferedBytes caps the out-of-order bytes buffered by reassembly
	// across all connections; past it the oldest state is dropped.
	MaxBufferedBytes int64 `yaml:"max_buffered_bytes" help:"global cap on buffered out-of-order bytes"`
	// MaxBufferedPerConn caps buffered bytes per connection.
	MaxBufferedPerConn int64 `yaml:"max_buffered_per_conn" help:"cap on buffered bytes per connection"`
	// MaxConnections caps the TCP connections each capture worker tracks;
	// a new one past it evicts the least recently active. Each costs about
	// 1.6 KiB (a bare SYN) to 5 KiB (half a request head waiting).
	MaxConnections int `yaml:"max_connections" help:"cap on tracked TCP connections per worker (least recently active evicted)"`
	// IdleTimeout expires a connection without packets.
	IdleTimeout time.Duration `yaml:"idle_timeout" help:"flush a connection idle this long (packet time)"`
	// ResponseTimeout emits a request without response after this long.
	ResponseTimeout time.Duration `yaml:"response_timeout" help:"emit an unanswered request after this long (packet time)"`
	// StreamReportAfter reports a response still streaming after this long.
	StreamReportAfter time.Duration `yaml:"stream_report_after" help:"report a response still streaming after this long (packet time); the rest of it is counted, not reported"`
	// InspectionDepth is how many bytes per direction are parsed; lengths
	// are still counted past it.
	InspectionDepth int64 `yaml:"inspection_depth" help:"bytes per direction inspected per connection"`
	// BodyLimit caps the body bytes kept in a record.
	BodyLimit int `yaml:"body_limit" help:"body bytes kept per message in a record"`
	// DecompressLimit caps decoded bytes of a compressed body (gzip bombs).
	DecompressLimit int64 `yaml:"decompress_limit" help:"cap on decoded bytes of a compressed body"`
	// Midstream accepts connections whose start was not seen.
	Midstream bool `yaml:"midstream" help:"pick up connections already open when capture started"`

	// RedactHeaders are replaced by a keyed fingerprint, in addition to
	// Authorization, Cookie, Set-Cookie and Proxy-Authorization.
	RedactHeaders []string `yaml:"redact_headers" help:"extra header names whose values are fingerprinted"`
	// RedactQuery lists query parameters whose values are fingerprinted.
	RedactQuery []string `yaml:"redact_query" help:"query parameter names whose values are fingerprinted"`
	// RedactKey is the per-deployment HMAC secret for fingerprints; set it
	// from the environment (APISCOUT_SENSOR_REDACT_KEY), not the file.
	RedactKey string `yaml:"redact_key" help:"HMAC secret for credential fingerprints"`
	// KeepJWTClaims keeps the JWT header and claims (never the signature).
	KeepJWTClaims bool `yaml:"keep_jwt_claims" help:"keep JWT header and claims beside the fingerprint"`
	// MaskBodies masks card numbers, national ids and similar in bodies.
	MaskBodies bool `yaml:"mask_bodies" help:"mask sensitive values (cards, national ids, ...) in bodies"`

	// TLSKeyLog is an NSS key-log file (SSLKEYLOGFILE); when set, TLS
	// sessions found in it are decrypted and parsed as HTTP.
	TLSKeyLog string `yaml:"tls_keylog" help:"NSS key-log file for decrypting TLS (SSLKEYLOGFILE format)"`

	// GRPCProtoset is a FileDescriptorSet of the gRPC services seen; with
	// it gRPC messages are decoded to JSON for schema and data discovery.
	GRPCProtoset string `yaml:"grpc_protoset" help:"protobuf descriptor set (.protoset) for decoding gRPC messages"`

	// Output is "jsonl", "kafka" or "none".
	Output string `yaml:"output" help:"where transactions go: jsonl, kafka, none"`
	// OutputFile is the jsonl destination; "-" is stdout.
	OutputFile string `yaml:"output_file" help:"jsonl output file (- for stdout)"`
	// QueueSize bounds the queue between capture and output; when it is
	// full records are dropped and counted, capture never blocks.
	QueueSize int `yaml:"queue_size" help:"records buffered between capture and output"`
	// Progress prints a progress line when reading files on a terminal.
	Progress bool `yaml:"progress" help:"show a progress line on a terminal"`
}

func defaultSensor() SensorConfig {
	return SensorConfig{
		Fanout:             1,
		RingSize:           64 << 20,
		Snaplen:            65535,
		MaxBufferedBytes:   512 << 20,
		MaxBufferedPerConn: 4 << 20,
		MaxConnections:     1 << 20,
		IdleTimeout:        2 * time.Minute,
		ResponseTimeout:    30 * time.Second,
		StreamReportAfter:  time.Minute,
		InspectionDepth:    1 << 20,
		BodyLimit:          64 << 10,
		DecompressLimit:    8 << 20,
		Midstream:          true,
		KeepJWTClaims:      true,
		MaskBodies:         true,
		Output:             "jsonl",
		OutputFile:         "-",
		QueueSize:          65536,
		Progress:           true,
	}
}

func (s *SensorConfig) validate() error {
	var errs []error
	if s.Fanout < 1 {
		errs = append(errs, fmt.Errorf("sensor.fanout: %d, want at least 1", s.Fanout))
	}
	if s.Snaplen < 64 {
		errs = append(errs, fmt.Errorf("sensor.snaplen: %d, want at least 64", s.Snaplen))
	}
	if s.BodyLimit < 0 {
		errs = append(errs, fmt.Errorf("sensor.body_limit: %d is negative", s.BodyLimit))
	}
	if s.QueueSize < 1 {
		errs = append(errs, fmt.Errorf("sensor.queue_size: %d, want at least 1", s.QueueSize))
	}
	switch s.Output {
	case "jsonl", "kafka", "none":
	default:
		errs = append(errs, fmt.Errorf("sensor.output: %q is not jsonl, kafka or none", s.Output))
	}
	return errors.Join(errs...)
}
