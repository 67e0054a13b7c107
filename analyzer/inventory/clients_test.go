package inventory

import (
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"
)

// Distinct clients are exact while few and estimated within about 2%
// when many, in bounded memory: a client flood spread over every endpoint
// of a service (5000 of them) must not hold every address it sent.
func TestDistinctClients(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, n := range []int{1, 3, 100, 2000} {
		e := NewEndpointState("s", "GET", "/a", "http", t0)
		for i := range n {
			e.Add(&Call{Time: t0, Client: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)})
			e.Add(&Call{Time: t0, Client: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)}) // again
		}
		if got := e.Snapshot().Detail.(Detail).Clients; got != n {
			t.Errorf("%d distinct clients counted as %d", n, got)
		}
	}

	const flood = 200_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e := NewEndpointState("s", "GET", "/a", "http", t0)
	for i := range flood {
		e.Add(&Call{Time: t0, Client: fmt.Sprintf("2001:db8::%x", i)})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	got := e.Snapshot().Detail.(Detail).Clients
	if math.Abs(float64(got-flood))/flood > 0.02 {
		t.Errorf("%d distinct clients estimated as %d (more than 2%% off)", flood, got)
	}
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if held > 256<<10 {
		t.Errorf("an endpoint called by %d clients holds %d KiB; want it bounded (< 256 KiB)", flood, held>>10)
	}
	runtime.KeepAlive(e)

	// Merging endpoints (a template generalised) unites their clients.
	a, b := NewEndpointState("s", "GET", "/a", "http", t0), NewEndpointState("s", "GET", "/b", "http", t0)
	for i := range 50 {
		a.Add(&Call{Time: t0, Client: fmt.Sprint("c", i)})
		b.Add(&Call{Time: t0, Client: fmt.Sprint("c", i+25)})
	}
	a.Merge(b)
	if got := a.Snapshot().Detail.(Detail).Clients; got != 75 {
		t.Errorf("merged clients: %d, want 75", got)
	}
}
