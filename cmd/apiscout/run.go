package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer/api"
	"github.com/apiscout/apiscout/analyzer/api/storeread"
	"github.com/apiscout/apiscout/analyzer/checkpoint"
	"github.com/apiscout/apiscout/analyzer/consume"
	"github.com/apiscout/apiscout/analyzer/ingest"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/sensor"
	"github.com/apiscout/apiscout/wire"
)

func init() {
	register(func() *cobra.Command {
		cmd := &cobra.Command{
			Use:   "run",
			Short: "Everything in one process: capture, analysis, embedded store, web UI on 127.0.0.1:8080",
			Long: `run is the sensor and the analyzer in one process, with no Kafka and no
ClickHouse: traffic from capture files (--pcap), an interface (--interface)
or a VXLAN listener (--vxlan-listen) goes through the sensor's pipeline
into the same analysis code as the distributed analyzer, and the results
into the embedded store (storage.path). The web UI and REST API are on
ui.listen (127.0.0.1:8080).

With capture files, run prints a summary when they are read and keeps
serving the UI until interrupted.

Examples:
  apiscout run --pcap demo/capture.pcap --analyzer.specs demo/specs
  apiscout run --interface eth1 --storage.path /var/lib/apiscout/apiscout.db`,
			Args: cobra.NoArgs,
			RunE: runRun,
		}
		bindConfig(cmd, "log", "metrics", "sensor", "analyzer", "detect", "storage", "ui", "alerts")
		aliasFlag(cmd, "pcap", "sensor.pcap", "capture files to read (shorthand for --sensor.pcap)")
		aliasFlag(cmd, "interface", "sensor.interface", "interface to capture on (shorthand for --sensor.interface)")
		aliasFlag(cmd, "vxlan-listen", "sensor.vxlan_listen", "VXLAN listener address (shorthand for --sensor.vxlan_listen)")
		return cmd
	})
}

// engineSink is the sensor's Sink in `apiscout run`: each batch the
// sensor's bounded queue hands over is analyzed and stored before the
// next, so that the sensor's queue is the one in-process queue (a file
// replay waits on it, live capture drops and counts when it is full).
type engineSink struct {
	h *ingest.Analysis
}

func (s engineSink) Write(ctx context.Context, txs []*wire.Transaction) error {
	batch := make([]consume.Record, len(txs))
	for i, tx := range txs {
		batch[i] = consume.Record{Tx: tx, Key: tx.Key(), Partition: checkpoint.Local}
	}
	return s.h.Handle(ctx, batch)
}

// Close is called by the pipeline when the input ends: the engine closes
// its incidents at the last packet time and they are stored.
func (s engineSink) Close() error { return s.h.Close(context.Background()) }

func runRun(cmd *cobra.Command, _ []string) error {
	a, err := newApp(cmd)
	if err != nil {
		return err
	}
	defer a.log.Sync() //nolint:errcheck
	if a.cfg.Storage.Kind != "embedded" {
		return fmt.Errorf("storage.kind: run keeps its results in the embedded store, not %q (use apiscout analyzer for ClickHouse)", a.cfg.Storage.Kind)
	}
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	store, eng, waitMetrics, err := startAnalysis(ctx, a)
	if err != nil {
		return err
	}
	defer store.Close()
	var done atomic.Bool
	addr, waitUI, err := startUI(ctx, a, store, eng, done.Load)
	if err != nil {
		return err
	}
	files := len(a.cfg.Sensor.Pcap) > 0
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "apiscout: web UI and REST API on %s\n", addr)
	// The inventory carries on across restarts: the state saved by the
	// last run is restored before the first packet.
	an, err := newAnalysis(a, eng, store, "")
	if err != nil {
		return err
	}
	if err := an.RestoreLocal(ctx); err != nil {
		return err
	}
	p, err := sensor.New(a.cfg.Sensor, a.log.Named("sensor"), a.reg, engineSink{h: an})
	if err != nil {
		return err
	}
	runErr := p.Run(ctx)
	if errors.Is(runErr, context.Canceled) {
		runErr = nil
	}
	done.Store(true)
	st := p.Stats()
	a.log.Info("capture ended", zap.Uint64("packets", st.Packets), zap.Uint64("transactions", st.Transactions), zap.Uint64("dropped", st.Dropped))
	if runErr == nil && ctx.Err() == nil {
		if files {
			fmt.Fprintf(out, "apiscout: read %s: %d packets, %d transactions\n", strings.Join(a.cfg.Sensor.Pcap, ", "), st.Packets, st.Transactions)
		}
		if err := printSummary(ctx, out, storeread.New(store, eng.specs()), addr); err != nil {
			runErr = err
		}
	}
	if runErr == nil && files {
		// The data is complete; keep serving it until interrupted.
		fmt.Fprintln(out, "apiscout: serving the UI until interrupted (Ctrl-C)")
		<-ctx.Done()
	}
	cancel()
	waitUI()
	waitMetrics()
	return runErr
}

// printSummary says what the run found, in a few lines.
func printSummary(ctx context.Context, w io.Writer, r api.Reader, addr string) error {
	svcs, err := r.Services(ctx)
	if err != nil {
		return err
	}
	count := func(q api.EndpointQuery) int {
		if err != nil {
			return 0
		}
		var p api.EndpointPage
		p, err = r.Endpoints(ctx, q)
		return p.Total
	}
	class := func(c inventory.Classification) int {
		return count(api.EndpointQuery{Class: []inventory.Classification{c}})
	}
	total, shadow, zombie, orphan := count(api.EndpointQuery{}), class(inventory.Shadow), class(inventory.Zombie), class(inventory.Orphan)
	unauth := count(api.EndpointQuery{Unauthenticated: true})
	if err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	an, err := r.Anomalies(ctx, api.AnomalyQuery{})
	if err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	open, err := r.Anomalies(ctx, api.AnomalyQuery{State: "open"})
	if err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	fmt.Fprintf(w, "  services         %d\n", len(svcs))
	fmt.Fprintf(w, "  endpoints        %d\n", total)
	fmt.Fprintf(w, "  shadow           %d\n", shadow)
	fmt.Fprintf(w, "  zombie           %d\n", zombie)
	fmt.Fprintf(w, "  orphan           %d\n", orphan)
	fmt.Fprintf(w, "  unauthenticated  %d\n", unauth)
	fmt.Fprintf(w, "  anomalies        %d (%d open)\n", an.Total, open.Total)
	fmt.Fprintf(w, "  web UI           %s\n", addr)
	return nil
}
