package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/spf13/cobra"

	"github.com/apiscout/apiscout/internal/kafkaconf"
	"github.com/apiscout/apiscout/wire"
)

func init() {
	register(func() *cobra.Command {
		c := &cobra.Command{Use: "kafka", Short: "Inspect the Kafka topic between sensors and analyzers"}
		var n int
		var fromStart bool
		tail := &cobra.Command{
			Use:   "tail",
			Short: "Print records from the topic as JSON lines (transactions and heartbeats)",
			Long: `Reads kafka.topic from every partition, without joining the analyzers'
consumer group (nothing is committed), and prints each record as one JSON
line; records that cannot be decoded are printed with their error.

  apiscout kafka tail --kafka.brokers 127.0.0.1:9092 -n 10 --from-beginning`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				cfg, err := loadConfig(cmd)
				if err != nil {
					return err
				}
				dialer, err := kafkaconf.Dialer(cfg.Kafka, "apiscout-tail")
				if err != nil {
					return err
				}
				conn, err := dialer.DialContext(cmd.Context(), "tcp", cfg.Kafka.Brokers[0])
				if err != nil {
					return fmt.Errorf("kafka %s: %w", cfg.Kafka.Brokers[0], err)
				}
				parts, err := conn.ReadPartitions(cfg.Kafka.Topic)
				conn.Close()
				if err != nil {
					return fmt.Errorf("topic %s: %w", cfg.Kafka.Topic, err)
				}
				ctx, cancel := context.WithCancel(cmd.Context())
				defer cancel()
				out := make(chan kafka.Message)
				for _, p := range parts {
					r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Kafka.Brokers, Topic: cfg.Kafka.Topic,
						Partition: p.ID, Dialer: dialer, MaxWait: 200 * time.Millisecond})
					if fromStart {
						r.SetOffset(kafka.FirstOffset)
					} else {
						r.SetOffset(kafka.LastOffset)
					}
					go func() {
						defer r.Close()
						for {
							m, err := r.ReadMessage(ctx)
							if err != nil {
								return
							}
							select {
							case out <- m:
							case <-ctx.Done():
								return
							}
						}
					}()
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				for i := 0; n <= 0 || i < n; i++ {
					select {
					case <-ctx.Done():
						return nil
					case m := <-out:
						enc.Encode(render(m))
					}
				}
				return nil
			},
		}
		tail.Flags().IntVarP(&n, "number", "n", 0, "stop after this many records (0: follow)")
		tail.Flags().BoolVar(&fromStart, "from-beginning", false, "start at the oldest record instead of the newest")
		bindConfig(tail, "kafka")
		c.AddCommand(tail)
		return c
	})
}

// render gives one record's JSON form, with its position and headers.
func render(m kafka.Message) map[string]any {
	rec := map[string]any{"partition": m.Partition, "offset": m.Offset, "key": string(m.Key)}
	ct := ""
	for _, h := range m.Headers {
		if h.Key == wire.HeaderContentType {
			ct = string(h.Value)
		}
		if h.Key == wire.HeaderSchema {
			rec["schema"], _ = strconv.Atoi(string(h.Value))
		}
	}
	switch ct {
	case wire.ContentTypeHeartbeat:
		var hb wire.Heartbeat
		if err := wire.DecodeHeartbeat(m.Value, &hb); err != nil {
			rec["error"] = err.Error()
		} else {
			rec["heartbeat"] = hb
		}
	default:
		var tx wire.Transaction
		if err := wire.DecodeTransaction(m.Value, &tx); err != nil {
			rec["error"] = err.Error()
		} else {
			rec["transaction"] = tx
		}
	}
	return rec
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
