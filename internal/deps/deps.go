// Package deps pins the modules the project builds on while the packages
// that use them are written; it is imported by nothing.
package deps

import (
	_ "github.com/ClickHouse/clickhouse-go/v2"
	_ "github.com/DataDog/sketches-go/ddsketch"
	_ "github.com/andybalholm/brotli"
	_ "github.com/getkin/kin-openapi/openapi3"
	_ "github.com/gopacket/gopacket"
	_ "github.com/gopacket/gopacket/afpacket"
	_ "github.com/gopacket/gopacket/layers"
	_ "github.com/gopacket/gopacket/pcapgo"
	_ "github.com/gopacket/gopacket/reassembly"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/segmentio/kafka-go"
	_ "github.com/spf13/cobra"
	_ "go.uber.org/zap"
	_ "golang.org/x/net/bpf"
	_ "golang.org/x/net/http2/hpack"
	_ "google.golang.org/protobuf/encoding/protowire"
	_ "gopkg.in/yaml.v3"
	_ "modernc.org/sqlite"
)
