package consume

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/wire"
)

func bare(t *testing.T, opts Options) (*Consumer, *metrics) {
	t.Helper()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return &Consumer{opts: opts, log: zap.NewNop(), m: m, streams: map[streamKey]uint64{}, lag: map[int]int64{}}, m
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// The dedupe window remembers the last DedupeWindow keys: a key seen
// within it is a duplicate, an older one is fresh again, and records
// without a sequence are never duplicates.
func TestDedupeWindow(t *testing.T) {
	c, _ := bare(t, Options{DedupeWindow: 4})
	k := func(seq uint64) seqKey { return seqKey{sensor: 1, epoch: 7, seq: seq} }
	for _, step := range []struct {
		key   seqKey
		fresh bool
	}{
		{k(1), true}, {k(2), true}, {k(1), false}, {k(3), true}, {k(4), true},
		{k(5), true}, // pushes 1 out of the window
		{k(1), true}, {k(5), false},
		{seqKey{sensor: 2, epoch: 7, seq: 5}, true}, // another sensor
		{seqKey{sensor: 1, epoch: 8, seq: 5}, true}, // the same sensor, restarted
		{seqKey{sensor: 1, epoch: 7, seq: 0}, true}, // no sequence
		{seqKey{sensor: 1, epoch: 7, seq: 0}, true},
		{seqKey{sensor: 1, epoch: 8, seq: 5, heartbeat: true}, true}, // heartbeats count apart
	} {
		if got := c.fresh(step.key); got != step.fresh {
			t.Fatalf("%+v: fresh %v, want %v", step.key, got, step.fresh)
		}
	}
}

// Gaps are judged per producer epoch and partition, from the first
// record seen; records behind the mark are reported so the caller can
// tell re-deliveries from late ones; a record the producer meant for
// another partition is not judged.
func TestSequence(t *testing.T) {
	c, m := bare(t, Options{MaxStreams: 2})
	msg := func(part int) *kafka.Message { return &kafka.Message{Partition: part} }
	o := func(epoch uint64, part int32, seq uint64) wire.Origin {
		return wire.Origin{Epoch: epoch, Partition: part, PartitionSeq: seq}
	}
	steps := []struct {
		part   int
		origin wire.Origin
		behind bool
		gaps   float64
	}{
		{0, o(1, 0, 10), false, 0}, // first seen: only the mark
		{0, o(1, 0, 11), false, 0},
		{0, o(1, 0, 14), false, 2}, // 12 and 13 missing
		{0, o(1, 0, 12), true, 2},  // behind: late or re-delivered
		{1, o(1, 1, 3), false, 2},  // another partition: its own mark
		{1, o(1, 1, 5), false, 3},
		{1, o(1, 0, 99), false, 3}, // meant for partition 0: not judged
		{0, o(1, 0, 0), false, 3},  // no numbering
		{0, o(2, 0, 50), false, 3}, // a third stream: the table starts over
		{0, o(1, 0, 40), false, 3}, // so this is a first sight again
	}
	for i, s := range steps {
		before := counterValue(t, m.gaps)
		behind, lost := c.sequence(msg(s.part), s.origin)
		if behind != s.behind {
			t.Fatalf("step %d: behind %v, want %v", i, behind, s.behind)
		}
		if g := counterValue(t, m.gaps); g != s.gaps || float64(lost) != g-before {
			t.Fatalf("step %d: %v gaps (%d told with the record), want %v", i, g, lost, s.gaps)
		}
	}
}
