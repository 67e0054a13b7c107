package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/kafkatest"
	"github.com/apiscout/apiscout/sensor/publish"
	"github.com/apiscout/apiscout/wire"
)

// apiscout kafka tail prints every transaction of a topic, packed or not,
// and heartbeats, as JSON lines with their position and origin.
func TestKafkaTail(t *testing.T) {
	addr := kafkatest.Broker(t)
	for _, pack := range []int{0, 64 << 10} {
		t.Run(fmt.Sprint("pack_bytes=", pack), func(t *testing.T) {
			topic := kafkatest.Topic(t, addr, 2)
			cfg := config.Default().Kafka
			cfg.Brokers, cfg.Topic, cfg.PackBytes = []string{addr}, topic, pack
			p, err := publish.New(cfg, "tail-sensor", zap.NewNop(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var recs []*wire.Transaction
			for i := 1; i <= 6; i++ {
				recs = append(recs, &wire.Transaction{Seq: uint64(i), Method: "GET", Host: fmt.Sprintf("svc%d.test", i%2),
					Path: fmt.Sprintf("/p/%d", i), Status: 200, RequestStart: time.Unix(1700000000, 0).UTC()})
			}
			if err := p.Write(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			if err := p.WriteHeartbeat(context.Background(), &wire.Heartbeat{Seq: 1, Transactions: 6}); err != nil {
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			root := newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs([]string{"kafka", "tail", "--kafka.brokers", addr, "--kafka.topic", topic, "-n", "7", "--from-beginning"})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := root.ExecuteContext(ctx); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			paths := map[string]bool{}
			heartbeats := 0
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				var rec struct {
					Origin      *struct{ Seq uint64 } `json:"origin"`
					Transaction *wire.Transaction     `json:"transaction"`
					Heartbeat   *wire.Heartbeat       `json:"heartbeat"`
					Error       string                `json:"error"`
				}
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("not a JSON line: %q: %v", line, err)
				}
				if rec.Error != "" || rec.Origin == nil || rec.Origin.Seq == 0 {
					t.Fatalf("line %s: error or no origin", line)
				}
				switch {
				case rec.Transaction != nil:
					if rec.Transaction.SensorID != "tail-sensor" {
						t.Errorf("sensor id %q", rec.Transaction.SensorID)
					}
					paths[rec.Transaction.Path] = true
				case rec.Heartbeat != nil:
					heartbeats++
				}
			}
			if len(paths) != 6 || heartbeats != 1 {
				t.Fatalf("%d distinct transactions and %d heartbeats printed, want 6 and 1:\n%s", len(paths), heartbeats, out.String())
			}
		})
	}
}

// apiscout kafka topics --create makes apiscout's topics with
// kafka.partitions partitions (not the broker's default) and lists them
// with the records they hold.
func TestKafkaTopics(t *testing.T) {
	addr := kafkatest.Broker(t)
	topic := fmt.Sprintf("test-topics-%d", time.Now().UnixNano())
	run := func(args ...string) string {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"kafka", "topics", "--kafka.brokers", addr, "--kafka.topic", topic,
			"--kafka.dead_letter_topic", topic + "-dlq", "--kafka.partitions", "3"}, args...))
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		return out.String()
	}
	run("--create")
	cfg := config.Default().Kafka
	cfg.Brokers, cfg.Topic, cfg.PackBytes = []string{addr}, topic, 0
	p, err := publish.New(cfg, "topics", zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*wire.Transaction
	for i := 1; i <= 5; i++ {
		recs = append(recs, &wire.Transaction{Method: "GET", Host: "h.test", Path: "/", RequestStart: time.Unix(1, 0)})
	}
	if err := p.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	out := run()
	for _, want := range [][]string{{topic, "3", "5"}, {topic + "-dlq", "3", "0"}} {
		found := false
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == want[0] {
				found = true
				if f[1] != want[1] || f[2] != want[2] {
					t.Errorf("%s: %v partitions and records, want %v", want[0], f[1:], want[1:])
				}
			}
		}
		if !found {
			t.Errorf("%s not listed:\n%s", want[0], out)
		}
	}
}
