package baseline

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/wire"
)

var t0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func cfg() Config {
	return Config{Learning: time.Hour, MinSupport: 10, MaxClients: 3, Window: time.Minute, ClientWindow: 5 * time.Minute, SizeZ: 4}
}

func obs(t time.Time, identity string, flags wire.Flags) *inventory.Observation {
	tx := &wire.Transaction{RequestStart: t, RequestEnd: t, ResponseStart: t.Add(30 * time.Millisecond),
		Method: "GET", Host: "h", Path: "/x", Status: 200, ResponseBodyLen: 1000, Flags: flags}
	return &inventory.Observation{Tx: tx, Time: t, Service: "h", Method: "GET", Path: "/x",
		Identity: identity, Auth: "jwt", Roles: []string{"user"}}
}

func TestLearningGates(t *testing.T) {
	for _, tc := range []struct {
		name   string
		flags  wire.Flags
		loss   uint64
		frozen bool
		blind  bool
		learn  bool
	}{
		{name: "clean", learn: true},
		{name: "gap", flags: wire.FlagGap},
		{name: "capture loss", loss: 100},
		{name: "open incident", frozen: true},
		{name: "sensor blind", blind: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(cfg(), nil)
			s.Blind = tc.blind
			first := obs(t0, "c", 0)
			ep, _, _ := s.Observe(first) // creates the endpoint
			if tc.frozen {
				ep.Frozen = 1
			}
			learned := ep.Learned
			o := obs(t0.Add(time.Second), "c", tc.flags)
			o.Tx.CaptureLoss = tc.loss
			s.Observe(o)
			if got := ep.Learned > learned; got != tc.learn {
				t.Fatalf("learned=%v, want %v", got, tc.learn)
			}
			if ep.Seen != 2 {
				t.Fatalf("seen %d, want 2: every call is counted", ep.Seen)
			}
		})
	}
}

func TestClientCapEvictsLeastRecent(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := New(cfg(), reg)
	for i := 0; i < 5; i++ {
		s.Observe(obs(t0.Add(time.Duration(i)*time.Second), "c"+strconv.Itoa(i), 0))
	}
	// c2 is seen again: it becomes the most recent, c3 the oldest.
	s.Observe(obs(t0.Add(10*time.Second), "c2", 0))
	s.Observe(obs(t0.Add(11*time.Second), "c5", 0))
	if s.Clients() != 3 {
		t.Fatalf("%d clients, cap 3", s.Clients())
	}
	for id, want := range map[string]bool{"c2": true, "c4": true, "c5": true, "c3": false, "c0": false} {
		if got := s.Client("h", id) != nil; got != want {
			t.Errorf("client %s tracked=%v, want %v", id, got, want)
		}
	}
	var m dto.Metric
	if err := s.evicted.Write(&m); err != nil || m.GetCounter().GetValue() != 3 {
		t.Fatalf("evictions counted %v, want 3", m.GetCounter().GetValue())
	}
}

func TestRhythmPrefersSameHour(t *testing.T) {
	var r Rhythm
	// Two days: 100 calls per window from 12:00 to 13:00, 10 otherwise.
	for m := 0; m < 2*24*60; m++ {
		start := t0.Add(time.Duration(m) * time.Minute)
		n := 10.0
		if start.Hour() == 12 {
			n = 100
		}
		r.Learn(start, n, 60)
	}
	noon := t0.Add(72*time.Hour + 12*time.Hour + 5*time.Minute)
	if e := r.Expected(noon); e < 90 || e > 110 {
		t.Fatalf("expected at noon %.1f, want about 100", e)
	}
	if e := r.Expected(noon.Add(2 * time.Hour)); e < 9 || e > 11 {
		t.Fatalf("expected at 14:00 %.1f, want about 10", e)
	}
}

func TestObjectsNeverReturned(t *testing.T) {
	c := &Client{}
	c.NoteReturned([]string{"7", "8"})
	k := EndpointKey{"h", "GET", "/o/{id}"}
	roll := func(int) {}
	id := func() string { return "tx" }
	for _, v := range []string{"7", "8", "7"} {
		if _, fresh := c.TouchObject(k, v, t0, time.Minute, id, 0, roll); fresh {
			t.Fatalf("id %s was returned to the client: not fresh", v)
		}
	}
	for i := 100; i < 105; i++ {
		if _, fresh := c.TouchObject(k, strconv.Itoa(i), t0, time.Minute, id, 0, roll); !fresh {
			t.Fatalf("id %d: want fresh", i)
		}
	}
	os := c.Objects[k]
	if os.NewIDs != 5 || os.Seq != 4 {
		t.Fatalf("new %d seq %d, want 5 and 4", os.NewIDs, os.Seq)
	}
	rolled := -1
	c.TouchObject(k, "200", t0.Add(time.Minute), time.Minute, id, 0, func(n int) { rolled = n })
	if rolled != 5 || os.NewIDs != 1 {
		t.Fatalf("window roll reported %d, new ids now %d", rolled, os.NewIDs)
	}
}

func TestKindOf(t *testing.T) {
	if KindOf([]string{"b", "a"}, "jwt") != "role:a,b" || KindOf(nil, "apikey") != "auth:apikey" {
		t.Fatal("kinds must not depend on role order")
	}
}
