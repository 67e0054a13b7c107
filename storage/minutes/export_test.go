package minutes

import (
	"reflect"
	"testing"
	"time"

	"github.com/apiscout/apiscout/wire"
)

// Open minutes carried through a checkpoint finish as if nothing had
// happened: a restarted analyzer hands out the same rows.
func TestExportImport(t *testing.T) {
	call := func(host string, i int) *wire.Transaction {
		at := start.Add(time.Duration(i) * 700 * time.Millisecond)
		return &wire.Transaction{Host: host, Method: "GET", Path: "/a", Status: 200 + 300*(i%5/4),
			RequestStart: at, ResponseEnd: at.Add(time.Duration(3+i%40) * time.Millisecond)}
	}
	whole, before := New(time.Minute), New(time.Minute)
	for i := range 200 {
		for _, host := range []string{"a.example", "b.example"} {
			whole.Add(host, "GET", "/a", call(host, i), false)
			before.Add(host, "GET", "/a", call(host, i), false)
		}
	}
	b, err := before.Export([]string{"a.example"})
	if err != nil {
		t.Fatal(err)
	}
	after := New(time.Minute)
	if err := after.Import(b); err != nil {
		t.Fatal(err)
	}
	for i := 200; i < 300; i++ {
		whole.Add("a.example", "GET", "/a", call("a.example", i), false)
		after.Add("a.example", "GET", "/a", call("a.example", i), false)
	}
	want := []any{}
	for _, m := range whole.Drain() {
		if m.Service == "a.example" {
			want = append(want, m)
		}
	}
	got := []any{}
	for _, m := range after.Drain() {
		got = append(got, m)
	}
	if len(want) < 3 || !reflect.DeepEqual(got, want) {
		t.Errorf("minutes after a checkpoint:\n got %+v\nwant %+v", got, want)
	}

	before.Forget([]string{"a.example"})
	for _, m := range before.Drain() {
		if m.Service == "a.example" {
			t.Errorf("a forgotten service's minute remains: %+v", m)
		}
	}
	if err := after.Import([]byte("{")); err == nil {
		t.Error("a broken checkpoint imported")
	}
}
