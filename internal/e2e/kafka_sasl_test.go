package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/kafkatest"
	"github.com/apiscout/apiscout/sensor/publish"
	"github.com/apiscout/apiscout/wire"
)

// The sensor and the analyzer authenticate with SASL PLAIN, SCRAM-SHA-256
// and SCRAM-SHA-512 against a real broker's SASL listener (users from
// deploy/dev/kafka.sh), and a wrong password is refused, not ignored.
func TestSASL(t *testing.T) {
	kafkatest.Broker(t) // the suite's broker must be up too; this test runs its own
	b := kafkatest.StartPrivate(t, 19292, "KAFKA_SASL_PORT=19294")
	sasl := "127.0.0.1:19294"
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			topic := kafkatest.Topic(t, b.Addr, 2)
			cfg := kcfg(sasl, topic)
			cfg.SASLMechanism, cfg.SASLUser, cfg.SASLPassword = mech, "apiscout", "apiscout-secret"
			p, err := publish.New(cfg, "sasl", zap.NewNop(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var recs []*wire.Transaction
			for i := 1; i <= 50; i++ {
				recs = append(recs, tx("sasl", uint64(i), fmt.Sprintf("svc%d.test", i%3)))
			}
			if err := p.Write(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			p.Close()
			col := newCollector()
			consumeUntil(t, cfg, col, func() bool { return col.count() == 50 })

			bad := cfg
			bad.SASLPassword, bad.MaxAttempts = "wrong", 1
			q, err := publish.New(bad, "sasl-bad", zap.NewNop(), nil)
			if err != nil {
				t.Fatal(err)
			}
			err = q.Write(ctx, recs[:1])
			if err == nil {
				err = q.Flush(ctx)
			}
			q.Close()
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authentication") {
				t.Fatalf("a wrong password: %v", err)
			}
		})
	}
}
