package httpparse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// body accumulates one message body as it streams past. Identity bodies
// keep their first BodyLimit bytes directly (that slice becomes the
// record's); content-encoded bodies keep up to InspectionDepth compressed
// bytes in a buffer reused per direction and are decoded at the end,
// because the decoders pull from a reader and the stream pushes.
type body struct {
	wire     int64
	keep     []byte
	coded    bool
	encoding string
	cut      bool // bytes past the keep limit were not kept
	hole     bool // a gap inside the body: nothing is kept after it
}

func (b *body) reset(encoding string, expect int64, h *half) {
	*b = body{encoding: encoding}
	if encoding != "" && !isIdentity(encoding) {
		b.coded = true
		if h.zbufp == nil {
			h.zbufp = h.c.f.zbufs.get()
		}
		b.keep = (*h.zbufp)[:0]
		return
	}
	if expect > 0 {
		n := int64(h.c.f.opts.BodyLimit)
		if expect < n {
			n = expect
		}
		if n > 0 {
			b.keep = make([]byte, 0, n)
		}
	}
}

func (b *body) write(p []byte, o *Options) {
	b.wire += int64(len(p))
	if b.hole || b.cut {
		if !b.hole {
			b.cut = true
		}
		return
	}
	limit := int64(o.BodyLimit)
	if b.coded {
		limit = o.InspectionDepth
	}
	room := limit - int64(len(b.keep))
	if int64(len(p)) > room {
		p = p[:room]
		b.cut = true
	}
	if len(p) > 0 {
		b.keep = append(b.keep, p...)
	}
}

// skip accounts for n body bytes lost in a gap.
func (b *body) skip(n int64) {
	b.wire += n
	b.hole = true
}

func isIdentity(enc string) bool {
	for _, c := range strings.Split(enc, ",") {
		if c = trimOWS(c); c != "" && !equalFold(c, "identity") {
			return false
		}
	}
	return true
}

// bufPool recycles byte buffers through pointers, so a Put allocates
// nothing; buffers grown past max are left to the collector.
type bufPool struct {
	p       sync.Pool
	initial int
	max     int
}

func (b *bufPool) get() *[]byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return v
	}
	s := make([]byte, 0, b.initial)
	return &s
}

// put returns *p, whose current contents are s (s may have grown).
func (b *bufPool) put(p *[]byte, s []byte) {
	if cap(s) > b.max {
		return
	}
	*p = s[:0]
	b.p.Put(p)
}

// decodeResult says how a content decoding ended.
type decodeResult uint8

const (
	decodeOK decodeResult = iota
	decodeError
	decodeLimit
	decodeUnknown
)

// decoders pools the content decoders of all connections of a factory:
// a gzip or brotli reader holds tens of KiB of window state, too much to
// allocate per body.
type decoders struct {
	gzip, zlib, flate, br, zstd, scratch sync.Pool
}

type coding uint8

const (
	codingGzip coding = iota + 1
	codingDeflate
	codingBr
	codingZstd
)

// errUnknownCoding marks a Content-Encoding the sensor cannot decode.
var errUnknownCoding = errors.New("unknown content coding")

func parseCodings(enc string, out *[2]coding) (int, error) {
	n := 0
	for len(enc) > 0 {
		var c string
		if i := strings.IndexByte(enc, ','); i >= 0 {
			c, enc = trimOWS(enc[:i]), enc[i+1:]
		} else {
			c, enc = trimOWS(enc), ""
		}
		var k coding
		switch {
		case c == "" || equalFold(c, "identity"):
			continue
		case equalFold(c, "gzip") || equalFold(c, "x-gzip"):
			k = codingGzip
		case equalFold(c, "deflate"):
			k = codingDeflate
		case equalFold(c, "br"):
			k = codingBr
		case equalFold(c, "zstd"):
			k = codingZstd
		default:
			return 0, errUnknownCoding
		}
		if n == len(out) {
			return 0, errUnknownCoding
		}
		out[n] = k
		n++
	}
	return n, nil
}

type release func()

