package capture

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/apiscout/apiscout/internal/pcapgen"
)

var t0 = time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC)

// conv is a short HTTP exchange starting at start.
func conv(start time.Time, port uint16) []pcapgen.Packet {
	return pcapgen.NewConn(netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port), netip.MustParseAddrPort("10.0.0.2:80"), start).
		Handshake().Client([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")).Server([]byte("HTTP/1.1 204 No Content\r\n\r\n")).Close().Packets()
}

func pcapBytes(t testing.TB, pkts []pcapgen.Packet) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := pcapgen.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func pcapngBytes(t testing.TB, pkts []pcapgen.Packet) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriter(&b, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: len(p.Data)}
		if err := w.WritePacket(ci, p.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gzipped(t testing.TB, b []byte) []byte {
	var out bytes.Buffer
	z := gzip.NewWriter(&out)
	z.Write(b)
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func write(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// readAll reads every packet; err is the error that ended the read (nil
// at the end of input).
func readAll(paths ...string) ([]Packet, error) {
	fs, err := OpenFiles(paths)
	if err != nil {
		return nil, err
	}
	defer fs.Close()
	var out []Packet
	for {
		p, err := fs.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, Packet{Data: bytes.Clone(p.Data), CI: p.CI, Link: p.Link})
	}
}

func TestFormats(t *testing.T) {
	dir := t.TempDir()
	pkts := conv(t0, 40000)
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"a.pcap", pcapBytes(t, pkts)},
		{"a.pcapng", pcapngBytes(t, pkts)},
		{"a.pcap.gz", gzipped(t, pcapBytes(t, pkts))},
		{"a.pcapng.gz", gzipped(t, pcapngBytes(t, pkts))},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := readAll(write(t, dir, c.name, c.data))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(pkts) {
				t.Fatalf("%d packets, want %d", len(got), len(pkts))
			}
			for i, p := range got {
				if !bytes.Equal(p.Data, pkts[i].Data) || !p.CI.Timestamp.Equal(pkts[i].Time) || p.Link != layers.LinkTypeEthernet {
					t.Fatalf("packet %d differs: %v %v", i, p.CI.Timestamp, p.Link)
				}
			}
		})
	}
}

// Several files are merged in packet-time order, whatever order they
// are named in.
func TestMergeByTime(t *testing.T) {
	dir := t.TempDir()
	late := write(t, dir, "late.pcap", pcapBytes(t, conv(t0.Add(time.Second), 40001)))
	early := write(t, dir, "early.pcapng", pcapngBytes(t, conv(t0, 40000)))
	got, err := readAll(late, early)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(got); i++ {
		if got[i].CI.Timestamp.Before(got[i-1].CI.Timestamp) {
			t.Fatalf("packet %d at %v after %v", i, got[i].CI.Timestamp, got[i-1].CI.Timestamp)
		}
	}
	if len(got) != 2*len(conv(t0, 1)) {
		t.Errorf("%d packets", len(got))
	}
}

// Bad files fail with their name; a truncated one delivers what came
// before the cut, then says it was truncated.
func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := pcapBytes(t, conv(t0, 40000))
	for _, c := range []struct {
		name, want string
		data       []byte
		delivered  int
	}{
		{name: "empty.pcap", data: nil, want: "too short"},
		{name: "text.pcap", data: []byte("GET / HTTP/1.1\r\n\r\n"), want: "not a pcap or pcapng"},
		{name: "badgzip.pcap", data: []byte{0x1f, 0x8b, 0, 0, 1, 2}, want: "gzip"},
		{name: "cut.pcap", data: good[:len(good)-10], want: "truncated", delivered: len(conv(t0, 1)) - 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := readAll(write(t, dir, c.name, c.data))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.name) {
				t.Fatalf("err %v, want one naming %s and saying %q", err, c.name, c.want)
			}
			if len(got) != c.delivered {
				t.Errorf("%d packets delivered before the error, want %d", len(got), c.delivered)
			}
		})
	}
	if _, err := readAll(filepath.Join(dir, "missing.pcap")); err == nil || !strings.Contains(err.Error(), "missing.pcap") {
		t.Errorf("missing file: %v", err)
	}
}

// FuzzReadFile reads arbitrary bytes as a capture file: an error or
// packets, never a panic, and never a packet larger than the file.
func FuzzReadFile(f *testing.F) {
	pkts := conv(t0, 40000)
	f.Add(pcapBytes(f, pkts))
	f.Add(pcapngBytes(f, pkts))
	f.Add(gzipped(f, pcapBytes(f, pkts[:2])))
	f.Add([]byte{0xd4, 0xc3, 0xb2, 0xa1})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := write(t, dir, "fuzz.pcap", data)
		got, _ := readAll(path)
		for _, p := range got {
			if len(p.Data) > 64<<20 {
				t.Fatalf("a %d-byte packet from a %d-byte file", len(p.Data), len(data))
			}
		}
	})
}
