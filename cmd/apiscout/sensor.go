package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/sensor"
	"github.com/apiscout/apiscout/sensor/output"
)

func init() {
	register(func() *cobra.Command {
		cmd := &cobra.Command{
			Use:   "sensor",
			Short: "Capture mirrored traffic and emit one record per HTTP transaction",
			Long: `The sensor reads mirrored traffic from capture files (--pcap), a network
interface (--interface, AF_PACKET, needs CAP_NET_RAW) or a UDP listener for
VXLAN/GENEVE mirror sessions (--vxlan-listen), reassembles TCP, parses
HTTP/1.x, HTTP/2, gRPC and WebSocket, reads TLS metadata, redacts
credentials, and writes every transaction as a JSON line (default, stdout)
or to Kafka (--sensor.output kafka).

Examples:
  apiscout sensor --pcap capture.pcap.gz > transactions.jsonl
  apiscout sensor --interface eth1 --sensor.fanout 4 --sensor.bpf 'tcp port 80 or tcp port 8080'
  apiscout sensor --vxlan-listen :4789 --sensor.output kafka --kafka.brokers k1:9092`,
			Args: cobra.NoArgs,
			RunE: runSensor,
		}
		bindConfig(cmd, "log", "metrics", "sensor", "kafka")
		aliasFlag(cmd, "pcap", "sensor.pcap", "capture files to read (shorthand for --sensor.pcap)")
		aliasFlag(cmd, "interface", "sensor.interface", "interface to capture on (shorthand for --sensor.interface)")
		aliasFlag(cmd, "vxlan-listen", "sensor.vxlan_listen", "VXLAN listener address (shorthand for --sensor.vxlan_listen)")
		return cmd
	})
}

func runSensor(cmd *cobra.Command, _ []string) error {
	a, err := newApp(cmd)
	if err != nil {
		return err
	}
	defer a.log.Sync() //nolint:errcheck
	ctx := cmd.Context()
	waitMetrics, err := a.serveMetrics(ctx)
	if err != nil {
		return err
	}
	sink, err := newSensorSink(a)
	if err != nil {
		return err
	}
	p, err := sensor.New(a.cfg.Sensor, a.log, a.reg, sink)
	if err != nil {
		sink.Close()
		return err
	}
	err = p.Run(ctx)
	st := p.Stats()
	a.log.Info("sensor stopped", zap.Uint64("packets", st.Packets), zap.Uint64("transactions", st.Transactions),
		zap.Uint64("dropped", st.Dropped), zap.Uint64("kernel_drops", st.KernelDrops))
	if len(a.cfg.Sensor.Pcap) > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "%d packets, %d transactions, %d dropped, %d bytes of capture loss\n",
			st.Packets, st.Transactions, st.Dropped, st.CaptureLossBytes)
	}
	waitStop(ctx, waitMetrics)
	return err
}

// newSensorSink opens the configured output.
func newSensorSink(a *app) (sensor.Sink, error) {
	switch a.cfg.Sensor.Output {
	case "jsonl":
		return output.NewJSONL(a.cfg.Sensor.OutputFile)
	case "kafka":
		return newKafkaSink(a)
	case "none":
		return output.Discard{}, nil
	}
	return nil, fmt.Errorf("sensor.output: %q is not jsonl, kafka or none", a.cfg.Sensor.Output)
}
