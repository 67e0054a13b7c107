// Package webtest drives the web UI in headless Chromium (Debian's
// chromium, through chromedp) for tests: the UI package's own test on an
// in-memory inventory, and the end-to-end test of apiscout run on a
// simulated capture.
package webtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Walkthrough drives headless Chromium through the UI served at base:
// overview, inventory, the shadow filter, a shadow endpoint, one of its
// anomalies (or the newest anomaly), the timeline, compliance and the spec
// diff. The inventory must hold shadow endpoints, other endpoints and at
// least one anomaly. Screenshots (PNG) go to dir; any script error or
// CSP violation fails t.
// walkthroughTemplate is the template decision the walkthrough makes and
// withdraws.
const walkthroughTemplate = "/walkthrough/{item}"

func Walkthrough(t testing.TB, base, dir string) {
	t.Helper()
	chromium := findChromium(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-gpu", true),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	// Any script error or CSP violation fails the test.
	var mu sync.Mutex
	var problems []string
	chromedp.ListenTarget(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			desc := d.Text
			if d.Exception != nil {
				desc += " " + d.Exception.Description
			}
			problems = append(problems, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, desc))
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				problems = append(problems, "console error: "+strings.Join(parts, " "))
			}
		}
	})
	shot := func(name string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			var buf []byte
			if err := chromedp.FullScreenshot(&buf, 100).Do(ctx); err != nil { // quality 100 writes PNG
				return err
			}
			return os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644)
		})
	}

	var total, shadowTotal, firstPath, detailPath, anomalyType string
	var nonShadow int
	steps := []struct {
		name    string
		actions []chromedp.Action
	}{
		{"overview", []chromedp.Action{
			chromedp.Navigate(base + "/"),
			chromedp.WaitVisible(`#counts .stat`, chromedp.ByQuery),
			shot("1-overview"),
		}},
		{"inventory", []chromedp.Action{
			chromedp.Click(`#nav a[data-page="inventory"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`table.endpoints tbody tr`, chromedp.ByQuery),
			chromedp.Text(`#total`, &total, chromedp.ByQuery),
			shot("2-inventory"),
		}},
		{"filter shadow", []chromedp.Action{
			chromedp.Click(`#filter-shadow input`, chromedp.ByQuery),
			chromedp.WaitVisible(`#filter-shadow.on`, chromedp.ByQuery),
			chromedp.WaitVisible(`table.endpoints tbody tr`, chromedp.ByQuery),
			chromedp.Text(`#total`, &shadowTotal, chromedp.ByQuery),
			chromedp.Evaluate(`[...document.querySelectorAll("table.endpoints tbody tr")].filter(r => !r.querySelector(".badge.shadow")).length`, &nonShadow),
			chromedp.Text(`table.endpoints tbody tr td.path a`, &firstPath, chromedp.ByQuery),
			shot("3-inventory-shadow"),
		}},
		{"open endpoint", []chromedp.Action{
			chromedp.Click(`table.endpoints tbody tr td.path a`, chromedp.ByQuery),
			chromedp.WaitVisible(`h1.mono`, chromedp.ByQuery),
			// A chart, or the note that no time series is kept.
			chromedp.WaitVisible(`svg.chart polyline, .card p.empty`, chromedp.ByQuery),
			chromedp.Text(`h1.mono`, &detailPath, chromedp.ByQuery),
			shot("4-endpoint"),
		}},
		{"open anomaly", []chromedp.Action{
			// The endpoint's own anomaly when it has one, else the newest.
			chromedp.ActionFunc(func(ctx context.Context) error {
				var has bool
				if err := chromedp.Evaluate(`!!document.querySelector("table.anomalies tbody tr")`, &has).Do(ctx); err != nil || has {
					return err
				}
				return chromedp.Run(ctx, chromedp.Navigate(base+"/#/anomalies"), chromedp.WaitVisible(`table.anomalies tbody tr`, chromedp.ByQuery))
			}),
			chromedp.Click(`table.anomalies tbody tr td a`, chromedp.ByQuery),
			chromedp.WaitVisible(`#anomaly-detail`, chromedp.ByQuery),
			chromedp.WaitVisible(`#evidence`, chromedp.ByQuery),
			chromedp.Text(`.page-head h1`, &anomalyType, chromedp.ByQuery),
			shot("5-anomaly"),
		}},
		{"anomalies timeline", []chromedp.Action{
			chromedp.Click(`#nav a[data-page="anomalies"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`#timeline rect`, chromedp.ByQuery),
			shot("6-anomalies"),
		}},
		{"compliance", []chromedp.Action{
			chromedp.Click(`#nav a[data-page="compliance"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`#regime-card`, chromedp.ByQuery),
			shot("7-compliance"),
		}},
		{"spec diff", []chromedp.Action{
			chromedp.Click(`#nav a[data-page="diff"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`#diff-service`, chromedp.ByQuery),
			shot("8-diff"),
		}},
		{"template decision", []chromedp.Action{
			// An admin merges a position into a parameter, sees the
			// decision listed, and withdraws it.
			chromedp.WaitVisible(`#templates #template-add`, chromedp.ByQuery),
			chromedp.SetValue(`#template-action`, "merge", chromedp.ByQuery),
			chromedp.SetValue(`#template-path`, walkthroughTemplate, chromedp.ByQuery),
			chromedp.Click(`#template-add`, chromedp.ByQuery),
			chromedp.WaitVisible(`//div[@id="templates"]//td[text()="`+walkthroughTemplate+`"]`, chromedp.BySearch),
			shot("9-templates"),
			chromedp.Click(`//div[@id="templates"]//tr[td[text()="`+walkthroughTemplate+`"]]//button`, chromedp.BySearch),
			chromedp.WaitNotPresent(`//div[@id="templates"]//td[text()="`+walkthroughTemplate+`"]`, chromedp.BySearch),
		}},
	}
	for _, st := range steps {
		if err := chromedp.Run(ctx, st.actions...); err != nil {
			t.Fatalf("%s: %v (screenshots so far in %s)", st.name, err, dir)
		}
	}
	if total == shadowTotal {
		t.Errorf("the shadow filter changed nothing: %q before, %q after", total, shadowTotal)
	}
	if nonShadow != 0 {
		t.Errorf("%d rows without the shadow badge after filtering", nonShadow)
	}
	if detailPath != firstPath {
		t.Errorf("opened %q, clicked %q", detailPath, firstPath)
	}
	if anomalyType == "" {
		t.Error("anomaly page has no title")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("browser: %s", p)
	}
	t.Logf("screenshots in %s", dir)
}

func findChromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("headless Chromium is needed for the browser test: apt-get install -y chromium (bash .ci/run installs it)")
	return ""
}
