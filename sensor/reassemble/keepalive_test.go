package reassemble

import (
	"bytes"
	"testing"

	"github.com/apiscout/apiscout/internal/pcapgen"
)

// A TCP keep-alive probe carries one byte of garbage just behind the
// sender's next sequence number (Windows sends a zero byte after two idle
// hours). It is not a retransmission that differs from the first copy:
// no mismatch is counted and the stream is unchanged. It used to flag the
// connection's next transaction retransmit_mismatch.
func TestKeepAliveIsNoMismatch(t *testing.T) {
	req := []byte("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
	c := newConn().Client(req).Server([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
	c.Segment(true, -1, []byte{0}) // the client's probe: its last request byte was '\n'
	c.Segment(true, -1, []byte{'\n'})
	h := newHarness(Options{})
	h.feed(t, c.Close().Packets())
	if h.r.Mismatches != 0 || h.r.OverlapDiffer != 0 {
		t.Errorf("keep-alive counted as a mismatch: %d segments, %d bytes", h.r.Mismatches, h.r.OverlapDiffer)
	}
	if !bytes.Equal(h.conn[0].data[0], req) {
		t.Errorf("client stream %q", h.conn[0].data[0])
	}
	// Two bytes behind next that differ are a retransmission that
	// differs, not a probe; so is one byte the receiver has not
	// acknowledged (it may take that copy).
	for _, tc := range []struct {
		name  string
		build func() *pcapgen.Conn
	}{
		{"two bytes", func() *pcapgen.Conn { return newConn().Client(req).Segment(true, -2, []byte{'X', '\n'}) }},
		{"not acknowledged", func() *pcapgen.Conn {
			return newConn().Segment(true, 0, req).Skip(true, len(req)).Segment(true, -1, []byte{0})
		}},
	} {
		h = newHarness(Options{})
		h.feed(t, tc.build().Close().Packets())
		if h.r.Mismatches != 1 {
			t.Errorf("%s: %d mismatches, want 1", tc.name, h.r.Mismatches)
		}
	}
}
