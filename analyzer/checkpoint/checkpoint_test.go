package checkpoint

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer"
	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/detect"
	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/storage/embedded"
	"github.com/apiscout/apiscout/wire"
)

// analyzerState is one analyzer: an engine and its keeper over a shared
// store, fed records of partitions as the consumer would hand them over.
type analyzerState struct {
	t   *testing.T
	eng *analyzer.Engine
	k   *Keeper
}

func newAnalyzer(t *testing.T, store Store) *analyzerState {
	t.Helper()
	eng, err := analyzer.New(analyzer.Options{Config: config.Default().Analyzer})
	if err != nil {
		t.Fatal(err)
	}
	k, err := New(eng, store, Options{Topic: "tx"})
	if err != nil {
		t.Fatal(err)
	}
	return &analyzerState{t: t, eng: eng, k: k}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// feed applies the records at offsets [from, to) of part, one
// transaction each, to host; it returns how many were applied.
func (a *analyzerState) feed(part int, host string, from, to int64, gen int64) int {
	a.t.Helper()
	n := 0
	for off := from; off < to; off++ {
		ok, err := a.k.Admit(context.Background(), part, off, 0, gen)
		if err != nil {
			a.t.Fatal(err)
		}
		if !ok {
			continue
		}
		a.eng.Process(call(host, off))
		a.k.Applied(part, host)
		n++
	}
	return n
}

func call(host string, off int64) *wire.Transaction {
	at := t0.Add(time.Duration(off) * time.Second)
	return &wire.Transaction{Host: host, Method: "GET", Path: fmt.Sprintf("/items/%d", 1000+off%7), Status: 200,
		RequestStart: at, RequestEnd: at.Add(time.Millisecond), ResponseStart: at.Add(time.Duration(5+off%20) * time.Millisecond),
		ResponseEnd: at.Add(30 * time.Millisecond)}
}

// calls is the inventory's count of host's calls.
func (a *analyzerState) calls(host string) int64 {
	for _, s := range a.eng.Services() {
		if s.Host == host {
			return s.Calls
		}
	}
	return 0
}

func (a *analyzerState) save() {
	a.t.Helper()
	if err := a.k.Save(context.Background()); err != nil {
		a.t.Fatal(err)
	}
}

func openStore(t *testing.T, path string) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(context.Background(), embedded.Options{Path: path}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A restarted analyzer restores the partition's services and skips what
// the checkpoint reflects: the counts carry on, none twice.
func TestRestartResumesWithoutDoubleCounting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	store := openStore(t, path)
	a := newAnalyzer(t, store)
	a.feed(0, "shop.example", 0, 10, 1)
	a.save()
	if got := a.k.Durable(); got[0] != 10 {
		t.Fatalf("durable after 10 records: %v, want partition 0 at 10", got)
	}
	a.feed(0, "shop.example", 10, 14, 1) // applied, not yet saved: Kafka is not committed past 10

	// The process dies; Kafka hands over everything after the commit (10),
	// and, as after a crash between a save and its commit, some before.
	b := newAnalyzer(t, openStore(t, path))
	if n := b.feed(0, "shop.example", 7, 20, 1); n != 10 {
		t.Errorf("applied %d records of 7..19 after the restart, want 10 (7..9 are in the checkpoint)", n)
	}
	if got := b.calls("shop.example"); got != 20 {
		t.Errorf("calls after restart: %d, want 20", got)
	}
	if len(b.eng.Services()[0].Endpoints) == 0 {
		t.Errorf("the restored service has no endpoints")
	}
}

// A partition that went to another analyzer and came back is restored
// from the other's checkpoint, not carried on from the stale state here.
func TestPartitionBackFromAnotherAnalyzer(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	a, b := newAnalyzer(t, store), newAnalyzer(t, store)
	a.feed(0, "pay.example", 0, 10, 1)
	a.feed(1, "shop.example", 0, 5, 1)
	a.save()

	// Generation 2: partition 0 moves to b, which carries on from a's
	// checkpoint and saves its own.
	if n := b.feed(0, "pay.example", 10, 15, 2); n != 5 {
		t.Fatalf("b applied %d of 10..14", n)
	}
	if got := b.calls("pay.example"); got != 15 {
		t.Fatalf("b restored and applied to %d calls, want 15", got)
	}
	b.save()

	// a still holds partition 1; partition 0 is not its own in the new
	// generation: it is neither saved nor committed by a.
	a.feed(1, "shop.example", 5, 6, 2)
	a.k.Applied(0, "pay.example") // even if marked changed
	if d := a.k.Durable(); len(d) != 1 || d[1] != 5 {
		t.Errorf("a's durable offsets in generation 2: %v, want only partition 1", d)
	}

	// Generation 3: partition 0 comes back to a.
	a.feed(0, "pay.example", 15, 16, 3)
	if got := a.calls("pay.example"); got != 16 {
		t.Errorf("a's calls after partition 0 came back: %d, want 16 (b's 15 and one)", got)
	}
	if got := a.calls("shop.example"); got != 6 {
		t.Errorf("partition 1's service was disturbed: %d calls, want 6", got)
	}
}

// A pack (several transactions in one Kafka record) counts as one
// offset: the checkpoint covers it whole.
func TestPacks(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := newAnalyzer(t, store)
	for i := range 3 {
		if ok, err := a.k.Admit(context.Background(), 2, 40, i, 1); err != nil || !ok {
			t.Fatalf("record 40/%d: %v %v", i, ok, err)
		}
		a.eng.Process(call("api.example", int64(i)))
		a.k.Applied(2, "api.example")
	}
	if ok, _ := a.k.Admit(context.Background(), 2, 40, 1, 1); ok {
		t.Errorf("record 40/1 admitted twice")
	}
	a.save()
	if d := a.k.Durable(); d[2] != 41 {
		t.Errorf("durable after pack at 40: %v, want 41", d)
	}
}

// Without Kafka the one checkpoint is restored at start and saved again.
func TestLocal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	a := newAnalyzer(t, openStore(t, path))
	if err := a.k.RestoreLocal(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.feed(Local, "shop.example", 0, 3, 0)
	a.save()
	b := newAnalyzer(t, openStore(t, path))
	if err := b.k.RestoreLocal(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := b.calls("shop.example"); got != 3 {
		t.Fatalf("restored %d calls, want 3", got)
	}
	b.feed(Local, "shop.example", 0, 2, 0) // no offsets: new traffic
	if got := b.calls("shop.example"); got != 5 {
		t.Errorf("calls after new traffic: %d, want 5", got)
	}
	if len(b.k.Durable()) != 0 {
		t.Errorf("the local partition has no Kafka offsets to commit: %v", b.k.Durable())
	}
}

// A store that cannot be read stops the batch rather than starting from
// an empty state.
func TestLoadFailureStopsTheBatch(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := newAnalyzer(t, store)
	store.Close()
	if ok, err := a.k.Admit(context.Background(), 0, 0, 0, 1); err == nil || ok {
		t.Errorf("Admit on a closed store: %v %v, want an error", ok, err)
	}
}

// The detectors' learned baselines travel with the inventory, so a
// restarted analyzer does not start learning again.
func TestBaselinesCarriedOver(t *testing.T) {
	cfg := config.Default()
	newEngine := func() (*analyzer.Engine, *detect.Set) { return detectingEngine(t, cfg) }
	path := filepath.Join(t.TempDir(), "state.db")
	eng, det := newEngine()
	k, err := New(eng, openStore(t, path), Options{Topic: "tx"})
	if err != nil {
		t.Fatal(err)
	}
	a := &analyzerState{t: t, eng: eng, k: k}
	a.feed(0, "shop.example", 0, 600, 1) // ten minutes: windows close, latencies are learned
	a.feed(0, "other.example", 0, 5, 1)
	a.save()

	eng2, det2 := newEngine()
	k2, err := New(eng2, openStore(t, path), Options{Topic: "tx"})
	if err != nil {
		t.Fatal(err)
	}
	b := &analyzerState{t: t, eng: eng2, k: k2}
	b.feed(0, "shop.example", 599, 600, 1) // restores, then skips the record it reflects
	learned := func(d *detect.Set) (n int, seen, lat int64) {
		for _, ep := range d.Baselines().Endpoints() {
			if ep.Key.Service != "shop.example" {
				continue
			}
			n++
			seen += ep.Seen
			if ep.Latency != nil {
				lat += int64(ep.Latency.GetCount())
			}
		}
		return n, seen, lat
	}
	n1, seen1, lat1 := learned(det)
	n2, seen2, lat2 := learned(det2)
	if n1 == 0 || lat1 == 0 {
		t.Fatalf("the first engine learned %d endpoints, %d latencies: the test feeds too little", n1, lat1)
	}
	if n2 != n1 || seen2 != seen1 || lat2 != lat1 {
		t.Errorf("restored baselines: %d endpoints, %d calls seen, %d latencies; want %d, %d, %d", n2, seen2, lat2, n1, seen1, lat1)
	}
	// Forget drops them with the inventory.
	eng2.Forget([]string{"shop.example"})
	if n, _, _ := learned(det2); n != 0 {
		t.Errorf("%d baselines of a forgotten service remain", n)
	}
}

// detectingEngine is an engine with the detectors of cfg.
func detectingEngine(t *testing.T, cfg config.Config) (*analyzer.Engine, *detect.Set) {
	t.Helper()
	det, err := detect.New(cfg.Detect, cfg.Analyzer, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	eng, err := analyzer.New(analyzer.Options{Config: cfg.Analyzer, Detectors: det})
	if err != nil {
		t.Fatal(err)
	}
	return eng, det
}

// An incident open when the analyzer stops goes on under its id after the
// restart: updated, not opened again (which would alert twice on one
// attack), and its endpoint's baseline stays frozen.
func TestOpenIncidentCarriedOver(t *testing.T) {
	cfg := config.Default()
	cfg.Analyzer.LearningPeriod, cfg.Analyzer.MinSupport = 10*time.Minute, 20
	const host = "shop.example"
	tx := func(off int64, authed bool) *wire.Transaction {
		c := call(host, off)
		c.Path = fmt.Sprintf("/orders/%d", 5000+off%40)
		c.RequestHeaders = []wire.Header{{Name: "Host", Value: host}}
		if authed {
			c.RequestHeaders = append(c.RequestHeaders, wire.Header{Name: "Authorization", Value: "Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0"})
		}
		return c
	}
	// run feeds offsets [from, to) of partition 0 and returns the
	// unauthenticated_access events reported.
	run := func(eng *analyzer.Engine, k *Keeper, from, to, unauthFrom int64) (evs []anomaly.Anomaly) {
		for off := from; off < to; off++ {
			ok, err := k.Admit(context.Background(), 0, off, 0, 1)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				continue
			}
			for _, a := range eng.Process(tx(off, off < unauthFrom)) {
				if a.Type == anomaly.TypeUnauthenticatedAccess {
					evs = append(evs, a)
				}
			}
			k.Applied(0, host)
		}
		return evs
	}
	path := filepath.Join(t.TempDir(), "state.db")
	eng, _ := detectingEngine(t, cfg)
	k, err := New(eng, openStore(t, path), Options{Topic: "tx"})
	if err != nil {
		t.Fatal(err)
	}
	// Thirty minutes of authenticated calls, then calls without credentials.
	before := run(eng, k, 0, 1860, 1800)
	if len(before) == 0 || before[0].Event != anomaly.EventOpened {
		t.Fatalf("before the restart: %+v, want an opened unauthenticated_access incident", before)
	}
	id := before[0].ID
	if err := k.Save(context.Background()); err != nil {
		t.Fatal(err)
	}

	eng2, det2 := detectingEngine(t, cfg)
	k2, err := New(eng2, openStore(t, path), Options{Topic: "tx"})
	if err != nil {
		t.Fatal(err)
	}
	after := run(eng2, k2, 1859, 1980, 1800)
	if len(after) == 0 {
		t.Fatal("no update of the ongoing incident after the restart")
	}
	for _, a := range after {
		if a.Event == anomaly.EventOpened || a.ID != id {
			t.Errorf("after the restart: %s incident %s, want updates of %s only", a.Event, a.ID, id)
		}
	}
	frozen := 0
	for _, ep := range det2.Baselines().Endpoints() {
		frozen += ep.Frozen
	}
	if frozen != 1 {
		t.Errorf("%d frozen baselines after the restart, want the incident's endpoint (1)", frozen)
	}
	// Forget hands the incident over without closing it, and unfreezes.
	eng2.Forget([]string{host})
	for _, a := range eng2.Advance(t0.Add(48 * time.Hour)) {
		if a.Host == host {
			t.Fatalf("an incident of a forgotten service was reported: %s %s %s", a.Event, a.Type, a.ID)
		}
	}
}

// Records that change no state (heartbeats, dead letters, duplicates)
// move the committable offset without a save, unless applied records wait
// for one: then the next save covers them all.
func TestRecordsWithoutStateAreCovered(t *testing.T) {
	a := newAnalyzer(t, openStore(t, filepath.Join(t.TempDir(), "state.db")))
	ctx := context.Background()
	a.feed(0, "shop.example", 0, 10, 1)
	a.save()
	if d := a.k.Durable()[0]; d != 10 {
		t.Fatalf("durable %d after saving records 0-9, want 10", d)
	}
	if ok, err := a.k.Admit(ctx, 0, 10, 0, 1); !ok || err != nil { // a heartbeat
		t.Fatalf("admit: %v %v", ok, err)
	}
	a.k.Passed(0, 11, 1) // dead letters
	a.k.Passed(0, 12, 1)
	a.k.Passed(0, 5, 1) // behind: changes nothing
	if d := a.k.Durable()[0]; d != 13 {
		t.Fatalf("durable %d after a heartbeat and two dead letters, want 13", d)
	}
	a.feed(0, "shop.example", 13, 14, 1)
	a.k.Passed(0, 14, 1)
	if d := a.k.Durable()[0]; d != 13 {
		t.Fatalf("durable %d with record 13 applied and not saved, want 13", d)
	}
	a.save()
	if d := a.k.Durable()[0]; d != 15 {
		t.Fatalf("durable %d after the save, want 15", d)
	}
	// A generation whose first record was not admitted yet: unknown ground.
	a.k.Passed(0, 20, 2)
	if ok, err := a.k.Admit(ctx, 0, 15, 0, 2); !ok || err != nil {
		t.Fatalf("admit in the new generation: %v %v", ok, err)
	}
	if d := a.k.Durable()[0]; d != 16 {
		t.Fatalf("durable %d, want 16 (offset 20 was passed before the generation started)", d)
	}
}
