package protodetect

import (
	"testing"
	"time"

	"github.com/apiscout/apiscout/sensor/http2parse"
	"github.com/apiscout/apiscout/sensor/stream"
	"github.com/apiscout/apiscout/wire"
)

// tag is a parser that records which factory made it and what it got.
type tag struct {
	name string
	got  *[]string
	data *[]byte
}

func (t tag) Data(d stream.Dir, b []byte, _ time.Time) {
	*t.got = append(*t.got, t.name)
	*t.data = append(*t.data, b...)
}
func (t tag) Gap(stream.Dir, int, time.Time) {}
func (t tag) Tick(time.Time)                 {}
func (t tag) Close(string, time.Time)        {}

func TestDetect(t *testing.T) {
	cases := []struct {
		name   string
		chunks []stream.Dir
		data   [][]byte
		want   string
	}{
		{"http1", []stream.Dir{0}, [][]byte{[]byte("GET / HTTP/1.1\r\n")}, "http1"},
		{"h2 whole", []stream.Dir{0}, [][]byte{[]byte(http2parse.Preface + "\x00\x00")}, "h2"},
		{"h2 split", []stream.Dir{0, 0, 0}, [][]byte{[]byte("PRI * "), []byte("HTTP/2.0\r\n\r\nSM"), []byte("\r\n\r\n")}, "h2"},
		{"tls", []stream.Dir{0}, [][]byte{{0x16, 3, 1, 0, 200, 1}}, "tls"},
		{"tls split", []stream.Dir{0, 0}, [][]byte{{0x16}, {3, 1, 0, 200}}, "tls"},
		{"tls midstream server first", []stream.Dir{1}, [][]byte{{0x16, 3, 3, 0, 90, 2}}, "tls"},
		{"junk", []stream.Dir{0}, [][]byte{{0xde, 0xad, 0xbe, 0xef}}, "http1"},
		{"PRI but not preface", []stream.Dir{0, 1}, [][]byte{[]byte("PRI"), []byte("HTTP/1.1 400 Bad\r\n")}, "http1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			var data []byte
			mk := func(name string) stream.Factory {
				return func(stream.ConnInfo, stream.Emit) stream.Parser { return tag{name, &got, &data} }
			}
			f := NewFactory(Factories{HTTP1: mk("http1"), HTTP2: mk("h2"), TLS: mk("tls")}, nil)
			p := f(stream.ConnInfo{}, func(*wire.Transaction) {})
			var all []byte
			for i, d := range tc.chunks {
				p.Data(d, tc.data[i], time.Unix(1, 0))
				all = append(all, tc.data[i]...)
			}
			p.Close("fin", time.Unix(2, 0))
			if len(got) == 0 || got[0] != tc.want {
				t.Fatalf("chose %v, want %s", got, tc.want)
			}
			if string(data) != string(all) {
				t.Fatalf("parser got %q, want every byte %q", data, all)
			}
		})
	}
}
