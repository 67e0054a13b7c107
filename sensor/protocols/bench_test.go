package protocols

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/internal/connrec"
	"github.com/apiscout/apiscout/internal/grpcpeer"
	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

const benchCalls = 200

// record runs benchCalls identical JSON API calls over one connection of
// the given kind against real Go peers and returns the server's bytes.
func record(b *testing.B, kind string) []connrec.Chunk {
	b.Helper()
	ln, err := connrec.Listen()
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	body := bytes.Repeat([]byte(`{"id":123,"name":"widget","price":12.5},`), 20)
	switch kind {
	case "grpc":
		srv := grpcpeer.NewServer(body)
		go srv.Serve(ln)
		defer srv.Stop()
		conn, err := grpc.NewClient(ln.Addr().String(), grpcpeer.DialOptions()...)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < benchCalls; i++ {
			in, out := []byte(fmt.Sprintf(`{"sku":"AB-%04d"}`, i)), []byte(nil)
			if err := conn.Invoke(context.Background(), "/shop.v1.Catalog/GetItem", &in, &out); err != nil {
				b.Fatal(err)
			}
		}
		conn.Close()
	default:
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		}), Protocols: new(http.Protocols)}
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
		go srv.Serve(ln)
		defer srv.Close()
		tr := &http.Transport{Protocols: new(http.Protocols), MaxIdleConnsPerHost: 1}
		if kind == "h2" {
			tr.Protocols.SetUnencryptedHTTP2(true)
		} else {
			tr.Protocols.SetHTTP1(true)
		}
		c := &http.Client{Transport: tr}
		for i := 0; i < benchCalls; i++ {
			resp, err := c.Get(fmt.Sprintf("http://%s/api/v1/items/%d", ln.Addr(), i))
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		tr.CloseIdleConnections()
	}
	time.Sleep(50 * time.Millisecond)
	var all []connrec.Chunk
	for _, c := range ln.Rec.Conns() {
		all = append(all, c...)
	}
	return all
}

// BenchmarkParsers: transactions/s per core through the assembled parsers
// for the same 200 JSON calls carried as HTTP/1.1, h2c and gRPC.
func BenchmarkParsers(b *testing.B) {
	for _, kind := range []string{"http1", "h2", "grpc"} {
		b.Run(kind, func(b *testing.B) {
			chunks := record(b, kind)
			f, err := NewFactory(config.Default().Sensor, zap.NewNop(), nil)
			if err != nil {
				b.Fatal(err)
			}
			size := 0
			for _, c := range chunks {
				size += len(c.Data)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			n := 0
			for i := 0; i < b.N; i++ {
				p := f(stream.ConnInfo{ID: 1}, func(*wire.Transaction) { n++ })
				connrec.Replay(p, chunks, time.Unix(1, 0))
			}
			if n < b.N*benchCalls {
				b.Fatalf("%d transactions for %d runs", n, b.N)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "tx/s")
		})
	}
}
