package capture

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"container/heap"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Files reads capture files and merges them in packet-time order.
type Files struct {
	files []*file
	h     fileHeap
	// read counts bytes read from disk (compressed), for progress.
	read  atomic.Int64
	total int64
	cur   *file
}

type file struct {
	idx  int
	path string
	f    *os.File
	r    packetReader
	ng   *pcapgo.NgReader
	link layers.LinkType
	next Packet
	ok   bool
}

type packetReader interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// countingReader counts the bytes read from disk.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// OpenFiles opens every path; a file that is missing, empty or not a
// capture fails here with its name, before anything is read.
func OpenFiles(paths []string) (*Files, error) {
	fs := &Files{}
	for _, p := range paths {
		f, err := fs.open(p)
		if err != nil {
			fs.Close()
			return nil, err
		}
		f.idx = len(fs.files)
		fs.files = append(fs.files, f)
	}
	for _, f := range fs.files {
		if err := f.advance(); err != nil && !errors.Is(err, io.EOF) {
			fs.Close()
			return nil, err
		}
		if f.ok {
			fs.h = append(fs.h, f)
		}
	}
	heap.Init(&fs.h)
	return fs, nil
}

func (fs *Files) open(path string) (*file, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("capture file: %w", err)
	}
	if st, err := f.Stat(); err == nil {
		fs.total += st.Size()
	}
	br := bufio.NewReaderSize(countingReader{f, &fs.read}, 1<<20)
	var r io.Reader = br
	magic, err := br.Peek(4)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("capture file %s: too short to be a capture (%d bytes)", path, len(magic))
	}
	if magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("capture file %s: gzip: %w", path, err)
		}
		gbr := bufio.NewReaderSize(gz, 1<<20)
		if magic, err = gbr.Peek(4); err != nil {
			f.Close()
			return nil, fmt.Errorf("capture file %s: compressed data too short to be a capture", path)
		}
		r = gbr
	}
	out := &file{path: path, f: f}
	if bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		ng, err := pcapgo.NewNgReader(r, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("capture file %s: pcapng: %w", path, err)
		}
		out.r, out.ng, out.link = ng, ng, ng.LinkType()
	} else {
		pr, err := pcapgo.NewReader(r)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("capture file %s: not a pcap or pcapng file: %w", path, err)
		}
		out.r, out.link = pr, pr.LinkType()
	}
	return out, nil
}

// advance reads the file's next packet into f.next.
func (f *file) advance() error {
	data, ci, err := f.r.ReadPacketData()
	if err != nil {
		f.ok = false
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("capture file %s: truncated: %w", f.path, err)
		}
		return fmt.Errorf("capture file %s: %w", f.path, err)
	}
	link := f.link
	if f.ng != nil {
		if intf, err := f.ng.Interface(ci.InterfaceIndex); err == nil {
			link = intf.LinkType
		}
	}
	f.next = Packet{Data: data, CI: ci, Link: link}
	f.ok = true
	return nil
}

// Next returns the earliest pending packet of all files. A truncated or
// corrupt file ends with an error naming it; packets before it were
// delivered.
func (fs *Files) Next() (Packet, error) {
	if fs.cur != nil {
		err := fs.cur.advance()
		if fs.cur.ok {
			heap.Push(&fs.h, fs.cur)
		}
		fs.cur = nil
		if err != nil && !errors.Is(err, io.EOF) {
			return Packet{}, err
		}
	}
	if len(fs.h) == 0 {
		return Packet{}, io.EOF
	}
	f := heap.Pop(&fs.h).(*file)
	fs.cur = f
	return f.next, nil
}

// Progress reports bytes read from disk and the files' total size.
func (fs *Files) Progress() (read, total int64) { return fs.read.Load(), fs.total }

// Close closes every file.
func (fs *Files) Close() error {
	var errs []error
	for _, f := range fs.files {
		if err := f.f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	fs.files = nil
	return errors.Join(errs...)
}

// fileHeap orders files by their next packet's time; ties go to the file
// named first, so merging is deterministic.
type fileHeap []*file

func (h fileHeap) Len() int { return len(h) }
func (h fileHeap) Less(i, j int) bool {
	ti, tj := h[i].next.CI.Timestamp, h[j].next.CI.Timestamp
	if ti.Equal(tj) {
		return h[i].idx < h[j].idx
	}
	return ti.Before(tj)
}
func (h fileHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *fileHeap) Push(x any)   { *h = append(*h, x.(*file)) }
func (h *fileHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
