package simulate

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"strconv"
	"sync"
)

// RequestBytes is the request as a client sends it.
func RequestBytes(ex *Exchange) []byte {
	var b bytes.Buffer
	target := ex.Path
	if ex.Query != "" {
		target += "?" + ex.Query
	}
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", ex.Method, target)
	for _, h := range ex.ReqHeaders {
		b.WriteString(h.Name + ": " + h.Value + "\r\n")
	}
	if len(ex.ReqBody) > 0 || ex.Method == "POST" || ex.Method == "PUT" {
		b.WriteString("Content-Length: " + strconv.Itoa(len(ex.ReqBody)) + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(ex.ReqBody)
	return b.Bytes()
}

// ResponseBytes is the response as the server sends it, gzip-compressed
// and/or chunked when the exchange says so.
func ResponseBytes(ex *Exchange) []byte {
	body := ex.RespBody
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", ex.Status, reason(ex.Status))
	for _, h := range ex.RespHeaders {
		b.WriteString(h.Name + ": " + h.Value + "\r\n")
	}
	if ex.Gzip {
		var z bytes.Buffer
		w := gzipPool.Get().(*gzip.Writer)
		w.Reset(&z)
		w.Write(body)
		w.Close()
		gzipPool.Put(w)
		body = z.Bytes()
		b.WriteString("Content-Encoding: gzip\r\n")
	}
	if ex.Chunked {
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		for len(body) > 0 {
			n := min(len(body), 1000)
			fmt.Fprintf(&b, "%x\r\n", n)
			b.Write(body[:n])
			b.WriteString("\r\n")
			body = body[n:]
		}
		b.WriteString("0\r\n\r\n")
		return b.Bytes()
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	b.Write(body)
	return b.Bytes()
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
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	}
	return "Internal Server Error"
}
