package httpparse

import (
	"bytes"
	"testing"
	"time"

	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// Fuzz inputs are a little program of events: an op byte, then a length
// byte and that many data bytes (op 0 client, 1 server), or a gap size
// byte (op 2 client gap, 3 server gap; 255 = unknown size), or nothing
// (op 4 tick 10s). The first byte's low bit asks for a midstream start.
func decodeOps(in []byte) script {
	var sc script
	if len(in) == 0 {
		return sc
	}
	sc.midstream = in[0]&1 == 1
	in = in[1:]
	for len(in) > 0 {
		op := in[0] % 5
		in = in[1:]
		switch op {
		case 0, 1:
			if len(in) == 0 {
				return sc
			}
			n := min(int(in[0]), len(in)-1)
			d := stream.Dir(op)
			sc.events = append(sc.events, event{kind: "data", dir: d, data: in[1 : 1+n]})
			in = in[1+n:]
		case 2, 3:
			if len(in) == 0 {
				return sc
			}
			n := int(in[0])
			if n == 255 {
				n = -1
			}
			sc.events = append(sc.events, event{kind: "gap", dir: stream.Dir(op - 2), n: n})
			in = in[1:]
		case 4:
			sc.events = append(sc.events, event{kind: "tick", delta: 10 * time.Second})
		}
	}
	return sc
}

func encodeOps(sc script) []byte {
	out := []byte{0}
	if sc.midstream {
		out[0] = 1
	}
	for _, e := range sc.events {
		switch e.kind {
		case "data":
			b := e.data
			for len(b) > 0 {
				n := min(len(b), 254)
				out = append(out, byte(e.dir), byte(n))
				out = append(out, b[:n]...)
				b = b[n:]
			}
		case "gap":
			n := e.n
			if n < 0 || n > 254 {
				n = 255
			}
			out = append(out, byte(2+e.dir), byte(n))
		case "tick":
			out = append(out, 4)
		}
	}
	return out
}

func addSeeds(f *testing.F, withSeed bool) {
	for _, file := range caseFiles(f) {
		b := encodeOps(loadCase(f, file))
		if len(b) > 8<<10 {
			continue
		}
		if withSeed {
			f.Add(b, int64(len(b)))
		} else {
			f.Add(b)
		}
	}
}

// small limits make the fuzzer reach them.
var fuzzOpts = Options{BodyLimit: 64, MaxHeaderBytes: 512, MaxHeaders: 8, DecompressLimit: 4096, InspectionDepth: 1024, UpgradeHoldLimit: 256, MaxPending: 4}

// FuzzParser: any bytes, gaps and ticks, in any order: no panic, buffers
// within their caps, indexes unique.
func FuzzParser(f *testing.F) {
	addSeeds(f, false)
	f.Fuzz(func(t *testing.T, in []byte) {
		sc := decodeOps(in)
		opts := fuzzOpts
		opts.Midstream = true
		var txs []*wire.Transaction
		fac := NewFactory(opts, nil, nil)
		p := fac(stream.ConnInfo{ID: 1, Client: clientAddr, Server: serverAddr, Midstream: sc.midstream}, func(tx *wire.Transaction) { txs = append(txs, tx) })
		c := p.(*conn)
		ts := t0
		for _, e := range sc.events {
			ts = ts.Add(time.Millisecond)
			switch e.kind {
			case "data":
				p.Data(e.dir, e.data, ts)
			case "gap":
				p.Gap(e.dir, e.n, ts)
			case "tick":
				ts = ts.Add(e.delta)
				p.Tick(ts)
			}
			for _, h := range []*half{&c.req, &c.resp} {
				if len(h.buf) > opts.MaxHeaderBytes+maxChunkLine || len(h.hold) > opts.UpgradeHoldLimit ||
					len(h.body.keep) > int(opts.InspectionDepth) {
					t.Fatalf("%s buffers over their caps: head %d, hold %d, body %d", h.dir, len(h.buf), len(h.hold), len(h.body.keep))
				}
			}
			if len(c.queue) > opts.MaxPending+1 {
				t.Fatalf("%d requests pending, cap %d", len(c.queue), opts.MaxPending)
			}
		}
		p.Close("fin", ts)
		seen := map[uint32]bool{}
		for _, tx := range txs {
			if seen[tx.Index] {
				t.Fatalf("index %d emitted twice", tx.Index)
			}
			seen[tx.Index] = true
			if len(tx.RequestBody) > opts.BodyLimit || len(tx.ResponseBody) > opts.BodyLimit {
				t.Fatalf("body over the limit: %d, %d", len(tx.RequestBody), len(tx.ResponseBody))
			}
		}
	})
}

// FuzzSegmentation: the same events delivered whole and in random splits
// give identical records.
func FuzzSegmentation(f *testing.F) {
	addSeeds(f, true)
	f.Fuzz(func(t *testing.T, in []byte, seed int64) {
		sc := decodeOps(in)
		sc.opts = fuzzOpts
		want := render(runScript(sc, whole, nil))
		got := render(runScript(sc, randomSplit(seed), nil))
		if !bytes.Equal(want, got) {
			t.Fatalf("split %d changed the records:\n%s", seed, diffLines(string(want), string(got)))
		}
	})
}
