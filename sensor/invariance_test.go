package sensor

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/pcapgen"
	"github.com/apiscout/apiscout/internal/simulate"
	"github.com/apiscout/apiscout/wire"
)

// invarianceSeed seeds every cut, move and copy: a failure names its
// capture and variant, and a rerun shows the same one.
const invarianceSeed = 20260501

// TestSegmentationInvariance runs the sensor on real captures and on the
// same TCP streams carried differently (see variants: segments of 1 to 7
// bytes, segments coalesced, reordered within a flight, FINs ahead of or
// on their flight's last data, every packet duplicated, retransmissions
// cut again, pure ACKs and keep-alive probes between them, and most of it
// at once), and requires the same transactions from each, field by field,
// but for what only packet boundaries decide: times (those of the segments
// that carried a message's first and last bytes) and the sensor's
// numbering across connections (Seq, ConnID). Timeouts decide no record
// boundary here: every variant keeps the captured packet times to within
// microseconds, but for a flight's last segment that a FIN overtakes,
// which arrives at the FIN's time. APISCOUT_INVARIANCE_SEEDS=n runs n
// seeds.
func TestSegmentationInvariance(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the sensor on 42 captures")
	}
	dir := t.TempDir()
	sources := []struct{ name, path string }{
		{"demo-5min", filepath.Join("..", "testdata", "demo-5min", "capture.pcap.gz")},
		{"protocols", protocolsCapture},
		{"simulated", simulatedCapture(t, dir)},
	}
	seeds := 1
	if v := os.Getenv("APISCOUT_INVARIANCE_SEEDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("APISCOUT_INVARIANCE_SEEDS=%q: want a positive count", v)
		}
		seeds = n
	}
	cfg := invarianceConfig()
	for _, src := range sources {
		capt, err := readCapture(src.path)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s", src.name, capt.describe())
		want := byConnection(run(t, cfg, src.path))
		if len(want) == 0 {
			t.Fatalf("%s: no transactions", src.name)
		}
		for seed := uint64(invarianceSeed); seed < invarianceSeed+uint64(seeds); seed++ {
			for _, v := range variants {
				path := filepath.Join(dir, src.name+"-"+v.name+".pcap")
				n, err := capt.write(path, v, seed)
				if err != nil {
					t.Fatal(err)
				}
				txs := run(t, cfg, path)
				t.Logf("%s %s seed %d: %d packets, %d records", src.name, v.name, seed, n, len(txs))
				for _, d := range compareRecords(want, byConnection(txs), 8) {
					t.Errorf("%s, %s, seed %d: %s", src.name, v.name, seed, d)
				}
				os.Remove(path)
			}
		}
	}
}

func invarianceConfig() config.SensorConfig {
	cfg := config.Default().Sensor
	cfg.RedactKey = "segmentation-invariance" // fingerprints must not differ by run
	return cfg
}

