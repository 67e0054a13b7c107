package anomaly

import (
	"strconv"
	"testing"
	"time"
)

func TestTrackerLifecycle(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	tr := NewTracker(5 * time.Minute)
	ev := Anomaly{Type: TypeRateSpike, Severity: Medium, Host: "api", Method: "GET", Path: "/x", Start: t0, Evidence: []string{"a"}}

	opened, ok := tr.Raise(ev)
	if !ok || opened.Event != EventOpened || opened.State != Open || opened.ID == "" || opened.Count != 1 {
		t.Fatalf("first evidence: %+v %v", opened, ok)
	}
	// The same target again, 30 times: one incident, no new opened copy.
	for i := 1; i <= 30; i++ {
		e := ev
		e.Start = t0.Add(time.Duration(i) * time.Second)
		e.Severity = High
		if _, again := tr.Raise(e); again {
			t.Fatalf("evidence %d opened a second incident", i)
		}
	}
	if tr.Touch(TargetOf(&ev), t0.Add(40*time.Second)) != true {
		t.Fatal("touch on an open incident failed")
	}
	ups := tr.Flush(t0.Add(time.Minute))
	if len(ups) != 1 || ups[0].Event != EventUpdated || ups[0].ID != opened.ID || ups[0].Count != 32 || ups[0].Severity != High {
		t.Fatalf("update: %+v", ups)
	}
	if got := tr.Flush(t0.Add(2 * time.Minute)); len(got) != 0 {
		t.Fatalf("no new evidence must give no update: %+v", got)
	}
	closed := tr.Flush(t0.Add(40*time.Second + 5*time.Minute))
	if len(closed) != 1 || closed[0].State != Closed || closed[0].Event != EventClosed || closed[0].ID != opened.ID ||
		!closed[0].End.Equal(t0.Add(40*time.Second)) {
		t.Fatalf("close: %+v", closed)
	}
	if tr.Len() != 0 {
		t.Fatal("incident still open")
	}
	// A new episode on the same target is a new incident with a new id.
	again, ok := tr.Raise(Anomaly{Type: TypeRateSpike, Host: "api", Method: "GET", Path: "/x", Start: t0.Add(time.Hour)})
	if !ok || again.ID == opened.ID {
		t.Fatalf("second episode: %+v", again)
	}
}

func TestIncidentIDStable(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	a := IncidentID(Target{Type: "x", Host: "h"}, t0)
	if a != IncidentID(Target{Type: "x", Host: "h"}, t0) || a == IncidentID(Target{Type: "x", Host: "h2"}, t0) ||
		a == IncidentID(Target{Type: "x", Host: "h"}, t0.Add(1)) {
		t.Fatal("id is not a stable function of target and start")
	}
}

func TestClientScopedTarget(t *testing.T) {
	a := Anomaly{Type: TypeBOLAEnumeration, Host: "h", Method: "GET", Path: "/a/{id}", Client: "c"}
	b := a
	b.Path = "/b/{id}"
	if TargetOf(&a) != TargetOf(&b) {
		t.Fatal("client-scoped incidents must not split per endpoint")
	}
	c := Anomaly{Type: TypeRateSpike, Host: "h", Method: "GET", Path: "/a"}
	d := c
	d.Path = "/b"
	if TargetOf(&c) == TargetOf(&d) {
		t.Fatal("endpoint incidents must split per endpoint")
	}
}

// A zombie endpoint called a few times an hour is one incident, not one
// per quiet spell; an event such as a rate spike still closes quickly.
func TestStandingConditionsStayOpen(t *testing.T) {
	tr := NewTracker(10 * time.Minute)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	opened := 0
	for h := 0; h < 12; h++ {
		at := t0.Add(time.Duration(h) * time.Hour)
		if _, isNew := tr.Raise(Anomaly{Type: TypeZombieCall, Host: "h", Method: "GET", Path: "/v1/x", Start: at}); isNew {
			opened++
		}
		if _, isNew := tr.Raise(Anomaly{Type: TypeRateSpike, Host: "h", Method: "GET", Path: "/v2/x", Start: at}); isNew {
			opened++
		}
		tr.Flush(at.Add(30 * time.Minute))
	}
	if opened != 13 { // one zombie incident, twelve separate spikes
		t.Fatalf("%d incidents opened, want 13", opened)
	}
	closed := tr.Flush(t0.Add(12*time.Hour + StandingCloseAfter))
	if len(closed) != 1 || closed[0].Type != TypeZombieCall || closed[0].State != Closed {
		t.Fatalf("after a quiet day: %+v", closed)
	}
}

// Export, Import and Forget carry a service's open incidents to another
// tracker: the same ids, the same evidence clock, the same closing time.
func TestTrackerExportImport(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	a := NewTracker(5 * time.Minute)
	var ids []string
	for _, host := range []string{"shop", "shop", "billing"} {
		op, ok := a.Raise(Anomaly{Type: TypeErrorSurge, Severity: High, Host: host, Method: "GET", Path: "/x" + strconv.Itoa(len(ids)), Start: t0})
		if !ok {
			t.Fatal("not opened")
		}
		ids = append(ids, op.ID)
	}
	a.Touch(Target{Type: TypeErrorSurge, Host: "shop", Method: "GET", Path: "/x0"}, t0.Add(2*time.Minute))
	b1, err := a.Export([]string{"shop"})
	if err != nil {
		t.Fatal(err)
	}
	if b2, _ := a.Export([]string{"shop"}); string(b1) != string(b2) {
		t.Error("two exports of the same state differ")
	}

	b := NewTracker(5 * time.Minute)
	tgs, err := b.Import(b1)
	if err != nil || len(tgs) != 2 || b.Len() != 2 {
		t.Fatalf("imported %v (%v), %d open; want the two shop incidents", tgs, err, b.Len())
	}
	if _, opened := b.Raise(Anomaly{Type: TypeErrorSurge, Host: "shop", Method: "GET", Path: "/x0", Start: t0.Add(3 * time.Minute)}); opened {
		t.Error("evidence on an imported incident opened a new one")
	}
	ups := b.Flush(t0.Add(4 * time.Minute))
	if len(ups) != 1 || ups[0].ID != ids[0] || ups[0].Count != 3 {
		t.Fatalf("after import: %+v, want one update of %s counting 3", ups, ids[0])
	}
	// /x1 had no evidence since t0: it closes 5 minutes after, as it would
	// have on the first tracker.
	closed := b.Flush(t0.Add(5 * time.Minute))
	if len(closed) != 1 || closed[0].ID != ids[1] || closed[0].Event != EventClosed {
		t.Fatalf("close after import: %+v", closed)
	}

	if got := a.Forget([]string{"shop"}); len(got) != 2 || a.Len() != 1 {
		t.Fatalf("forgot %v, %d left; want 2 forgotten, billing left", got, a.Len())
	}
	for _, bad := range []string{`{`, `[{"id":"","type":"x","state":"open"}]`, `[{"id":"a","type":"error_surge","state":"closed"}]`} {
		if _, err := NewTracker(time.Minute).Import([]byte(bad)); err == nil {
			t.Errorf("Import(%s) accepted", bad)
		}
	}
}
