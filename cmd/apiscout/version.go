package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/apiscout/apiscout/wire"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func init() {
	register(func() *cobra.Command {
		return &cobra.Command{
			Use:   "version",
			Short: "Print the version, the wire schema version and the Go version",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				rev := ""
				if bi, ok := debug.ReadBuildInfo(); ok {
					for _, s := range bi.Settings {
						if s.Key == "vcs.revision" && len(s.Value) >= 12 {
							rev = " (" + s.Value[:12] + ")"
						}
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "apiscout %s%s wire-schema %d %s %s/%s\n",
					version, rev, wire.SchemaVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
				return nil
			},
		}
	})
}
