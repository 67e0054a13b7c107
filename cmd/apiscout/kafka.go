package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
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
				parts, err := kafkaconf.TopicPartitions(conn, cfg.Kafka.Topic)
				conn.Close()
				if err != nil {
					return fmt.Errorf("topic %s: %w", cfg.Kafka.Topic, err)
				}
				if len(parts) == 0 {
					return fmt.Errorf("topic %s does not exist on %s", cfg.Kafka.Topic, cfg.Kafka.Brokers[0])
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
				for i := 0; n <= 0 || i < n; {
					select {
					case <-ctx.Done():
						return nil
					case m := <-out:
						for _, line := range render(m) {
							if err := enc.Encode(line); err != nil {
								return err
							}
							if i++; n > 0 && i >= n {
								return nil
							}
						}
					}
				}
				return nil
			},
		}
		tail.Flags().IntVarP(&n, "number", "n", 0, "stop after this many records (0: follow)")
		tail.Flags().BoolVar(&fromStart, "from-beginning", false, "start at the oldest record instead of the newest")
		bindConfig(tail, "kafka")
		c.AddCommand(tail, topicsCmd())
		return c
	})
}

// topicsCmd lists the topics with their partitions and record counts, and
// creates apiscout's when asked.
func topicsCmd() *cobra.Command {
	var create bool
	cmd := &cobra.Command{
		Use:   "topics",
		Short: "List the broker's topics (partitions, records held); --create makes apiscout's",
		Long: `Lists every topic but Kafka's internal ones, with its partition count and
the records its partitions hold (end offset minus start offset), one line
each. With --create, kafka.topic and kafka.dead_letter_topic are created
first with kafka.partitions partitions when missing.

  apiscout kafka topics --kafka.brokers 127.0.0.1:9092 --create`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			k := cfg.Kafka
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			if create {
				for _, t := range []string{k.Topic, k.DeadLetterTopic} {
					if err := kafkaconf.EnsureTopic(ctx, k, t); err != nil {
						return fmt.Errorf("create %s: %w", t, err)
					}
				}
			}
			dialer, err := kafkaconf.Dialer(k, "apiscout-topics")
			if err != nil {
				return err
			}
			conn, err := dialer.DialContext(ctx, "tcp", k.Brokers[0])
			if err != nil {
				return fmt.Errorf("kafka %s: %w", k.Brokers[0], err)
			}
			parts, err := conn.ReadPartitions()
			conn.Close()
			if err != nil {
				return fmt.Errorf("kafka %s: partitions: %w", k.Brokers[0], err)
			}
			byTopic := map[string][]kafka.OffsetRequest{}
			for _, p := range parts {
				if strings.HasPrefix(p.Topic, "__") {
					continue
				}
				byTopic[p.Topic] = append(byTopic[p.Topic], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
			}
			tr, err := kafkaconf.Transport(k, "apiscout-topics")
			if err != nil {
				return err
			}
			client := &kafka.Client{Addr: kafka.TCP(k.Brokers...), Transport: tr, Timeout: 10 * time.Second}
			res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: byTopic})
			if err != nil {
				return fmt.Errorf("kafka offsets: %w", err)
			}
			names := make([]string, 0, len(byTopic))
			for t := range byTopic {
				names = append(names, t)
			}
			sort.Strings(names)
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%-40s %10s %14s\n", "TOPIC", "PARTITIONS", "RECORDS")
			for _, t := range names {
				var held int64
				for _, po := range res.Topics[t] {
					if po.Error == nil {
						held += po.LastOffset - po.FirstOffset
					}
				}
				fmt.Fprintf(out, "%-40s %10d %14d\n", t, len(byTopic[t])/2, held)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&create, "create", false, "create kafka.topic and kafka.dead_letter_topic with kafka.partitions partitions when missing")
	bindConfig(cmd, "kafka")
	return cmd
}

// render gives a Kafka record's JSON form: one line per transaction (a
// pack gives several, each with its index), with the record's position,
// key, schema and origin.
func render(m kafka.Message) []map[string]any {
	base := map[string]any{"partition": m.Partition, "offset": m.Offset, "key": string(m.Key)}
	ct := ""
	for _, h := range m.Headers {
		switch h.Key {
		case wire.HeaderContentType:
			ct = string(h.Value)
		case wire.HeaderSchema:
			base["schema"], _ = strconv.Atoi(string(h.Value))
		case wire.HeaderOrigin:
			if o, err := wire.DecodeOrigin(h.Value); err == nil {
				base["origin"] = map[string]any{"epoch": o.Epoch, "partition": o.Partition, "seq": o.PartitionSeq}
			}
		}
	}
	with := func(k string, v any) map[string]any {
		rec := make(map[string]any, len(base)+1)
		for bk, bv := range base {
			rec[bk] = bv
		}
		rec[k] = v
		return rec
	}
	switch ct {
	case wire.ContentTypeHeartbeat:
		var hb wire.Heartbeat
		if err := wire.DecodeHeartbeat(m.Value, &hb); err != nil {
			return []map[string]any{with("error", err.Error())}
		}
		return []map[string]any{with("heartbeat", hb)}
	case wire.ContentTypeTransactions:
		var out []map[string]any
		err := wire.WalkPack(m.Value, func(raw []byte) error {
			var tx wire.Transaction
			if err := wire.DecodeTransaction(raw, &tx); err != nil {
				out = append(out, with("error", err.Error()))
			} else {
				rec := with("transaction", tx)
				rec["index"] = len(out)
				out = append(out, rec)
			}
			return nil
		})
		if err != nil {
			out = append(out, with("error", err.Error()))
		}
		return out
	default:
		var tx wire.Transaction
		if err := wire.DecodeTransaction(m.Value, &tx); err != nil {
			return []map[string]any{with("error", err.Error())}
		}
		return []map[string]any{with("transaction", tx)}
	}
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
