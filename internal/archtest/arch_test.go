// Package archtest guards the architecture: data flows one way
// (sensor → wire → analyzer → storage), the wire contract depends on
// nothing of the project, and every package says what it holds.
package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/apiscout/apiscout/"

type pkg struct {
	ImportPath string
	Doc        string
	Imports    []string
	Deps       []string
	Name       string
}

func list(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"...")
	cmd.Dir = "../.."
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	return pkgs
}

func rel(path string) string { return strings.TrimPrefix(path, module) }

// forbidden maps a package prefix to the project prefixes it must not
// depend on, directly or not.
var forbidden = map[string][]string{
	"wire":      {"sensor", "analyzer", "storage", "cmd", "internal"},
	"sensor/":   {"analyzer", "storage", "cmd"},
	"analyzer/": {"sensor", "cmd"},
	"storage/":  {"sensor", "cmd"},
}

func TestDependenciesFlowOneWay(t *testing.T) {
	for _, p := range list(t) {
		r := rel(p.ImportPath)
		for prefix, bans := range forbidden {
			if !strings.HasPrefix(r+"/", prefix) && r != strings.TrimSuffix(prefix, "/") {
				continue
			}
			for _, d := range p.Deps {
				if !strings.HasPrefix(d, module) {
					continue
				}
				dr := rel(d)
				for _, ban := range bans {
					if dr == ban || strings.HasPrefix(dr, ban+"/") {
						t.Errorf("%s depends on %s: %s must not reach %s", r, dr, r, ban)
					}
				}
			}
		}
	}
}

func TestWireImportsOnlyItsEncoding(t *testing.T) {
	for _, p := range list(t) {
		if rel(p.ImportPath) != "wire" {
			continue
		}
		for _, imp := range p.Imports {
			if strings.Contains(imp, ".") && imp != "google.golang.org/protobuf/encoding/protowire" {
				t.Errorf("wire imports %s; the contract may depend on the standard library and protowire only", imp)
			}
		}
	}
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range list(t) {
		if p.Doc == "" {
			t.Errorf("%s has no package doc comment saying what it holds", rel(p.ImportPath))
		}
	}
}
