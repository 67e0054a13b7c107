package httpparse

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// recConn records what a client connection wrote and read, in order, as
// the events reassembly would deliver.
type recConn struct {
	net.Conn
	mu     *sync.Mutex
	events *[]event
}

func (c recConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	*c.events = append(*c.events, event{kind: "data", dir: stream.ClientToServer, data: append([]byte(nil), b...)})
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c recConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.mu.Lock()
		*c.events = append(*c.events, event{kind: "data", dir: stream.ServerToClient, data: append([]byte(nil), b[:n]...)})
		c.mu.Unlock()
	}
	return n, err
}

// TestAgainstNetHTTP runs a real net/http client and server on loopback,
// records each connection's bytes, parses them and checks that every
// transaction the client made is found with its method, path, status and
// body lengths.
func TestAgainstNetHTTP(t *testing.T) {
	payload := bytes.Repeat([]byte(`{"k":"v","n":12345},`), 300)
	mux := http.NewServeMux()
	mux.HandleFunc("/json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
		w.Write(payload)
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 5; i++ {
			w.Write(payload[:1000])
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/gzip", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		zw.Write(payload)
		zw.Close()
	})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/notmodified", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotModified) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusCreated)
		w.Write(b)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var mu sync.Mutex
	var conns []*[]event
	tr := &http.Transport{
		DisableCompression:    true,
		ExpectContinueTimeout: 5 * time.Second,
		MaxIdleConnsPerHost:   4,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			evs := &[]event{}
			mu.Lock()
			conns = append(conns, evs)
			mu.Unlock()
			return recConn{Conn: c, mu: &mu, events: evs}, nil
		},
	}
	client := &http.Client{Transport: tr}

	type want struct {
		method, path    string
		status          int
		reqLen, respLen int64
	}
	var wants []want
	do := func(method, path string, body io.Reader, reqLen int64, mut func(*http.Request)) {
		req, err := http.NewRequest(method, srv.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if mut != nil {
			mut(req)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		n := int64(len(b))
		if resp.Header.Get("Content-Encoding") == "gzip" {
			zr, _ := gzip.NewReader(bytes.NewReader(b))
			plain, _ := io.ReadAll(zr)
			n = int64(len(plain))
		}
		p, _, _ := strings.Cut(path, "?") // the record keeps the query apart
		wants = append(wants, want{method, p, resp.StatusCode, reqLen, n})
	}
	for i := 0; i < 3; i++ {
		do("GET", "/json", nil, 0, nil)
		do("HEAD", "/json", nil, 0, nil)
		do("GET", "/chunked", nil, 0, nil)
		do("GET", "/gzip", nil, 0, nil)
		do("DELETE", "/nocontent", nil, 0, nil)
		do("GET", "/notmodified", nil, 0, nil)
		do("POST", "/echo", bytes.NewReader(payload), int64(len(payload)), nil)
		do("PUT", "/echo", io.MultiReader(bytes.NewReader(payload[:100]), strings.NewReader("tail")), 104, nil) // chunked request
		do("POST", "/echo", bytes.NewReader(payload[:500]), 500, func(r *http.Request) { r.Header.Set("Expect", "100-continue") })
		do("GET", "/json?i="+fmt.Sprint(i), nil, 0, func(r *http.Request) { r.Close = true })
	}
	tr.CloseIdleConnections()
	srv.Close()

	var got []want
	f := NewFactory(Options{BodyLimit: 1 << 20}, nil, nil)
	mu.Lock()
	defer mu.Unlock()
	for id, evs := range conns {
		p := f(stream.ConnInfo{ID: uint64(id)}, func(tx *wire.Transaction) {
			if tx.Flags != 0 {
				t.Errorf("%s %s flagged %v", tx.Method, tx.Path, tx.Flags)
			}
			got = append(got, want{tx.Method, tx.Path, tx.Status, tx.RequestBodyLen, tx.ResponseBodyLen})
		})
		ts := t0
		for _, e := range *evs {
			ts = ts.Add(time.Millisecond)
			p.Data(e.dir, e.data, ts)
		}
		p.Close("fin", ts)
	}
	key := func(w want) string {
		return fmt.Sprintf("%s %s %d req=%d resp=%d", w.method, w.path, w.status, w.reqLen, w.respLen)
	}
	var ws, gs []string
	for _, w := range wants {
		ws = append(ws, key(w))
	}
	for _, g := range got {
		gs = append(gs, key(g))
	}
	sort.Strings(ws)
	sort.Strings(gs)
	if strings.Join(ws, "\n") != strings.Join(gs, "\n") {
		t.Errorf("parsed transactions differ from the client's:\nclient:\n%s\nparsed:\n%s", strings.Join(ws, "\n"), strings.Join(gs, "\n"))
	}
	// The same real traffic one byte per segment and in random splits.
	for id, evs := range conns {
		sc := script{opts: Options{BodyLimit: 1 << 20}, events: *evs}
		want := render(runScript(sc, whole, nil))
		for name, split := range map[string]splitter{"bytewise": bytewise, "random": randomSplit(int64(id))} {
			if got := render(runScript(sc, split, nil)); !bytes.Equal(got, want) {
				t.Errorf("connection %d, %s split changed the records:\n%s", id, name, diffLines(string(want), string(got)))
			}
		}
	}
	if len(conns) < 2 {
		t.Errorf("%d connections: keep-alive and Connection: close were both meant to be exercised", len(conns))
	}
}
