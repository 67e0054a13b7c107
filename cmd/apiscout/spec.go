package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

func init() {
	register(func() *cobra.Command {
		c := &cobra.Command{Use: "spec", Short: "Export the OpenAPI reconstructed from traffic, or diff it with a spec"}
		for _, verb := range []string{"export", "diff"} {
			var service string
			var jsonl []string
			short := "Print the OpenAPI 3 document reconstructed from a service's traffic"
			if verb == "diff" {
				short = "Print how a service's traffic differs from its spec: shadow, zombie, orphan, drift"
			}
			cmd := &cobra.Command{
				Use:     verb,
				Short:   short,
				Example: "  apiscout spec " + verb + " --pcap capture.pcap --spec specs/ --service api.shop.example",
				Args:    cobra.NoArgs,
				RunE: func(cmd *cobra.Command, _ []string) error {
					if service == "" {
						return errors.New("--service HOST is required")
					}
					a, err := newApp(cmd)
					if err != nil {
						return err
					}
					eng, _, err := analyzeInput(cmd, a, jsonl)
					if err != nil {
						return err
					}
					if verb == "export" {
						doc, err := eng.Spec(service)
						if err != nil {
							return err
						}
						_, err = cmd.OutOrStdout().Write(doc)
						return err
					}
					d, err := eng.Diff(service)
					if err != nil {
						return err
					}
					if d.Spec == "" {
						return fmt.Errorf("no spec is bound to %s: give --spec FILE (its servers, or its file name, must name the host)", service)
					}
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					return enc.Encode(d)
				},
			}
			cmd.Flags().StringVar(&service, "service", "", "service host")
			cmd.Flags().StringSliceVar(&jsonl, "jsonl", nil, "read the sensor's jsonl output")
			bindConfig(cmd, "log", "sensor", "analyzer", "detect")
			aliasFlag(cmd, "pcap", "sensor.pcap", "capture files to analyze")
			aliasFlag(cmd, "spec", "analyzer.specs", "OpenAPI/Swagger files or directories")
			c.AddCommand(cmd)
		}
		return c
	})
}