// simulatedCapture writes a few minutes of the simulator's demo, with a
// third of every seventh response body lost to the capture (acknowledged
// but never seen), and a little of its bench scenario (chunked and gzip
// bodies on long keep-alive connections).
func simulatedCapture(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "simulated.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	pw, err := simulate.NewPcapWriter(bw)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	i := 0
	if _, err := simulate.Run(simulate.Options{Scenario: "demo", Seed: 11, Start: start, Duration: 2 * time.Minute},
		func(ex *simulate.Exchange) error {
			if i++; i%7 == 0 && len(ex.RespBody) > 100 {
				ex.Loss = len(ex.RespBody) / 3
			}
			return pw.Add(ex)
		}); err != nil {
		t.Fatal(err)
	}
	// The bench scenario starts where the demo ends, on its own clients.
	if _, err := simulate.Run(simulate.Options{Scenario: "bench", Seed: 11, Start: start.Add(3 * time.Minute), SizeMB: 1},
		pw.Add); err != nil {
		t.Fatal(err)
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return path
}

// byConnection groups records by connection ("client > server #n", n
// counting connections on the same addresses), each in output order.
// Connection ids are left out: they number connections in the order
// their first packets came, which segmentation may change.
func byConnection(txs []*wire.Transaction) map[string][]*wire.Transaction {
	out := map[string][]*wire.Transaction{}
	nth := map[string]map[uint64]int{}
	for _, tx := range txs {
		addr := tx.Client.String() + " > " + tx.Server.String()
		if nth[addr] == nil {
			nth[addr] = map[uint64]int{}
		}
		n, ok := nth[addr][tx.ConnID]
		if !ok {
			n = len(nth[addr])
			nth[addr][tx.ConnID] = n
		}
		k := fmt.Sprintf("%s #%d", addr, n)
		out[k] = append(out[k], tx)
	}
	return out
}

// invariant is what a record must keep whatever the segmentation: all of
// it but packet times, which are those of the segments that carried the
// first and last bytes, and the sensor's numbering (Seq, ConnID), which
// follows the order records and connections came in across connections.
func invariant(tx *wire.Transaction) wire.Transaction {
	v := *tx
	v.SensorID, v.Seq, v.ConnID = "", 0, 0
	v.RequestStart, v.RequestEnd, v.ResponseStart, v.ResponseEnd = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return v
}

// compareRecords lists differences between two runs' records, at most
// limit of them and then a count of the rest.
func compareRecords(want, got map[string][]*wire.Transaction, limit int) []string {
	var diffs []string
	keys := make([]string, 0, len(want)+len(got))
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		w, g := want[k], got[k]
		for i := 0; i < max(len(w), len(g)); i++ {
			switch {
			case i >= len(g):
				diffs = append(diffs, fmt.Sprintf("%s: record %d (%s) missing", k, i, label(w[i])))
				continue
			case i >= len(w):
				diffs = append(diffs, fmt.Sprintf("%s: record %d (%s) extra", k, i, label(g[i])))
				continue
			}
			a, b := invariant(w[i]), invariant(g[i])
			va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
			var fields []string
			for f := 0; f < va.NumField(); f++ {
				x, y := va.Field(f).Interface(), vb.Field(f).Interface()
				if !reflect.DeepEqual(x, y) {
					fields = append(fields, fmt.Sprintf("%s %s, want %s", va.Type().Field(f).Name, show(y), show(x)))
				}
			}
			if len(fields) > 0 {
				diffs = append(diffs, fmt.Sprintf("%s: record %d (%s): %s", k, i, label(w[i]), strings.Join(fields, "; ")))
			}
		}
	}
	if len(diffs) > limit {
		diffs = append(diffs[:limit], fmt.Sprintf("and %d more differences", len(diffs)-limit))
	}
	return diffs
}

func label(tx *wire.Transaction) string {
	return fmt.Sprintf("%s %s %s%s -> %d", tx.Protocol, tx.Method, tx.Host, tx.Path, tx.Status)
}

