package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/apiscout/apiscout/analyzer"
	"github.com/apiscout/apiscout/analyzer/checkpoint"
	"github.com/apiscout/apiscout/analyzer/consume"
	"github.com/apiscout/apiscout/analyzer/ingest"
	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/storage/embedded"
	"github.com/apiscout/apiscout/wire"
)

// The analyzer commits a partition to its end when its last records carry
// nothing to apply (a heartbeat, dead letters): before, offsets were
// committed only as far as a saved checkpoint, which such records never
// move, so a heartbeat-only partition lagged for ever and a restarted
// analyzer read its dead letters, and dead-lettered them, again.
func TestNothingToApplyIsCommitted(t *testing.T) {
	addr, cfg, w := deadLetterSetup(t)
	var msgs []kafka.Message
	for seq := uint64(1); seq <= 3; seq++ {
		msgs = append(msgs, kafka.Message{Key: []byte("a.test"), Value: wire.AppendTransaction(nil, tx("s8", seq, "a.test")),
			Headers: contentType(wire.ContentTypeTransaction)})
	}
	hb := wire.AppendHeartbeat(nil, &wire.Heartbeat{SensorID: "s8", Seq: 1, Time: time.Unix(1700000001, 0).UTC()})
	msgs = append(msgs,
		kafka.Message{Key: []byte("s8"), Value: hb, Headers: contentType(wire.ContentTypeHeartbeat)},
		kafka.Message{Key: []byte("a.test"), Value: []byte{0xff, 0xff, 0xff}, Headers: contentType(wire.ContentTypeTransaction)},
		kafka.Message{Key: []byte("a.test"), Value: []byte("?"), Headers: contentType("text/x-mystery")})
	writeRetry(t, w, msgs...)
	const end = 6

	store, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "state.db")}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	eng, err := analyzer.New(analyzer.Options{Config: config.Default().Analyzer})
	if err != nil {
		t.Fatal(err)
	}
	an := ingest.New(eng, store, nil)
	// A save after every batch: the checkpoint covers the transactions as
	// soon as they are applied, the rest is up to Durable and Passed.
	if err := an.Keep(eng, store, checkpoint.Options{Topic: cfg.Topic, Interval: time.Nanosecond}); err != nil {
		t.Fatal(err)
	}
	c, err := consume.New(cfg, consume.Options{MaxWait: 100 * time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, an.Durable()) }()

	client := &kafka.Client{Addr: kafka.TCP(addr)}
	committed := int64(-1)
	for committed < end && ctx.Err() == nil {
		resp, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: cfg.Group, Topics: map[string][]int{cfg.Topic: {0}}})
		if err == nil && len(resp.Topics[cfg.Topic]) == 1 {
			committed = resp.Topics[cfg.Topic][0].CommittedOffset
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if committed != end {
		t.Fatalf("committed offset %d, want %d (the end of the partition: a heartbeat and two dead letters follow the last transaction)", committed, end)
	}
	var calls int64
	for _, s := range eng.Services() {
		calls += s.Calls
	}
	if calls != 3 {
		t.Errorf("%d calls applied, want 3", calls)
	}
}
