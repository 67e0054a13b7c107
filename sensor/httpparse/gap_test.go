package httpparse

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/apiscout/apiscout/wire"
)

// seen collects what the records of a clean run contain.
type seen struct {
	methods, paths map[string]bool
	headers        map[wire.Header]bool
	statuses       map[int]bool
	reqBodies      [][]byte
	respBodies     [][]byte
}

func collect(txs []*wire.Transaction) seen {
	s := seen{methods: map[string]bool{"": true}, paths: map[string]bool{"": true}, headers: map[wire.Header]bool{}, statuses: map[int]bool{0: true}}
	for _, tx := range txs {
		s.methods[tx.Method] = true
		s.paths[tx.Path] = true
		s.statuses[tx.Status] = true
		for _, hs := range [][]wire.Header{tx.RequestHeaders, tx.ResponseHeaders, tx.RequestTrailers, tx.ResponseTrailers} {
			for _, h := range hs {
				s.headers[h] = true
			}
		}
		s.reqBodies = append(s.reqBodies, tx.RequestBody)
		s.respBodies = append(s.respBodies, tx.ResponseBody)
	}
	return s
}

func prefixOfOne(b []byte, of [][]byte) bool {
	if len(b) == 0 {
		return true
	}
	for _, o := range of {
		if bytes.HasPrefix(o, b) {
			return true
		}
	}
	return false
}

// TestGapEverywhere loses n bytes at every position of every data event
// of clean cases and checks that no record glues bytes of two messages:
// every method, path, header, status and body prefix comes from a single
// message of the clean run, and the loss is flagged. (connect.case is
// not here: when the CONNECT itself is lost, nothing tells the tunnel's
// bytes from the body of an unexplained 200, which is what they become,
// flagged no_request.)
func TestGapEverywhere(t *testing.T) {
	for _, file := range []string{"keepalive", "pipelining", "chunked_trailers", "continue_100", "no_body_statuses", "read_until_close", "enc_gzip_chunked", "upgrade_refused", "early_response", "bare_lf", "targets", "ambiguous_two_cl", "websocket"} {
		sc := loadCase(t, "testdata/"+file+".case")
		clean := collect(runScript(sc, whole, nil).txs)
		for ei, e := range sc.events {
			if e.kind != "data" {
				continue
			}
			for pos := 0; pos < len(e.data); pos++ {
				for _, n := range []int{1, 5, 40, -1} {
					lost := n
					if n < 0 || pos+n > len(e.data) {
						lost = len(e.data) - pos
					}
					var evs []event
					evs = append(evs, sc.events[:ei]...)
					if pos > 0 {
						evs = append(evs, event{kind: "data", dir: e.dir, data: e.data[:pos]})
					}
					evs = append(evs, event{kind: "gap", dir: e.dir, n: n})
					if rest := e.data[pos+lost:]; len(rest) > 0 {
						evs = append(evs, event{kind: "data", dir: e.dir, data: rest})
					}
					evs = append(evs, sc.events[ei+1:]...)
					gsc := sc
					gsc.events = evs
					res := runScript(gsc, whole, nil)
					where := fmt.Sprintf("%s event %d pos %d gap %d", file, ei, pos, n)
					flagged := false
					for _, tx := range res.txs {
						if tx.Flags&(wire.FlagGap|wire.FlagUnparsable|wire.FlagNoResponse|wire.FlagNoRequest) != 0 {
							flagged = true
						}
						if !clean.methods[tx.Method] || !clean.paths[tx.Path] || !clean.statuses[tx.Status] {
							t.Fatalf("%s: record %s %s %d not in the clean run", where, tx.Method, tx.Path, tx.Status)
						}
						for _, hs := range [][]wire.Header{tx.RequestHeaders, tx.ResponseHeaders, tx.RequestTrailers, tx.ResponseTrailers} {
							for _, h := range hs {
								if !clean.headers[h] {
									t.Fatalf("%s: header %q: %q not in the clean run", where, h.Name, h.Value)
								}
							}
						}
						if !prefixOfOne(tx.RequestBody, clean.reqBodies) || !prefixOfOne(tx.ResponseBody, clean.respBodies) {
							t.Fatalf("%s: bodies %q / %q are not prefixes of clean bodies", where, tx.RequestBody, tx.ResponseBody)
						}
					}
					for _, u := range res.upgrades {
						if u.gaps > 0 {
							flagged = true // the loss went to the parser that took over
						}
					}
					if !flagged {
						t.Fatalf("%s: a loss of %d bytes left no flag on %d records", where, n, len(res.txs))
					}
				}
			}
		}
	}
}