// show prints a field briefly: bodies by length and hash.
func show(v any) string {
	if b, ok := v.([]byte); ok {
		sum := sha256.Sum256(b)
		return fmt.Sprintf("%d bytes sha256:%x", len(b), sum[:6])
	}
	s := fmt.Sprintf("%v", v)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// TestInvarianceSeesLoss checks the comparison itself: a data segment
// lost to the capture (its ACK still seen) must show as a difference.
func TestInvarianceSeesLoss(t *testing.T) {
	capt, err := readCapture(protocolsCapture)
	if err != nil {
		t.Fatal(err)
	}
	cfg := invarianceConfig()
	want := byConnection(run(t, cfg, protocolsCapture))
	path := filepath.Join(t.TempDir(), "drop.pcap")
	if _, err := capt.write(path, variant{name: "drop", cut: mixed, drop: true}, invarianceSeed); err != nil {
		t.Fatal(err)
	}
	diffs := compareRecords(want, byConnection(run(t, cfg, path)), 100)
	if len(diffs) == 0 {
		t.Fatal("a segment lost on every connection went unnoticed")
	}
	t.Logf("%d differences, first: %s", len(diffs), diffs[0])
}

// fuzzConversation is one HTTP/1.1 keep-alive connection: a request with
// a body answered 100 Continue then 201, then four pipelined requests
// answered with a body, a chunked body with a trailer, a gzip body and
// a 204.
func fuzzConversation(t testing.TB, path string) {
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write([]byte(strings.Repeat(`{"id":1,"tag":"middle"}`, 20)))
	zw.Close()
	gz := zb.Bytes()
	c := pcapgen.NewConn(netip.MustParseAddrPort("10.1.0.1:40000"), netip.MustParseAddrPort("10.2.0.1:80"), t0).MSS(200).Handshake().
		Client([]byte("POST /orders HTTP/1.1\r\nHost: shop.test\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n")).
		Server([]byte("HTTP/1.1 100 Continue\r\n\r\n")).
		Client([]byte(`{"sku":"AB-1","qty":1234}`[:24])).
		Server([]byte("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"id\":4711}")).
		Client([]byte("GET /orders/4711 HTTP/1.1\r\nHost: shop.test\r\n\r\nGET /feed HTTP/1.1\r\nHost: shop.test\r\nTE: trailers\r\n\r\n" +
			"GET /zip HTTP/1.1\r\nHost: shop.test\r\nAccept-Encoding: gzip\r\n\r\nDELETE /orders/4711 HTTP/1.1\r\nHost: shop.test\r\n\r\n")).
		Server([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(300) + "\r\n\r\n" + strings.Repeat("x", 300))).
		Server([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
			"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 42\r\n\r\n")).
		Server(append([]byte("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: "+strconv.Itoa(len(gz))+"\r\n\r\n"), gz...)).
		Server([]byte("HTTP/1.1 204 No Content\r\n\r\n")).
		Close()
	if err := pcapgen.WriteFile(path, c.Packets()); err != nil {
		t.Fatal(err)
	}
}

// FuzzResegment: the fuzzer cuts a fixed HTTP/1.1 conversation (every
// byte of its input the length of the next segment, its high bit a
// swap with the next one) and the sensor must report the transactions of
// the uncut capture.
func FuzzResegment(f *testing.F) {
	base := filepath.Join(f.TempDir(), "base.pcap")
	fuzzConversation(f, base)
	capt, err := readCapture(base)
	if err != nil {
		f.Fatal(err)
	}
	cfg := invarianceConfig()
	var c collect
	p, err := New(withFile(cfg, base), zap.NewNop(), nil, &c)
	if err != nil {
		f.Fatal(err)
	}
	if err := p.Run(context.Background()); err != nil {
		f.Fatal(err)
	}
	want := byConnection(c.txs)
	if len(c.txs) != 5 {
		f.Fatalf("%d transactions in the uncut conversation, want 5", len(c.txs))
	}
	for _, tx := range c.txs {
		if tx.Flags != 0 || tx.Status == 0 {
			f.Fatalf("uncut conversation: %s %s -> %d %v", tx.Method, tx.Path, tx.Status, tx.Flags)
		}
	}
	f.Add([]byte{0})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{0x85, 3, 0x90, 60, 1, 1, 0xff, 2})
	f.Fuzz(func(t *testing.T, cuts []byte) {
		if len(cuts) == 0 {
			return
		}
		i := 0
		next := func() byte { b := cuts[i%len(cuts)]; i++; return b }
		v := variant{name: "fuzz", cut: func(*rand.Rand) int { return 1 + int(next()&0x7f) }, window: int(cuts[0] >> 6)}
		path := filepath.Join(t.TempDir(), "cut.pcap")
		if _, err := capt.write(path, v, uint64(len(cuts))); err != nil {
			t.Fatal(err)
		}
		var got collect
		p, err := New(withFile(cfg, path), zap.NewNop(), nil, &got)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, d := range compareRecords(want, byConnection(got.txs), 8) {
			t.Error(d)
		}
	})
}

func withFile(cfg config.SensorConfig, path string) config.SensorConfig {
	cfg.Pcap, cfg.Progress, cfg.ID = []string{path}, false, "test"
	return cfg
}
