package wire

import (
	"flag"
	"os"
	"reflect"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden records under testdata/")

// The golden records were written by earlier versions of the encoder and
// are never regenerated once a version has shipped: every later decoder
// must read them. v1 is the first schema; v1-with-future-fields carries
// fields a later writer may add (unknown numbers of every wire type).
func TestGoldenRecordsStillDecode(t *testing.T) {
	cur := AppendTransaction(nil, sampleTransaction())
	if *update {
		if err := os.WriteFile("testdata/transaction-v1.bin", cur, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"testdata/transaction-v1.bin", "testdata/transaction-v1-with-future-fields.bin"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatalf("%v (the golden records are committed; regenerate v1 only with -update before it ships)", err)
		}
		var tx Transaction
		if err := DecodeTransaction(b, &tx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(&tx, sampleTransaction()) {
			t.Errorf("%s decodes to\n%+v\nwant\n%+v", name, &tx, sampleTransaction())
		}
	}
}
