package httpparse

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"

	"github.com/apiscout/apiscout/wire"
)

func gz(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func zl(b []byte) []byte {
	var out bytes.Buffer
	w := zlib.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func rawDeflate(b []byte) []byte {
	var out bytes.Buffer
	w, _ := flate.NewWriter(&out, flate.BestSpeed)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func br(b []byte) []byte {
	var out bytes.Buffer
	w := brotli.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func zst(b []byte) []byte {
	e, _ := zstd.NewWriter(nil)
	return e.EncodeAll(b, nil)
}

var jsonBody = func() []byte {
	var b bytes.Buffer
	b.WriteString("[")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&b, `{"id":%d,"name":"user-%d","email":"u%d@example.com","score":%d},`, i, i*7919%1013, i*104729%7919, i*7919%1000)
	}
	b.WriteString("{}]")
	return b.Bytes()
}()

// chunk frames b as chunks of at most n bytes.
func chunk(b []byte, n int) []byte {
	var out bytes.Buffer
	for len(b) > 0 {
		k := min(n, len(b))
		fmt.Fprintf(&out, "%x\r\n", k)
		out.Write(b[:k])
		out.WriteString("\r\n")
		b = b[k:]
	}
	out.WriteString("0\r\n\r\n")
	return out.Bytes()
}

func response(enc string, body []byte) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s", enc, len(body), body)
}

// encodedCases are written as .case files by -update, so that the golden
// and segmentation tests cover them like the hand-written ones.
func encodedCases() map[string]string {
	req := "GET /data HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\r\n"
	c := func(lines ...string) string { return strings.Join(lines, "\n") + "\n" }
	q := strconv.Quote
	zeros := make([]byte, 10<<20)
	gzResp := response("gzip", gz(jsonBody))
	return map[string]string{
		"enc_gzip":         c("# gzip response, Content-Length framed", "c "+q(req), "s "+q(response("gzip", gz(jsonBody)))),
		"enc_gzip_chunked": c("# gzip response in small chunks", "c "+q(req), "s "+q("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"+string(chunk(gz(jsonBody), 40)))),
		"enc_deflate":      c("# deflate as the RFC says (zlib) and as some servers send it (raw)", "c "+q(req), "s "+q(response("deflate", zl(jsonBody))), "c "+q(req), "s "+q(response("deflate", rawDeflate(jsonBody)))),
		"enc_br":           c("# brotli", "c "+q(req), "s "+q(response("br", br(jsonBody)))),
		"enc_zstd":         c("# zstd", "c "+q(req), "s "+q(response("zstd", zst(jsonBody)))),
		"enc_stacked":      c("# gzip then br applied: decoded in reverse order", "c "+q(req), "s "+q(response("gzip, br", br(gz(jsonBody))))),
		"enc_request_gzip": c("# a gzip request body", "c "+q(fmt.Sprintf("POST /in HTTP/1.1\r\nHost: h\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s", len(gz(jsonBody)), gz(jsonBody))), "s "+q("HTTP/1.1 204 No Content\r\n\r\n")),
		"enc_corrupt":      c("# declared gzip, not gzip: decode_error, wire bytes kept", "c "+q(req), "s "+q(response("gzip", []byte("not gzip at all")))),
		"enc_unknown":      c("# a coding the sensor does not know", "c "+q(req), "s "+q(response("compress", []byte("\x1f\x9d\x90abc")))),
		"enc_bomb":         c("# 10 MiB of zeros in a few KiB: stopped at the decompression limit", "decompress_limit 100000", "body_limit 64", "c "+q(req), "s "+q(response("gzip", gz(zeros)))),
		"enc_body_limit":   c("# decoded body longer than the body limit: cut, length kept", "body_limit 100", "c "+q(req), "s "+q(response("gzip", gz(jsonBody)))),
		"enc_gap":          c("# a gap inside a gzip body: what precedes it is decoded", "c "+q(req), "s "+q(gzResp[:len(gzResp)/2]), "gap s "+strconv.Itoa(len(gzResp)-len(gzResp)/2)),
	}
}

func TestWriteEncodedCases(t *testing.T) {
	for name, text := range encodedCases() {
		file := filepath.Join("testdata", name+".case")
		if *update {
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, err := os.Stat(file); err != nil {
			t.Errorf("%v: run go test -run 'TestWriteEncodedCases|TestGolden' -update", err)
		}
	}
}

// TestEncodings checks the decoded bodies against the input, beside the
// golden files, so a golden file cannot bless a wrong decoding.
func TestEncodings(t *testing.T) {
	for _, tc := range []struct {
		file        string
		wantBody    []byte
		wantLen     int64
		wantFlags   wire.Flags
		notWantFlag wire.Flags
	}{
		{"enc_gzip", jsonBody, int64(len(jsonBody)), 0, wire.FlagDecodeError},
		{"enc_gzip_chunked", jsonBody, int64(len(jsonBody)), 0, wire.FlagDecodeError},
		{"enc_deflate", jsonBody, int64(len(jsonBody)), 0, wire.FlagDecodeError},
		{"enc_br", jsonBody, int64(len(jsonBody)), 0, wire.FlagDecodeError},
		{"enc_zstd", jsonBody, int64(len(jsonBody)), 0, wire.FlagDecodeError},
		{"enc_stacked", jsonBody, int64(len(jsonBody)), 0, wire.FlagDecodeError},
		{"enc_corrupt", []byte("not gzip at all"), 15, wire.FlagDecodeError, 0},
		{"enc_bomb", make([]byte, 64), -1, wire.FlagDecodeError | wire.FlagResponseTruncated, 0},
		{"enc_body_limit", jsonBody[:100], int64(len(jsonBody)), wire.FlagResponseTruncated, wire.FlagDecodeError},
	} {
		t.Run(tc.file, func(t *testing.T) {
			res := runScript(loadCase(t, filepath.Join("testdata", tc.file+".case")), whole, nil)
			if len(res.txs) == 0 {
				t.Fatal("no records")
			}
			for _, tx := range res.txs {
				if !bytes.Equal(tx.ResponseBody, tc.wantBody) {
					t.Errorf("body %q, want %q", tx.ResponseBody, tc.wantBody)
				}
				if tc.wantLen >= 0 && tx.ResponseBodyLen != tc.wantLen {
					t.Errorf("decoded length %d, want %d", tx.ResponseBodyLen, tc.wantLen)
				}
				if tc.wantLen < 0 && (tx.ResponseBodyLen < 100000 || tx.ResponseBodyLen > 100000+64<<10) {
					t.Errorf("bomb decoded length %d, want just past the 100000 limit", tx.ResponseBodyLen)
				}
				if !tx.Flags.Has(tc.wantFlags) || tx.Flags&tc.notWantFlag != 0 {
					t.Errorf("flags %v, want %v and not %v", tx.Flags, tc.wantFlags, tc.notWantFlag)
				}
				if tx.ResponseBodyWireLen == 0 {
					t.Error("wire length not counted")
				}
			}
		})
	}
}
