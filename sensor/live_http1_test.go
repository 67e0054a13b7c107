package sensor

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/wire"
)

// liveBody is the deterministic body of n bytes both sides agree on.
func liveBody(n int) []byte {
	return bytes.Repeat([]byte("abcdefghij"), n/10+1)[:n]
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// liveHandler answers /t/N?status=S&size=Z&mode=plain|chunked|gzip with
// Z body bytes, after reading the request body.
func liveHandler(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	if strings.HasPrefix(r.URL.Path, "/ready/") {
		return
	}
	q := r.URL.Query()
	status, _ := strconv.Atoi(q.Get("status"))
	size, _ := strconv.Atoi(q.Get("size"))
	body := liveBody(size)
	w.Header().Set("Content-Type", "application/json")
	switch q.Get("mode") {
	case "chunked":
		w.WriteHeader(status)
		for len(body) > 0 {
			n := min(len(body), 1000)
			w.Write(body[:n])
			w.(http.Flusher).Flush()
			body = body[n:]
		}
	case "gzip":
		z := gzipped(body)
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(len(z)))
		w.WriteHeader(status)
		w.Write(z)
	default:
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		w.Write(body)
	}
}

// liveCall is one request the client makes and what the sensor must
// report for it.
type liveCall struct {
	method, path, query string
	reqLen              int
	chunkedReq          bool
	status              int
	respLen, respWire   int64
}

// liveCalls are n requests of various methods, statuses, body sizes and
// framings; paths are unique so each record can be matched to its call.
func liveCalls(prefix string, n int) []liveCall {
	methods := []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}
	sizes := []int{0, 17, 1400, 5000, 64 << 10, 300 << 10}
	statuses := []int{200, 201, 204, 400, 404, 500}
	modes := []string{"plain", "chunked", "gzip"}
	var out []liveCall
	for i := 0; i < n; i++ {
		c := liveCall{method: methods[i%len(methods)], path: fmt.Sprintf("/%s/t/%d", prefix, i), status: statuses[i%len(statuses)]}
		size := sizes[(i/2)%len(sizes)]
		mode := modes[(i/3)%len(modes)]
		if c.status == 204 {
			size = 0
		}
		c.query = fmt.Sprintf("status=%d&size=%d&mode=%s", c.status, size, mode)
		if c.method == "POST" || c.method == "PUT" || c.method == "PATCH" {
			c.reqLen = sizes[(i/3)%len(sizes)]
			c.chunkedReq = i%4 == 1
		}
		switch {
		case c.method == "HEAD" || c.status == 204:
			// no body on the wire
		case mode == "gzip":
			c.respLen, c.respWire = int64(size), int64(len(gzipped(liveBody(size))))
		default:
			c.respLen, c.respWire = int64(size), int64(size)
		}
		out = append(out, c)
	}
	return out
}

func (c liveCall) do(cl *http.Client, base string) error {
	var body io.Reader
	if c.reqLen > 0 {
		body = bytes.NewReader(liveBody(c.reqLen))
		if c.chunkedReq {
			body = io.MultiReader(body) // unknown length: sent chunked
		}
	}
	req, err := http.NewRequest(c.method, base+c.path+"?"+c.query, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept-Encoding", "gzip") // set by hand: the client leaves bodies compressed
	resp, err := cl.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", c.method, c.path, err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: body: %w", c.method, c.path, err)
	}
	if resp.StatusCode != c.status || n != c.respWire {
		return fmt.Errorf("%s %s: client got %d with %d bytes, want %d with %d", c.method, c.path, resp.StatusCode, n, c.status, c.respWire)
	}
	return nil
}

// check compares the sensor's record of each call with the call.
func checkCalls(t *testing.T, calls []liveCall, txs []*wire.Transaction) {
	t.Helper()
	got := byPath(txs, "")
	missing := 0
	for _, c := range calls {
		tx := got[c.path]
		if tx == nil {
			missing++
			if missing <= 5 {
				t.Errorf("%s %s?%s not reported", c.method, c.path, c.query)
			}
			continue
		}
		if tx.Method != c.method || tx.Query != c.query || tx.Status != c.status ||
			tx.RequestBodyLen != int64(c.reqLen) || tx.ResponseBodyLen != c.respLen || tx.ResponseBodyWireLen != c.respWire ||
			tx.Flags.Has(wire.FlagGap) || tx.Flags.Has(wire.FlagNoResponse) {
			t.Errorf("%s %s?%s (request %d bytes): reported %s status %d request %d response %d (wire %d) flags %v; want status %d response %d (wire %d)",
				c.method, c.path, c.query, c.reqLen, tx.Method, tx.Status, tx.RequestBodyLen, tx.ResponseBodyLen, tx.ResponseBodyWireLen,
				tx.Flags, c.status, c.respLen, c.respWire)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d calls not reported", missing, len(calls))
	}
}

// TestLiveHTTP1 captures a real net/http server (namespace A) and clients
// (namespace B) with AF_PACKET on A's veth, with one and two fanout
// workers: every call is reported with its method, path, status and body
// lengths, and the kernel dropped nothing.
func TestLiveHTTP1(t *testing.T) {
	pair := newPair(t, "as-live-1", 201, 1)
	serveIn(t, pair.NSA, pair.AddrA+":8080", &http.Server{Handler: http.HandlerFunc(liveHandler)})
	base := "http://" + pair.AddrA + ":8080"
	for _, fanout := range []int{1, 2} {
		t.Run(fmt.Sprintf("fanout%d", fanout), func(t *testing.T) {
			cfg := config.Default().Sensor
			cfg.Interface, cfg.Fanout, cfg.RingSize = pair.DevA, fanout, 8<<20
			s := startLive(t, pair.NSA, cfg)
			probe := nsClient(pair.NSB, false)
			s.ready(t, func(p string) error {
				resp, err := probe.Get(base + p)
				if err == nil {
					resp.Body.Close()
				}
				return err
			})
			prefix := fmt.Sprintf("f%d", fanout)
			calls := liveCalls(prefix, 84)
			// Three clients at once: two keep-alive, one with a new
			// connection per request.
			clients := []*http.Client{nsClient(pair.NSB, true), nsClient(pair.NSB, true), nsClient(pair.NSB, false)}
			var wg sync.WaitGroup
			errs := make(chan error, len(calls))
			for k, cl := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := k; i < len(calls); i += len(clients) {
						if err := calls[i].do(cl, base); err != nil {
							errs <- err
						}
					}
					cl.CloseIdleConnections()
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			txs := s.waitFor(func(txs []*wire.Transaction) bool {
				n := 0
				for _, tx := range txs {
					if strings.HasPrefix(tx.Path, "/"+prefix+"/") {
						n++
					}
				}
				return n >= len(calls)
			})
			st := s.stop(t)
			checkCalls(t, calls, txs)
			if st.KernelDrops != 0 || st.Dropped != 0 {
				t.Errorf("kernel drops %d, records dropped %d; want 0", st.KernelDrops, st.Dropped)
			}
			t.Logf("fanout %d: %d packets, %d records, capture loss %d bytes", fanout, st.Packets, st.Transactions, st.CaptureLossBytes)
		})
	}
}
