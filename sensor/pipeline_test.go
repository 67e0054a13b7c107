package sensor

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/pcapgen"
	"github.com/apiscout/apiscout/sensor/output"
	"github.com/apiscout/apiscout/wire"
)

// collect is a Sink that keeps what it gets.
type collect struct{ txs []*wire.Transaction }

func (c *collect) Write(_ context.Context, recs []*wire.Transaction) error {
	c.txs = append(c.txs, recs...)
	return nil
}
func (c *collect) Close() error { return nil }

func run(t *testing.T, cfg config.SensorConfig, files ...string) []*wire.Transaction {
	t.Helper()
	cfg.Pcap = files
	cfg.Progress = false
	cfg.ID = "test"
	var c collect
	p, err := New(cfg, zap.NewNop(), nil, &c)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c.txs
}

func exchange(method, path, body string, status int, respBody string) (req, resp []byte) {
	req = []byte(fmt.Sprintf("%s %s HTTP/1.1\r\nHost: shop.test\r\nContent-Length: %d\r\n\r\n%s", method, path, len(body), body))
	resp = []byte(fmt.Sprintf("HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", status, len(respBody), respBody))
	return
}

var t0 = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

func TestPipelineFromPcap(t *testing.T) {
	var convs [][]pcapgen.Packet
	for i := 0; i < 20; i++ {
		c := pcapgen.NewConn(netip.MustParseAddrPort(fmt.Sprintf("10.1.0.%d:%d", i+1, 40000+i)),
			netip.MustParseAddrPort("10.2.0.1:8080"), t0.Add(time.Duration(i)*time.Millisecond)).Handshake()
		for j := 0; j < 3; j++ {
			req, resp := exchange("POST", fmt.Sprintf("/api/items/%d", i*10+j), `{"q":1}`, 201, strings.Repeat("x", 3000))
			c.Client(req).Wait(time.Millisecond).Server(resp)
		}
		convs = append(convs, c.Close().Packets())
	}
	path := filepath.Join(t.TempDir(), "c.pcap.gz")
	if err := pcapgen.WriteFile(path, pcapgen.Merge(convs...)); err != nil {
		t.Fatal(err)
	}
	txs := run(t, config.Default().Sensor, path)
	if len(txs) != 60 {
		t.Fatalf("%d transactions, want 60", len(txs))
	}
	seen := map[string]bool{}
	for i, tx := range txs {
		if tx.Method != "POST" || tx.Host != "shop.test" || tx.Status != 201 || tx.RequestBodyLen != 7 ||
			tx.ResponseBodyLen != 3000 || tx.Flags != 0 || tx.SensorID != "test" || tx.Seq != uint64(i+1) {
			t.Fatalf("record %d: %+v", i, tx)
		}
		seen[tx.Path] = true
	}
	if len(seen) != 60 {
		t.Fatalf("%d distinct paths", len(seen))
	}
	// Determinism: the same file gives the same records in the same order.
	again := run(t, config.Default().Sensor, path)
	for i := range txs {
		if txs[i].Path != again[i].Path || txs[i].ConnID != again[i].ConnID {
			t.Fatalf("record %d differs between runs", i)
		}
	}
}

func TestLostSegmentIsAGap(t *testing.T) {
	req1, resp1 := exchange("GET", "/a", "", 200, strings.Repeat("a", 4000))
	req2, resp2 := exchange("GET", "/b", "", 200, "ok")
	c := pcapgen.NewConn(netip.MustParseAddrPort("10.1.0.1:40000"), netip.MustParseAddrPort("10.2.0.1:80"), t0).
		MSS(1000).Handshake().Client(req1)
	// The first response loses 1000 bytes in its body.
	c.Server(resp1[:1000]).Skip(false, 1000).Server(resp1[2000:]).Client(req2).Server(resp2).Close()
	path := filepath.Join(t.TempDir(), "gap.pcap")
	pcapgen.WriteFile(path, c.Packets())
	txs := run(t, config.Default().Sensor, path)
	if len(txs) != 2 {
		t.Fatalf("%d transactions: %+v", len(txs), txs)
	}
	if !txs[0].Flags.Has(wire.FlagGap) || txs[1].Path != "/b" || txs[1].Flags.Has(wire.FlagGap) {
		t.Fatalf("gap not confined to the first transaction: %v %v", txs[0].Flags, txs[1].Flags)
	}
}

func TestMidstreamAndJSONL(t *testing.T) {
	req, resp := exchange("GET", "/users/7", "", 404, "{}")
	c := pcapgen.NewConn(netip.MustParseAddrPort("[2001:db8::1]:50000"), netip.MustParseAddrPort("[2001:db8::2]:80"), t0).
		Client(req).Server(resp).Reset(false) // no handshake: picked up midstream
	path := filepath.Join(t.TempDir(), "mid.pcap")
	pcapgen.WriteFile(path, c.Packets())
	var buf bytes.Buffer
	cfg := config.Default().Sensor
	cfg.Pcap, cfg.Progress = []string{path}, false
	p, err := New(cfg, zap.NewNop(), nil, output.NewJSONLWriter(&buf, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	for _, want := range []string{`"method":"GET"`, `"path":"/users/7"`, `"status":404`, `"client":"[2001:db8::1]:50000"`, `"midstream"`} {
		if !strings.Contains(line, want) {
			t.Errorf("jsonl lacks %s: %s", want, line)
		}
	}
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	cases := map[string][]byte{"empty.pcap": nil, "junk.pcap": []byte("this is not a capture file at all")}
	for name, data := range cases {
		p := filepath.Join(dir, name)
		writeFile(t, p, data)
		cfg := config.Default().Sensor
		cfg.Pcap, cfg.Progress = []string{p}, false
		pl, err := New(cfg, zap.NewNop(), nil, &collect{})
		if err != nil {
			t.Fatal(err)
		}
		err = pl.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v should name the file", name, err)
		}
	}
	// A truncated file: what came before the cut is kept, and the error says so.
	req, resp := exchange("GET", "/t", "", 200, "ok")
	full := filepath.Join(dir, "full.pcap")
	pcapgen.WriteFile(full, pcapgen.NewConn(netip.MustParseAddrPort("10.0.0.1:1234"), netip.MustParseAddrPort("10.0.0.2:80"), t0).
		Handshake().Client(req).Server(resp).Close().Packets())
	data := readFile(t, full)
	cut := filepath.Join(dir, "cut.pcap")
	writeFile(t, cut, data[:len(data)-20])
	var c collect
	cfg := config.Default().Sensor
	cfg.Pcap, cfg.Progress = []string{cut}, false
	pl, _ := New(cfg, zap.NewNop(), nil, &c)
	err := pl.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "truncated") || len(c.txs) != 1 {
		t.Fatalf("truncated file: err %v, %d transactions", err, len(c.txs))
	}
}
