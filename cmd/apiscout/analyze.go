package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer"
	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/detect"
	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/sensor"
	"github.com/apiscout/apiscout/sensor/output"
	"github.com/apiscout/apiscout/wire"
)

func init() {
	register(func() *cobra.Command {
		var jsonl []string
		cmd := &cobra.Command{
			Use:   "analyze",
			Short: "Offline audit of captures: inventory, anomalies and reconstructed OpenAPI in a folder",
			Long: `Runs the whole pipeline in one process on capture files (the same sensor
and analyzer code as a deployment, driven by packet time) and writes:

  OUT/inventory.json        services and endpoints: template, classification
                            (documented, shadow, zombie, orphan), calls, auth,
                            sensitive data, findings and risk
  OUT/anomalies.jsonl       one incident per line (type, severity, host,
                            method, path, client, start, end)
  OUT/openapi/<host>.yaml   the OpenAPI 3 document reconstructed from traffic
  OUT/diff/<host>.json      differences with the given spec

  apiscout analyze --pcap capture.pcap.gz --spec specs/ --out audit/
  apiscout analyze --jsonl transactions.jsonl --out audit/`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return runAnalyze(cmd, jsonl) },
		}
		bindConfig(cmd, "log", "sensor", "analyzer", "detect")
		aliasFlag(cmd, "pcap", "sensor.pcap", "capture files to read (shorthand for --sensor.pcap)")
		aliasFlag(cmd, "spec", "analyzer.specs", "OpenAPI/Swagger files or directories (shorthand for --analyzer.specs)")
		aliasFlag(cmd, "out", "analyzer.out", "output directory (shorthand for --analyzer.out)")
		cmd.Flags().StringSliceVar(&jsonl, "jsonl", nil, "read the sensor's jsonl output instead of captures")
		return cmd
	})
}

// auditSink feeds the sensor's records straight into the engine.
type auditSink struct {
	e   *analyzer.Engine
	out *anomalyLog
}

func (s *auditSink) Write(_ context.Context, recs []*wire.Transaction) error {
	for _, tx := range recs {
		s.out.add(s.e.Process(tx))
	}
	return nil
}

func (s *auditSink) WriteHeartbeat(_ context.Context, hb *wire.Heartbeat) error {
	s.e.Heartbeat(hb)
	return nil
}

func (s *auditSink) Close() error { return nil }

// anomalyLog keeps the latest state of each incident, in order of opening.
type anomalyLog struct {
	order []string
	last  map[string]anomaly.Anomaly
}

func (l *anomalyLog) add(as []anomaly.Anomaly) {
	for _, a := range as {
		if _, ok := l.last[a.ID]; !ok {
			l.order = append(l.order, a.ID)
		}
		l.last[a.ID] = a
	}
}

func runAnalyze(cmd *cobra.Command, jsonl []string) error {
	a, err := newApp(cmd)
	if err != nil {
		return err
	}
	defer a.log.Sync() //nolint:errcheck
	eng, log, err := analyzeInput(cmd, a, jsonl)
	if err != nil {
		return err
	}
	return writeAudit(cmd, a.cfg.Analyzer.Out, eng, log, a.log)
}

// analyzeInput runs captures (sensor.pcap) or jsonl files through the
// sensor and the engine, in one process, on packet time.
func analyzeInput(cmd *cobra.Command, a *app, jsonl []string) (*analyzer.Engine, *anomalyLog, error) {
	if len(a.cfg.Sensor.Pcap) == 0 && len(jsonl) == 0 {
		return nil, nil, errors.New("nothing to analyze: give --pcap FILE... or --jsonl FILE")
	}
	det, err := detect.New(a.cfg.Detect, a.cfg.Analyzer, a.log.Named("detect"), a.reg)
	if err != nil {
		return nil, nil, err
	}
	eng, err := analyzer.New(analyzer.Options{Config: a.cfg.Analyzer, Log: a.log, Reg: a.reg, Detectors: det})
	if err != nil {
		return nil, nil, err
	}
	sink := &auditSink{e: eng, out: &anomalyLog{last: map[string]anomaly.Anomaly{}}}
	if len(a.cfg.Sensor.Pcap) > 0 {
		a.cfg.Sensor.Progress = false
		p, err := sensor.New(a.cfg.Sensor, a.log.Named("sensor"), a.reg, sink)
		if err != nil {
			return nil, nil, err
		}
		if err := p.Run(cmd.Context()); err != nil {
			return nil, nil, err
		}
	}
	for _, f := range jsonl {
		fh, err := os.Open(f)
		if err != nil {
			return nil, nil, err
		}
		err = output.ReadJSONL(fh, func(tx *wire.Transaction) error { sink.out.add(eng.Process(tx)); return nil })
		fh.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	sink.out.add(eng.Close())
	return eng, sink.out, nil
}

func writeAudit(cmd *cobra.Command, dir string, eng *analyzer.Engine, anomalies *anomalyLog, log *zap.Logger) error {
	for _, d := range []string{dir, filepath.Join(dir, "openapi"), filepath.Join(dir, "diff")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	svcs := eng.Services()
	inv, err := json.MarshalIndent(map[string]any{"services": svcs}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "inventory.json"), append(inv, '\n'), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	for _, id := range anomalies.order {
		line, _ := json.Marshal(anomalies.last[id])
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(filepath.Join(dir, "anomalies.jsonl"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	for _, s := range svcs {
		name := safeName(s.Host)
		if doc, err := eng.Spec(s.Host); err == nil {
			if err := os.WriteFile(filepath.Join(dir, "openapi", name+".yaml"), doc, 0o644); err != nil {
				return err
			}
		} else {
			log.Warn("no OpenAPI export", zap.String("service", s.Host), zap.Error(err))
		}
		if s.Spec != "" {
			if d, err := eng.Diff(s.Host); err == nil {
				j, _ := json.MarshalIndent(d, "", "  ")
				os.WriteFile(filepath.Join(dir, "diff", name+".json"), append(j, '\n'), 0o644)
			}
		}
	}
	printAudit(cmd, svcs, len(anomalies.order), dir)
	return nil
}

func safeName(host string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ':' || r == '\\' || r < ' ' {
			return '_'
		}
		return r
	}, host)
}

func printAudit(cmd *cobra.Command, svcs []inventory.Service, anomalies int, dir string) {
	counts := map[inventory.Classification]int{}
	eps, unauth, sens := 0, 0, 0
	for _, s := range svcs {
		for _, e := range s.Endpoints {
			eps++
			counts[e.Classification]++
			if e.Unauthenticated {
				unauth++
			}
			if len(e.Sensitive) > 0 {
				sens++
			}
		}
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "services\t%d\n", len(svcs))
	fmt.Fprintf(w, "endpoints\t%d\t(documented %d, shadow %d, zombie %d, orphan %d)\n", eps,
		counts[inventory.Documented], counts[inventory.Shadow], counts[inventory.Zombie], counts[inventory.Orphan])
	fmt.Fprintf(w, "unauthenticated\t%d\n", unauth)
	fmt.Fprintf(w, "with sensitive data\t%d\n", sens)
	fmt.Fprintf(w, "anomalies\t%d\n", anomalies)
	if dir != "" {
		fmt.Fprintf(w, "written to\t%s\n", dir)
	}
	w.Flush()
}
