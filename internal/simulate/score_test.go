package simulate

import (
	"strings"
	"testing"
	"time"
)

func TestScoreIncidents(t *testing.T) {
	at := func(m int) time.Time { return time.Date(2026, 3, 4, 10, m, 0, 0, time.UTC) }
	labels := []Label{
		{Type: "bola_enumeration", Host: "bank", Method: "GET", Path: "/accounts/{accountId}", Client: "user-7", Start: at(0), End: at(5)},
		{Type: "shadow_endpoint", Host: "bank", Method: "GET", Path: "/ledger/{entryId}", Start: at(20), End: at(40)},
		{Type: "rate_drop", Host: "shop", Method: "GET", Path: "/products", Start: at(45), End: at(59)},
	}
	incs := []Incident{
		// Detects the BOLA episode: the client named by its principal.
		{ID: "a", Type: "bola_enumeration", Host: "bank", Method: "GET", Path: "/accounts/{accountId}", Client: "fp:1",
			Start: at(1), End: at(4), Opened: at(1).Add(30 * time.Second), Details: map[string]string{"principal": "user-7"}},
		// Same type and time, another client: not a detection, but on
		// the episode's endpoint: a co-alert.
		{ID: "b", Type: "bola_enumeration", Host: "bank", Method: "GET", Path: "/accounts/{accountId}", Client: "fp:2",
			Start: at(2), End: at(3)},
		// Another type on the attacked endpoint: a co-alert.
		{ID: "c", Type: "rate_spike", Host: "bank", Method: "GET", Path: "/accounts/{id}", Start: at(0), End: at(5), Opened: at(1)},
		// Parameter names differ: still the shadow episode's endpoint.
		{ID: "d", Type: "shadow_endpoint", Host: "bank", Method: "GET", Path: "/ledger/{ledgerId}", Start: at(20), End: at(20)},
		// Open since before the episodes: false, though it overlaps them.
		{ID: "e", Type: "shadow_endpoint", Host: "bank", Method: "GET", Path: "/ledger/{ledgerId}", Start: at(0).Add(-48 * time.Hour), End: at(30)},
		// Another service: false.
		{ID: "f", Type: "rate_spike", Host: "shop", Method: "GET", Path: "/cart", Start: at(2), End: at(3)},
	}
	sc, err := ScoreIncidents(labels, incs, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(is []Incident) string {
		var s []string
		for _, in := range is {
			s = append(s, in.ID)
		}
		return strings.Join(s, ",")
	}
	if got := ids(sc.False); got != "e,f" {
		t.Errorf("false incidents %s, want e,f", got)
	}
	if got := ids(sc.CoAlerts); got != "b,c" {
		t.Errorf("co-alerts %s, want b,c", got)
	}
	want := map[string]struct {
		detected bool
		id       string
		ttd      time.Duration
	}{
		"bola_enumeration": {true, "a", 90 * time.Second},
		"shadow_endpoint":  {true, "d", 0},
		"rate_drop":        {false, "", 0},
	}
	for _, e := range sc.Episodes {
		w := want[e.Type]
		if e.Detected != w.detected || e.Incident.ID != w.id || e.TTD != w.ttd {
			t.Errorf("%s: detected=%v by %q in %s, want %v by %q in %s", e.Type, e.Detected, e.Incident.ID, e.TTD, w.detected, w.id, w.ttd)
		}
	}
	rows := map[string]TypeScore{}
	for _, r := range sc.Types {
		rows[r.Type] = r
	}
	if r := rows["rate_spike"]; r.Episodes != 0 || r.False != 1 || r.CoAlert != 1 {
		t.Errorf("rate_spike row %+v", r)
	}
	if r := rows["rate_drop"]; r.Episodes != 1 || r.Missed != 1 {
		t.Errorf("rate_drop row %+v", r)
	}
	var b strings.Builder
	sc.Table(&b)
	if !strings.Contains(b.String(), "total") || !strings.Contains(b.String(), "1m30s") {
		t.Errorf("table:\n%s", b.String())
	}

	if _, err := ScoreIncidents([]Label{{Type: "teleport"}}, nil, 0); err == nil {
		t.Error("a label type with no anomaly type was scored")
	}
}

func TestReadIncidents(t *testing.T) {
	in, err := ReadIncidents(strings.NewReader(`{"id":"x","type":"bfla","host":"h","start":"2026-03-04T10:00:00Z","end":"2026-03-04T10:01:00Z","details":{"principal":"u"}}` + "\n\n"))
	if err != nil || len(in) != 1 || in[0].Details["principal"] != "u" || in[0].Start.Minute() != 0 {
		t.Fatalf("%+v %v", in, err)
	}
	if _, err := ReadLabels(strings.NewReader("{not json\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("bad line: %v", err)
	}
}
