package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/apiscout/apiscout/internal/config"
)

func init() {
	register(func() *cobra.Command {
		c := &cobra.Command{Use: "config", Short: "Check a configuration file or list every setting"}
		c.AddCommand(&cobra.Command{
			Use:   "check FILE",
			Short: "Validate FILE strictly (unknown keys, wrong types and bad values name their line or key)",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := config.Load(args[0], nil); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
				return nil
			},
		})
		c.AddCommand(&cobra.Command{
			Use:   "keys",
			Short: "List every setting with its flag, environment variable, default and meaning",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				d := config.Default()
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
				fmt.Fprintln(w, "KEY\tENVIRONMENT\tTYPE\tDEFAULT\tMEANING")
				for _, f := range config.Fields(&d) {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", f.Key, f.Env, f.Type(), f.Value(), f.Help)
				}
				return w.Flush()
			},
		})
		c.AddCommand(&cobra.Command{
			Use:   "defaults",
			Short: "Print the default configuration as YAML (a starting point for a file)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				enc := yaml.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent(2)
				return enc.Encode(config.Default())
			},
		})
		return c
	})
}
