package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/apiscout/apiscout/analyzer/inventory"
)

func init() {
	register(func() *cobra.Command {
		var from, format string
		var jsonl []string
		cmd := &cobra.Command{
			Use:   "inventory",
			Short: "Print the API inventory as a table (flags: shadow, zombie, unauthenticated, sensitive) or JSON",
			Long: `Prints services and endpoints from an audit folder written by
"apiscout analyze" (--from DIR), or analyzes captures on the spot (--pcap).

  apiscout inventory --from audit/
  apiscout inventory --pcap capture.pcap --spec specs/ --format json`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				var svcs []inventory.Service
				switch {
				case from != "":
					b, err := os.ReadFile(filepath.Join(from, "inventory.json"))
					if err != nil {
						return fmt.Errorf("%w (write it with apiscout analyze --out %s)", err, from)
					}
					var doc struct {
						Services []inventory.Service `json:"services"`
					}
					if err := json.Unmarshal(b, &doc); err != nil {
						return fmt.Errorf("%s: %w", from, err)
					}
					svcs = doc.Services
				default:
					a, err := newApp(cmd)
					if err != nil {
						return err
					}
					eng, _, err := analyzeInput(cmd, a, jsonl)
					if err != nil {
						return err
					}
					svcs = eng.Services()
				}
				return printInventory(cmd, svcs, format)
			},
		}
		cmd.Flags().StringVar(&from, "from", "", "audit folder written by apiscout analyze")
		cmd.Flags().StringVar(&format, "format", "table", "table or json")
		cmd.Flags().StringSliceVar(&jsonl, "jsonl", nil, "read the sensor's jsonl output")
		bindConfig(cmd, "log", "sensor", "analyzer", "detect")
		aliasFlag(cmd, "pcap", "sensor.pcap", "capture files to analyze")
		aliasFlag(cmd, "spec", "analyzer.specs", "OpenAPI/Swagger files or directories")
		return cmd
	})
}

func printInventory(cmd *cobra.Command, svcs []inventory.Service, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"services": svcs})
	case "table":
	default:
		return errors.New("--format: table or json")
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERVICE\tMETHOD\tPATH\tCLASS\tCALLS\tAUTH\tSENSITIVE\tFLAGS\tRISK")
	for _, s := range svcs {
		for _, e := range s.Endpoints {
			var flags []string
			switch e.Classification {
			case inventory.Shadow:
				flags = append(flags, "SHADOW")
			case inventory.Zombie:
				flags = append(flags, "ZOMBIE")
			case inventory.Orphan:
				flags = append(flags, "orphan")
			}
			if e.Unauthenticated {
				flags = append(flags, "UNAUTH")
			}
			if len(e.Sensitive) > 0 {
				flags = append(flags, "PII")
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%.0f\n", s.Host, e.Method, e.Path, e.Classification, e.Calls,
				strings.Join(e.Auth, ","), strings.Join(e.Sensitive, ","), strings.Join(flags, " "), e.RiskScore)
		}
	}
	return w.Flush()
}
