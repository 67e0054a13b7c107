package httpparse

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// event is one step of a scripted connection.
type event struct {
	kind  string // data, gap, tick, close
	dir   stream.Dir
	data  []byte
	n     int
	delta time.Duration // tick: packet time advance
}

// script is a scripted connection: what reassembly would deliver.
type script struct {
	midstream bool
	skew      time.Duration // added to the packet time of server data
	opts      Options
	events    []event
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

var (
	clientAddr = netip.MustParseAddrPort("10.0.0.1:40000")
	serverAddr = netip.MustParseAddrPort("10.0.0.2:80")
)

// parseScript reads a case file. Each line is one event:
//
//	c "Go-quoted bytes"   client data
//	s "Go-quoted bytes"   server data
//	gap c|s N             N bytes lost (-1: unknown)
//	tick 40s              packet time advances without data
//	close fin             end of the connection
//	midstream             (first) the connection start was not seen
//	skew -5ms             server packet times are off by this much
//	at 10ms               the next event happens at this time
//	body_limit N          option
//	decompress_limit N    option
//
// Each event happens 1ms after the previous one.
func parseScript(t testing.TB, text string) script {
	t.Helper()
	var sc script
	r := bufio.NewScanner(strings.NewReader(text))
	r.Buffer(nil, 1<<24)
	for ln := 1; r.Scan(); ln++ {
		line := strings.TrimSpace(r.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		word, rest, _ := strings.Cut(line, " ")
		dir := stream.ClientToServer
		fail := func(err error) { t.Fatalf("line %d: %v", ln, err) }
		switch word {
		case "c", "s":
			if word == "s" {
				dir = stream.ServerToClient
			}
			b, err := strconv.Unquote(rest)
			if err != nil {
				fail(err)
			}
			sc.events = append(sc.events, event{kind: "data", dir: dir, data: []byte(b)})
		case "gap":
			d, n, _ := strings.Cut(rest, " ")
			if d == "s" {
				dir = stream.ServerToClient
			}
			k, err := strconv.Atoi(n)
			if err != nil {
				fail(err)
			}
			sc.events = append(sc.events, event{kind: "gap", dir: dir, n: k})
		case "tick":
			d, err := time.ParseDuration(rest)
			if err != nil {
				fail(err)
			}
			sc.events = append(sc.events, event{kind: "tick", delta: d})
		case "close":
			sc.events = append(sc.events, event{kind: "close"})
		case "midstream":
			sc.midstream = true
		case "at":
			d, err := time.ParseDuration(rest)
			if err != nil {
				fail(err)
			}
			sc.events = append(sc.events, event{kind: "at", delta: d})
		case "skew":
			d, err := time.ParseDuration(rest)
			if err != nil {
				fail(err)
			}
			sc.skew = d
		case "body_limit", "decompress_limit", "max_header_bytes", "max_headers":
			n, err := strconv.Atoi(rest)
			if err != nil {
				fail(err)
			}
			switch word {
			case "body_limit":
				sc.opts.BodyLimit = n
			case "decompress_limit":
				sc.opts.DecompressLimit = int64(n)
			case "max_header_bytes":
				sc.opts.MaxHeaderBytes = n
			case "max_headers":
				sc.opts.MaxHeaders = n
			}
		default:
			fail(fmt.Errorf("unknown event %q", word))
		}
	}
	return sc
}

// splitter cuts one data event into the segments delivered.
type splitter func(b []byte) [][]byte

func whole(b []byte) [][]byte { return [][]byte{b} }

func bytewise(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

func randomSplit(seed int64) splitter {
	rng := rand.New(rand.NewSource(seed))
	return func(b []byte) [][]byte {
		var out [][]byte
		for len(b) > 0 {
			n := 1 + rng.Intn(len(b))
			if rng.Intn(3) == 0 && n > 8 {
				n = 1 + rng.Intn(8)
			}
			out = append(out, b[:n])
			b = b[n:]
		}
		return out
	}
}

// upgraded records what a takeover parser received, to check hand-over.
type upgraded struct {
	gaps   int
	proto  string
	client bytes.Buffer
	server bytes.Buffer
	closed string
}

func (u *upgraded) Data(d stream.Dir, b []byte, _ time.Time) {
	if d == stream.ClientToServer {
		u.client.Write(b)
	} else {
		u.server.Write(b)
	}
}
func (u *upgraded) Gap(stream.Dir, int, time.Time) { u.gaps++ }
func (u *upgraded) Tick(time.Time)                 {}
func (u *upgraded) Close(r string, _ time.Time)    { u.closed = r }

// result is what one run of a script produced.
type result struct {
	txs      []*wire.Transaction
	upgrades []*upgraded
}

func runScript(sc script, split splitter, m *Metrics) result {
	var res result
	opts := sc.opts
	opts.Midstream = true
	opts.OnUpgrade = func(u Upgrade) stream.Parser {
		up := &upgraded{proto: u.Protocol}
		res.upgrades = append(res.upgrades, up)
		return up
	}
	f := NewFactory(opts, nil, m)
	info := stream.ConnInfo{ID: 7, Client: clientAddr, Server: serverAddr, Midstream: sc.midstream, Start: t0}
	p := f(info, func(tx *wire.Transaction) { res.txs = append(res.txs, tx) })
	ts := t0
	closed := false
	for _, e := range sc.events {
		ts = ts.Add(time.Millisecond)
		switch e.kind {
		case "data":
			ts := ts
			if e.dir == stream.ServerToClient {
				ts = ts.Add(sc.skew)
			}
			for _, seg := range split(e.data) {
				// The parser must copy what it keeps: scribble over
				// each segment after the call.
				buf := append([]byte(nil), seg...)
				p.Data(e.dir, buf, ts)
				for i := range buf {
					buf[i] = 'X'
				}
			}
		case "gap":
			p.Gap(e.dir, e.n, ts)
		case "tick":
			ts = ts.Add(e.delta)
			p.Tick(ts)
		case "at":
			ts = t0.Add(e.delta - time.Millisecond)
		case "close":
			p.Close("fin", ts)
			closed = true
		}
	}
	if !closed {
		p.Close("shutdown", ts.Add(time.Millisecond))
	}
	return res
}

// goldenTx renders a record for golden files: bodies as text, times
// relative to the start of the script.
type goldenTx struct {
	*wire.Transaction
	RequestStart  string `json:"ts"`
	RequestEnd    string `json:"request_end"`
	ResponseStart string `json:"response_start"`
	ResponseEnd   string `json:"response_end"`
	RequestBody   string `json:"request_body,omitempty"`
	ResponseBody  string `json:"response_body,omitempty"`
}

func rel(ts time.Time) string {
	if ts.IsZero() {
		return ""
	}
	return ts.Sub(t0).String()
}

func render(res result) []byte {
	var out []goldenTx
	for _, tx := range res.txs {
		out = append(out, goldenTx{
			Transaction:   tx,
			RequestStart:  rel(tx.RequestStart),
			RequestEnd:    rel(tx.RequestEnd),
			ResponseStart: rel(tx.ResponseStart),
			ResponseEnd:   rel(tx.ResponseEnd),
			RequestBody:   printable(tx.RequestBody),
			ResponseBody:  printable(tx.ResponseBody),
		})
	}
	b, err := json.MarshalIndent(struct {
		Transactions []goldenTx `json:"transactions"`
		Upgrades     []string   `json:"upgrades,omitempty"`
	}{out, renderUpgrades(res.upgrades)}, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

func renderUpgrades(us []*upgraded) []string {
	var out []string
	for _, u := range us {
		out = append(out, fmt.Sprintf("%s client=%q server=%q gaps=%d closed=%s", u.proto, u.client.String(), u.server.String(), u.gaps, u.closed))
	}
	return out
}

// printable keeps text bodies readable and quotes binary ones.
func printable(b []byte) string {
	if b == nil {
		return ""
	}
	s := string(b)
	for _, r := range s {
		if r == 0xfffd || (r < ' ' && r != '\n' && r != '\r' && r != '\t') {
			return strconv.Quote(s)
		}
	}
	return s
}

func caseFiles(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join("testdata", "*.case"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no case files under testdata: %v", err)
	}
	return files
}

func loadCase(t testing.TB, file string) script {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return parseScript(t, string(b))
}
