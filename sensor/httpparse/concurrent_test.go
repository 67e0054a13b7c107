package httpparse

import (
	"bytes"
	"sync"
	"testing"

	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// TestSharedFactory: reassembly workers share one factory (its metrics,
// decoder and buffer pools); connections on different goroutines must
// not interfere (run with -race).
func TestSharedFactory(t *testing.T) {
	sc := loadCase(t, "testdata/enc_gzip_chunked.case")
	f := NewFactory(Options{}, nil, NewMetrics(nil))
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				var got []*wire.Transaction
				p := f(stream.ConnInfo{ID: uint64(i)}, func(tx *wire.Transaction) { got = append(got, tx) })
				for _, e := range sc.events {
					if e.kind == "data" {
						p.Data(e.dir, e.data, t0)
					}
				}
				p.Close("fin", t0)
				if len(got) != 1 || !bytes.Equal(got[0].ResponseBody, jsonBody) {
					errs <- "wrong record under concurrency"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}
