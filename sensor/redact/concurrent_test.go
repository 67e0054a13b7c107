package redact

import (
	"sync"
	"testing"

	"github.com/apiscout/apiscout/wire"
)

// TestConcurrentApply: one Redactor serves every worker (run with -race).
func TestConcurrentApply(t *testing.T) {
	r := newTest(t, nil)
	want := "Bearer " + fp("tok")
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				tx := &wire.Transaction{RequestHeaders: []wire.Header{{Name: "Authorization", Value: "Bearer tok"}}}
				r.Apply(tx)
				if tx.RequestHeaders[0].Value != want {
					t.Errorf("got %q", tx.RequestHeaders[0].Value)
					return
				}
			}
		}()
	}
	wg.Wait()
}
