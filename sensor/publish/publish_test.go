package publish

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/kafkatest"
	"github.com/apiscout/apiscout/wire"
)

func record(seq uint64, body int) *wire.Transaction {
	return &wire.Transaction{SensorID: "t", Seq: seq, Method: "GET", Host: fmt.Sprintf("svc%d.test", seq%3), Path: "/x",
		RequestStart: time.Unix(1700000000, 0).UTC(), Client: netip.MustParseAddrPort("10.0.0.1:1000"),
		Server: netip.MustParseAddrPort("10.0.0.2:80"), ResponseBody: make([]byte, body)}
}

func dropped(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "apiscout_kafka_records_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// Both writers ask for acknowledgement by every in-sync replica, which
// kafka-go's zero value does not; "one" and "none" are explicit choices.
func TestRequiredAcks(t *testing.T) {
	addr := kafkatest.Broker(t)
	for name, want := range map[string]kafka.RequiredAcks{"all": kafka.RequireAll, "one": kafka.RequireOne, "none": kafka.RequireNone} {
		cfg := config.Default().Kafka
		cfg.Brokers, cfg.Topic, cfg.RequiredAcks = []string{addr}, kafkatest.Topic(t, addr, 1), name
		p, err := New(cfg, "acks", zap.NewNop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.w.RequiredAcks != want || p.rw.RequiredAcks != want || p.RequiredAcks() != want {
			t.Errorf("required_acks %s: writers ask for %v and %v", name, p.w.RequiredAcks, p.rw.RequiredAcks)
		}
		if err := p.Write(context.Background(), []*wire.Transaction{record(1, 10)}); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("required_acks %s: %v", name, err)
		}
		if err := p.Write(context.Background(), []*wire.Transaction{record(2, 10)}); !errors.Is(err, ErrClosed) {
			t.Fatalf("write after close: %v", err)
		}
	}
	if def := config.Default().Kafka.RequiredAcks; def != "all" {
		t.Fatalf("default kafka.required_acks is %q", def)
	}
}

// With Kafka unreachable, records go to the spool until it is full; past
// that they are dropped, counted by reason and reported, and the spool
// stays within its limit. A record larger than a batch may be is dropped
// before it reaches Kafka or the spool.
func TestSpoolFullAndTooLarge(t *testing.T) {
	cfg := config.Default().Kafka
	cfg.Brokers = []string{"127.0.0.1:1"} // nothing listens: every write fails
	cfg.Topic = "unreachable"
	cfg.MaxAttempts = 1
	cfg.SpoolDir = filepath.Join(t.TempDir(), "spool")
	cfg.SpoolBytes = 256 << 10
	reg := prometheus.NewRegistry()
	p, err := New(cfg, "full", zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	err = p.Write(context.Background(), []*wire.Transaction{record(1, int(cfg.BatchBytes)+1)})
	if err == nil || !strings.Contains(err.Error(), "kafka.batch_bytes") {
		t.Fatalf("a record over kafka.batch_bytes: %v", err)
	}
	if n := dropped(t, reg, DropTooLarge); n != 1 {
		t.Fatalf("%v dropped as too large", n)
	}

	var full error
	seq := uint64(1)
	for i := 0; i < 100 && full == nil; i++ {
		var recs []*wire.Transaction
		for j := 0; j < 50; j++ {
			seq++
			recs = append(recs, record(seq, 1000))
		}
		full = p.Write(context.Background(), recs)
	}
	if full == nil || !strings.Contains(full.Error(), "spool") {
		t.Fatalf("a full spool: %v", full)
	}
	if n := dropped(t, reg, DropSpoolFull); n == 0 {
		t.Fatal("nothing counted as dropped for a full spool")
	}
	if n, b := p.spool.Len(); n == 0 || b > cfg.SpoolBytes {
		t.Fatalf("spool holds %d records in %d bytes, limit %d", n, b, cfg.SpoolBytes)
	}
}
