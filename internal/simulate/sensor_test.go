package simulate

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/sensor"
	"github.com/apiscout/apiscout/wire"
)

type collect struct {
	mu  sync.Mutex
	txs []*wire.Transaction
}

func (c *collect) Write(_ context.Context, recs []*wire.Transaction) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.txs = append(c.txs, recs...)
	return nil
}
func (c *collect) Close() error { return nil }

// The real sensor reading the capture reports, field for field, the
// transactions ToTransaction gives for the same exchanges: the fast path
// the analyzer's tests take is what a capture would have given them.
func TestSensorAgreesWithToTransaction(t *testing.T) {
	for _, o := range []Options{
		{Scenario: "demo", Seed: 6, Duration: 3 * time.Minute},
		{Scenario: "bench", Seed: 6, SizeMB: 2},
	} {
		t.Run(o.Scenario, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "capture.pcap")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			bw := bufio.NewWriter(f)
			pw, err := NewPcapWriter(bw)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]*wire.Transaction{}
			i := 0
			if _, err := Run(o, func(ex *Exchange) error {
				if i++; i%7 == 0 && len(ex.RespBody) > 100 {
					ex.Loss = len(ex.RespBody) / 3
				}
				tx := ToTransaction(ex)
				want[tx.Client.String()+" "+tx.RequestStart.Format(time.RFC3339Nano)] = tx
				return pw.Add(ex)
			}); err != nil {
				t.Fatal(err)
			}
			if err := pw.Close(); err != nil {
				t.Fatal(err)
			}
			bw.Flush()
			f.Close()

			cfg := config.Default().Sensor
			cfg.Pcap = []string{path}
			cfg.Progress = false
			cfg.RedactKey = RedactKey
			cfg.MaskBodies = false
			var sink collect
			p, err := sensor.New(cfg, zap.NewNop(), prometheus.NewRegistry(), &sink)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(sink.txs) != len(want) {
				t.Errorf("sensor reported %d transactions, %d generated", len(sink.txs), len(want))
			}
			diffs, gaps := map[string]int{}, 0
			example := map[string]string{}
			for _, got := range sink.txs {
				k := got.Client.String() + " " + got.RequestStart.Format(time.RFC3339Nano)
				w := want[k]
				if w == nil {
					diffs["unmatched"]++
					continue
				}
				if w.Flags.Has(wire.FlagGap) {
					gaps++
				}
				// Fields only the sensor knows.
				g := *got
				g.SensorID, g.Seq, g.ConnID, g.Mirror, g.Extra = w.SensorID, w.Seq, w.ConnID, w.Mirror, w.Extra
				gv, wv := reflect.ValueOf(g), reflect.ValueOf(*w)
				for fi := 0; fi < gv.NumField(); fi++ {
					name := gv.Type().Field(fi).Name
					a, b := gv.Field(fi).Interface(), wv.Field(fi).Interface()
					switch name {
					case "RequestBody", "ResponseBody", "ResponseBodyLen", "ResponseEnd", "CaptureLoss":
						// Past a hole the sensor cannot know the body, its
						// decoded length or where the message ends; and it
						// declares the hole's bytes (CaptureLoss) only once
						// the transaction has left. The gap flag is compared.
						if w.Flags.Has(wire.FlagGap) {
							continue
						}
					}
					if name == "RequestBody" || name == "ResponseBody" {
						if len(a.([]byte)) == 0 && len(b.([]byte)) == 0 {
							continue
						}
					}
					if name == "RequestHeaders" || name == "ResponseHeaders" {
						if len(a.([]wire.Header)) == 0 && len(b.([]wire.Header)) == 0 {
							continue
						}
					}
					if !reflect.DeepEqual(a, b) {
						diffs[name]++
						if example[name] == "" {
							example[name] = fmt.Sprintf("sensor %v\n    generated %v", a, b)
						}
					}
				}
			}
			if gaps == 0 {
				t.Error("no transaction with a gap compared")
			}
			for name, n := range diffs {
				t.Errorf("%s differs on %d of %d transactions; first:\n    %s", name, n, len(sink.txs), example[name])
			}
		})
	}
}
