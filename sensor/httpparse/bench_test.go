package httpparse

import (
	"fmt"
	"testing"

	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

var (
	smallReq  = []byte("GET /api/v1/users/42?fields=name,email HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: Go-http-client/1.1\r\nAccept: application/json\r\nAuthorization: Bearer abc.def.ghi\r\nAccept-Encoding: gzip\r\n\r\n")
	smallResp = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Tue, 24 Nov 2026 10:00:00 GMT\r\nContent-Length: 49\r\n\r\n{\"id\":42,\"name\":\"alice\",\"email\":\"a@example.com\"}\n")
)

// BenchmarkSmallTransaction: one small keep-alive GET and its JSON
// response per iteration on a long-lived connection — the parsing
// overhead per transaction, record allocation included.
func BenchmarkSmallTransaction(b *testing.B) {
	f := NewFactory(Options{}, nil, nil)
	n := 0
	p := f(stream.ConnInfo{ID: 1, Client: clientAddr, Server: serverAddr}, func(*wire.Transaction) { n++ })
	b.ReportAllocs()
	b.SetBytes(int64(len(smallReq) + len(smallResp)))
	for i := 0; i < b.N; i++ {
		p.Data(stream.ClientToServer, smallReq, t0)
		p.Data(stream.ServerToClient, smallResp, t0)
	}
	if n != b.N {
		b.Fatalf("%d records for %d transactions", n, b.N)
	}
}

// BenchmarkChunkedGzip: a chunked, gzip-encoded 2.7 KB JSON response.
func BenchmarkChunkedGzip(b *testing.B) {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" + string(chunk(gz(jsonBody), 256)))
	f := NewFactory(Options{}, nil, nil)
	p := f(stream.ConnInfo{ID: 1, Client: clientAddr, Server: serverAddr}, func(*wire.Transaction) {})
	b.ReportAllocs()
	b.SetBytes(int64(len(smallReq) + len(resp)))
	for i := 0; i < b.N; i++ {
		p.Data(stream.ClientToServer, smallReq, t0)
		p.Data(stream.ServerToClient, resp, t0)
	}
}

// BenchmarkSegmented: the small transaction delivered in 1460-byte
// segments of a large body, as on the wire.
func BenchmarkLargeBody(b *testing.B) {
	for _, size := range []int{16 << 10, 1 << 20} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			body := make([]byte, size)
			head := []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", size))
			f := NewFactory(Options{}, nil, nil)
			p := f(stream.ConnInfo{ID: 1, Client: clientAddr, Server: serverAddr}, func(*wire.Transaction) {})
			b.ReportAllocs()
			b.SetBytes(int64(len(smallReq) + len(head) + size))
			for i := 0; i < b.N; i++ {
				p.Data(stream.ClientToServer, smallReq, t0)
				p.Data(stream.ServerToClient, head, t0)
				for off := 0; off < size; off += 1460 {
					p.Data(stream.ServerToClient, body[off:min(off+1460, size)], t0)
				}
			}
		})
	}
}

// BenchmarkNewConnection: a short connection with one transaction.
func BenchmarkNewConnection(b *testing.B) {
	f := NewFactory(Options{}, nil, nil)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p := f(stream.ConnInfo{ID: uint64(i), Client: clientAddr, Server: serverAddr}, func(*wire.Transaction) {})
		p.Data(stream.ClientToServer, smallReq, t0)
		p.Data(stream.ServerToClient, smallResp, t0)
		p.Close("fin", t0)
	}
}
