// Command apiscout is a passive API discovery and anomaly sensor: it reads
// mirrored traffic, finds every HTTP API in use, compares it with the
// OpenAPI specs, learns what normal looks like and raises alerts.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(int(ee))
		}
		fmt.Fprintln(os.Stderr, "apiscout:", err)
		os.Exit(1)
	}
}

// exitError ends the process with a code and no message (the command has
// already said why).
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "apiscout",
		Short: "Passive API discovery and anomaly detection from mirrored traffic",
		Long: `apiscout watches mirrored network traffic (a span port, a cloud traffic
mirror or a capture file) and, without touching the applications:

  - finds every HTTP API really in use, endpoint by endpoint;
  - shows which endpoints are undocumented (shadow), deprecated but still
    called (zombie), or drifting from their OpenAPI spec;
  - learns what normal traffic looks like and alerts when it changes.

Start here:
  apiscout run --sensor.pcap demo.pcap   one process, web UI on 127.0.0.1:8080
  apiscout analyze --pcap FILE --out DIR offline audit of a capture
  apiscout sensor --sensor.interface eth1 --sensor.output kafka
  apiscout analyzer                       consume from Kafka, store in ClickHouse

Every setting can come from a YAML file (--config), an APISCOUT_* variable
or a flag, in that order of precedence (flags win). "apiscout config keys"
lists them all.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringP("config", "c", "", "YAML configuration file")
	for _, c := range commands {
		root.AddCommand(c())
	}
	return root
}

// commands collects the subcommands; each file of this package registers
// its own in an init function, so that adding a command touches one file.
var commands []func() *cobra.Command

func register(c func() *cobra.Command) { commands = append(commands, c) }
