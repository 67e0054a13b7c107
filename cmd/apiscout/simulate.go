package main

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/apiscout/apiscout/internal/simulate"
)

func init() {
	register(func() *cobra.Command {
		var o simulate.Options
		var out string
		var hours float64
		cmd := &cobra.Command{
			Use:   "simulate",
			Short: "Write a realistic API capture with known answers (truth, labels, specs)",
			Long: `Generates the traffic of a few simulated API services — varied id styles,
clients with JWTs, API keys and cookies, personal data in JSON bodies, a
daily rhythm and labelled attacks — as a real capture, with the truth a
perfect inventory would report:

  DIR/capture.pcap      TCP conversations (capture.pcap.gz with --gzip)
  DIR/truth.json        every real endpoint and its classification
  DIR/labels.jsonl      the injected attack episodes
  DIR/specs/*.yaml      the OpenAPI documents the teams published
                        (shadow endpoints left out, zombies deprecated)

Scenarios:
  demo       four services, one hour, four attacks (make run)
  inventory  the same services twice as busy for two hours (template scoring)
  anomalies  --days of baseline (default 2), then an episode of every
             detector type, 35 minutes apart, labelled in labels.jsonl
  bench      --size-mb of JSON API traffic (default 200): keep-alive and
             short connections, chunked and gzip responses, full frames

Output depends only on the scenario, --seed, --days, --hours and --size-mb.

  apiscout simulate --scenario demo --out demo/
  apiscout simulate --scenario anomalies --days 3 --gzip --out anomalies/
  apiscout simulate --scenario bench --size-mb 250 --out bench/`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if hours > 0 {
					o.Duration = time.Duration(hours * float64(time.Hour))
				}
				gz, _ := cmd.Flags().GetBool("gzip")
				return simulateTo(cmd.ErrOrStderr(), out, o, gz)
			},
		}
		cmd.Flags().StringVar(&o.Scenario, "scenario", "demo", "scenario: "+strings.Join(simulate.Scenarios, ", "))
		cmd.Flags().Uint64Var(&o.Seed, "seed", 1, "random seed")
		cmd.Flags().IntVar(&o.SizeMB, "size-mb", 0, "bench scenario: stop after about this many MB of HTTP")
		cmd.Flags().Float64Var(&hours, "hours", 0, "packet time to simulate (default per scenario)")
		cmd.Flags().IntVar(&o.Days, "days", 0, "anomalies: days of baseline before the episodes (default 2); other scenarios: days to simulate")
		cmd.Flags().StringVar(&out, "out", "simulated", "output directory")
		cmd.Flags().Bool("gzip", false, "compress the capture (capture.pcap.gz)")
		return cmd
	})
}

func simulateTo(log io.Writer, dir string, o simulate.Options, gz bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := filepath.Join(dir, "capture.pcap")
	if gz {
		name += ".gz"
	}
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer f.Close()
	var w io.Writer = f
	var z *gzip.Writer
	if gz {
		z = gzip.NewWriter(f)
		w = z
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	pw, err := simulate.NewPcapWriter(bw)
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := simulate.Run(o, pw.Add)
	if err != nil {
		return err
	}
	if err := pw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if z != nil {
		if err := z.Close(); err != nil {
			return err
		}
	}
	if err := simulate.WriteFiles(dir, o, res, res.Called); err != nil {
		return err
	}
	st, _ := f.Stat()
	fmt.Fprintf(log, "simulated %s: %d exchanges, %d services, %d labelled episodes, %.1f MB capture in %s (%s)\n",
		o.Scenario, res.Exchanges, len(res.Services), len(res.Labels), float64(st.Size())/1e6,
		time.Since(start).Round(time.Millisecond), dir)
	return nil
}
