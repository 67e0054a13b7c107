package analyzer

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/simulate"
	"github.com/apiscout/apiscout/wire"
)

var paramRE = regexp.MustCompile(`\{[^}]*\}`)

func norm(method, path string) string {
	path, _, _ = strings.Cut(path, "#")
	return method + " " + paramRE.ReplaceAllString(path, "{}")
}

// Score the inventory against the simulator's truth on several seeds:
// template precision and recall, and exact shadow/zombie/orphan classes.
func TestInventoryAgainstTruth(t *testing.T) {
	for _, withSpecs := range []bool{true, false} {
		t.Run(map[bool]string{true: "with specs", false: "templates inferred from traffic alone"}[withSpecs], func(t *testing.T) {
			scoreInventory(t, withSpecs)
		})
	}
}

func scoreInventory(t *testing.T, withSpecs bool) {
	for _, seed := range []uint64{1, 2, 3} {
		dir := t.TempDir()
		o := simulate.Options{Scenario: "inventory", Seed: seed, Duration: 90 * time.Minute}
		var txs []*simulate.Exchange
		called := map[string]bool{}
		res, err := simulate.Run(o, func(ex *simulate.Exchange) error {
			txs = append(txs, ex)
			called[ex.Service+" "+ex.Method+" "+ex.Template] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := simulate.WriteFiles(dir, o, res, called); err != nil {
			t.Fatal(err)
		}
		cfg := config.Default().Analyzer
		if withSpecs {
			cfg.Specs = []string{filepath.Join(dir, "specs")}
		}
		e, err := New(Options{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		for _, ex := range txs {
			e.Process(simulate.ToTransaction(ex))
		}
		truth := simulate.MakeTruth(o, res, called)
		want := map[string]string{}
		for _, s := range truth.Services {
			for _, ep := range s.Endpoints {
				if !withSpecs && !ep.Called {
					continue // without a spec nobody knows of an orphan
				}
				want[s.Host+" "+norm(ep.Method, ep.Path)] = ep.Classification
			}
		}
		got := map[string]string{}
		for _, s := range e.Services() {
			for _, ep := range s.Endpoints {
				got[s.Host+" "+norm(ep.Method, ep.Path)] = string(ep.Classification)
			}
		}
		tp := 0
		for k, c := range got {
			if w, ok := want[k]; ok {
				tp++
				if withSpecs && w != c {
					t.Errorf("seed %d: %s classified %s, truth %s", seed, k, c, w)
				}
			} else {
				t.Logf("seed %d: extra endpoint %s (%s)", seed, k, c)
			}
		}
		for k := range want {
			if _, ok := got[k]; !ok {
				t.Logf("seed %d: missing endpoint %s", seed, k)
			}
		}
		precision, recall := float64(tp)/float64(len(got)), float64(tp)/float64(len(want))
		t.Logf("seed %d: %d endpoints found, %d true; precision %.3f recall %.3f", seed, len(got), len(want), precision, recall)
		if precision < 0.97 || recall < 0.97 {
			t.Errorf("seed %d: precision %.3f recall %.3f, want at least 0.97", seed, precision, recall)
		}
	}
}

func TestSpecExportRoundTrip(t *testing.T) {
	dir := t.TempDir()
	o := simulate.Options{Scenario: "demo", Seed: 1, Duration: 20 * time.Minute}
	e, _ := New(Options{Config: config.Default().Analyzer})
	if _, err := simulate.Run(o, func(ex *simulate.Exchange) error { e.Process(simulate.ToTransaction(ex)); return nil }); err != nil {
		t.Fatal(err)
	}
	doc, err := e.Spec("bank.example")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "bank.yaml")
	os.WriteFile(p, doc, 0o644)
	// The exported document, loaded as the spec, documents every endpoint
	// the traffic had: nothing is shadow any more.
	cfg := config.Default().Analyzer
	cfg.Specs = []string{p}
	cfg.SpecServices = map[string]string{p: "bank.example"}
	e2, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatalf("exported spec does not load: %v\n%s", err, doc)
	}
	if _, err := simulate.Run(o, func(ex *simulate.Exchange) error { e2.Process(simulate.ToTransaction(ex)); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, s := range e2.Services() {
		if s.Host != "bank.example" {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Classification == inventory.Shadow || ep.Classification == inventory.Orphan {
				t.Errorf("%s %s is %s against its own exported spec", ep.Method, ep.Path, ep.Classification)
			}
		}
	}
}

func BenchmarkProcess(b *testing.B) {
	var exs []*simulate.Exchange
	simulate.Run(simulate.Options{Scenario: "demo", Seed: 1, Duration: 10 * time.Minute}, func(ex *simulate.Exchange) error {
		exs = append(exs, ex)
		return nil
	})
	txs := make([]any, 0)
	_ = txs
	e, _ := New(Options{Config: config.Default().Analyzer})
	in := make([]*simulateTx, len(exs))
	for i, ex := range exs {
		in[i] = &simulateTx{simulate.ToTransaction(ex)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Process(in[i%len(in)].tx)
	}
}

type simulateTx struct{ tx *wire.Transaction }
