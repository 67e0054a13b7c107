package simulate

import (
	"bytes"
	"compress/gzip"
	"strconv"
	"sync"

	"github.com/apiscout/apiscout/wire"
)

// chunkSize is the size of the chunks of a chunked response: servers
// flush a few KB at a time.
const chunkSize = 4000

// RequestBytes is the request as a client sends it.
func RequestBytes(ex *Exchange) []byte {
	b := make([]byte, 0, 256+len(ex.ReqBody))
	b = append(b, ex.Method...)
	b = append(b, ' ')
	b = append(b, ex.Path...)
	if ex.Query != "" {
		b = append(b, '?')
		b = append(b, ex.Query...)
	}
	b = append(b, " HTTP/1.1\r\n"...)
	for _, h := range requestHeaders(ex) {
		b = appendHeader(b, h)
	}
	b = append(b, "\r\n"...)
	return append(b, ex.ReqBody...)
}

// requestHeaders are the request's headers as sent: the exchange's own
// and the framing the client adds.
func requestHeaders(ex *Exchange) []wire.Header {
	hs := ex.ReqHeaders
	if len(ex.ReqBody) > 0 || ex.Method == "POST" || ex.Method == "PUT" || ex.Method == "PATCH" {
		hs = append(hs[:len(hs):len(hs)], wire.Header{Name: "Content-Length", Value: strconv.Itoa(len(ex.ReqBody))})
	}
	return hs
}

// responseWire returns the response's headers as sent (the exchange's own
// and Content-Encoding, Transfer-Encoding or Content-Length) and its body
// after content coding (gzip), before chunking.
func responseWire(ex *Exchange) ([]wire.Header, []byte) {
	body := ex.RespBody
	hs := ex.RespHeaders[:len(ex.RespHeaders):len(ex.RespHeaders)]
	if ex.Gzip {
		var z bytes.Buffer
		w := gzipPool.Get().(*gzip.Writer)
		w.Reset(&z)
		w.Write(body)
		w.Close()
		gzipPool.Put(w)
		body = z.Bytes()
		hs = append(hs, wire.Header{Name: "Content-Encoding", Value: "gzip"})
	}
	if ex.Chunked {
		hs = append(hs, wire.Header{Name: "Transfer-Encoding", Value: "chunked"})
	} else {
		hs = append(hs, wire.Header{Name: "Content-Length", Value: strconv.Itoa(len(body))})
	}
	return hs, body
}

// ResponseBytes is the response as the server sends it, gzip-compressed
// and/or chunked when the exchange says so.
func ResponseBytes(ex *Exchange) []byte {
	hs, body := responseWire(ex)
	b := make([]byte, 0, 256+len(body)+len(body)/chunkSize*8)
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(ex.Status), 10)
	b = append(b, ' ')
	b = append(b, reason(ex.Status)...)
	b = append(b, "\r\n"...)
	for _, h := range hs {
		b = appendHeader(b, h)
	}
	b = append(b, "\r\n"...)
	if !ex.Chunked {
		return append(b, body...)
	}
	for len(body) > 0 {
		n := min(len(body), chunkSize)
		b = strconv.AppendInt(b, int64(n), 16)
		b = append(b, "\r\n"...)
		b = append(b, body[:n]...)
		b = append(b, "\r\n"...)
		body = body[n:]
	}
	return append(b, "0\r\n\r\n"...)
}

func appendHeader(b []byte, h wire.Header) []byte {
	b = append(b, h.Name...)
	b = append(b, ": "...)
	b = append(b, h.Value...)
	return append(b, "\r\n"...)
}

// gzipPool reuses compressors: each one allocates about 1 MiB.
var gzipPool = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

func reason(code int) string {
	switch code {
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 204:
		return "No Content"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 429:
		return "Too Many Requests"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	}
	return "Internal Server Error"
}