func (d *decoders) open(k coding, r io.Reader, innermost bool, in []byte) (io.Reader, release, error) {
	switch k {
	case codingGzip:
		if z, ok := d.gzip.Get().(*gzip.Reader); ok {
			if err := z.Reset(r); err != nil {
				d.gzip.Put(z)
				return nil, nil, err
			}
			return z, func() { d.gzip.Put(z) }, nil
		}
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, func() { d.gzip.Put(z) }, nil
	case codingDeflate:
		// "deflate" is zlib-wrapped by the RFC and raw deflate in some
		// servers; raw is tried when the zlib header is absent.
		if z, ok := d.zlib.Get().(io.ReadCloser); ok {
			if err := z.(zlib.Resetter).Reset(r, nil); err == nil {
				return z, func() { d.zlib.Put(z) }, nil
			}
			d.zlib.Put(z)
		} else if z, err := zlib.NewReader(r); err == nil {
			return z, func() { d.zlib.Put(z) }, nil
		}
		if !innermost {
			return nil, nil, errUnknownCoding
		}
		r = bytes.NewReader(in)
		if f, ok := d.flate.Get().(io.ReadCloser); ok {
			_ = f.(flate.Resetter).Reset(r, nil)
			return f, func() { d.flate.Put(f) }, nil
		}
		f := flate.NewReader(r)
		return f, func() { d.flate.Put(f) }, nil
	case codingBr:
		if b, ok := d.br.Get().(*brotli.Reader); ok {
			if err := b.Reset(r); err != nil {
				return nil, nil, err
			}
			return b, func() { d.br.Put(b) }, nil
		}
		b := brotli.NewReader(r)
		return b, func() { d.br.Put(b) }, nil
	case codingZstd:
		if z, ok := d.zstd.Get().(*zstd.Decoder); ok {
			if err := z.Reset(r); err != nil {
				return nil, nil, err
			}
			return z, func() { _ = z.Reset(nil); d.zstd.Put(z) }, nil
		}
		// One goroutine-free decoder with a window capped at 8 MiB: a
		// frame asking for more is a decode error, not an allocation.
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(8<<20), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, nil, err
		}
		return z, func() { _ = z.Reset(nil); d.zstd.Put(z) }, nil
	}
	return nil, nil, errUnknownCoding
}

// decode removes the content codings enc from in. It keeps the first
// keep decoded bytes, counts all of them up to limit and stops there.
// complete says whether in is the whole body (otherwise running out of
// input is expected, not an error).
func (d *decoders) decode(enc string, in []byte, keep int, limit int64, complete bool) (out []byte, n int64, res decodeResult) {
	var ks [2]coding
	nk, err := parseCodings(enc, &ks)
	if err != nil {
		return nil, 0, decodeUnknown
	}
	if len(in) == 0 || nk == 0 {
		return nil, 0, decodeOK
	}
	var r io.Reader = bytes.NewReader(in)
	var rels [2]release
	defer func() {
		for _, rel := range rels {
			if rel != nil {
				rel()
			}
		}
	}()
	for i := nk - 1; i >= 0; i-- {
		next, rel, err := d.open(ks[i], r, i == nk-1, in)
		if err != nil {
			if !complete && errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, 0, decodeOK
			}
			return nil, 0, decodeError
		}
		r, rels[i] = next, rel
	}
	bp, _ := d.scratch.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 32<<10)
		bp = &b
	}
	defer d.scratch.Put(bp)
	buf := *bp
	for {
		k, err := r.Read(buf)
		if k > 0 {
			if room := keep - len(out); room > 0 {
				if room > k {
					room = k
				}
				if out == nil {
					c := keep
					if c > 4*len(in)+512 {
						c = 4*len(in) + 512
					}
					out = make([]byte, 0, c)
				}
				out = append(out, buf[:room]...)
			}
			n += int64(k)
			if n > limit {
				return out, n, decodeLimit
			}
		}
		if err == io.EOF {
			return out, n, decodeOK
		}
		if err != nil {
			if !complete {
				return out, n, decodeOK
			}
			return out, n, decodeError
		}
		if k == 0 {
			// A reader that makes no progress without an error would spin.
			return out, n, decodeError
		}
	}
}
