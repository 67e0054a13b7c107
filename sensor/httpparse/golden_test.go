package httpparse

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestGolden runs every scripted connection under testdata/ and compares
// the records with NAME.golden.json (go test -run TestGolden -update
// rewrites them; review the diff).
func TestGolden(t *testing.T) {
	for _, file := range caseFiles(t) {
		name := strings.TrimSuffix(file, ".case")
		t.Run(name, func(t *testing.T) {
			sc := loadCase(t, file)
			got := render(runScript(sc, whole, nil))
			golden := name + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("records differ from %s:\n%s", golden, diffLines(string(want), string(got)))
			}
		})
	}
}

// TestSegmentationInvariance delivers every case as recorded, one byte
// per segment, and in random splits: the records must not change.
func TestSegmentationInvariance(t *testing.T) {
	for _, file := range caseFiles(t) {
		t.Run(file, func(t *testing.T) {
			sc := loadCase(t, file)
			want := render(runScript(sc, whole, nil))
			splits := map[string]splitter{"bytewise": bytewise}
			for seed := int64(1); seed <= 20; seed++ {
				splits["random"+string(rune('a'+seed))] = randomSplit(seed)
			}
			for name, split := range splits {
				if got := render(runScript(sc, split, nil)); !bytes.Equal(got, want) {
					t.Fatalf("%s split changed the records:\n%s", name, diffLines(string(want), string(got)))
				}
			}
		})
	}
}

// TestSplitEverywhere cuts each data event of each case in two at every
// possible point.
func TestSplitEverywhere(t *testing.T) {
	for _, file := range caseFiles(t) {
		sc := loadCase(t, file)
		want := render(runScript(sc, whole, nil))
		target := -1
		for ei, e := range sc.events {
			if e.kind != "data" {
				continue
			}
			target++
			if len(e.data) > 4096 {
				continue
			}
			for cut := 1; cut < len(e.data); cut++ {
				k := 0
				split := func(b []byte) [][]byte {
					defer func() { k++ }()
					if k != target {
						return [][]byte{b}
					}
					return [][]byte{b[:cut], b[cut:]}
				}
				if got := render(runScript(sc, split, nil)); !bytes.Equal(got, want) {
					t.Fatalf("%s: event %d cut at %d changed the records:\n%s", file, ei, cut, diffLines(string(want), string(got)))
				}
			}
		}
	}
}

// diffLines shows the first differing lines of two renderings.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			b.WriteString("- " + a + "\n+ " + c + "\n")
			if shown++; shown > 12 {
				break
			}
		}
	}
	return b.String()
}
