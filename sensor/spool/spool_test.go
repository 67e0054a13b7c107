package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func recs(from, n int) []Record {
	var out []Record
	for i := from; i < from+n; i++ {
		r := Record{Kind: 1, Key: []byte(fmt.Sprint("svc", i%3)), Value: bytes.Repeat([]byte{byte(i)}, 100+i%50)}
		if i%2 == 0 {
			r.Meta = []byte(fmt.Sprint("origin", i))
		}
		out = append(out, r)
	}
	return out
}

func drain(t *testing.T, s *Spool) []Record {
	t.Helper()
	var got []Record
	for {
		n, err := s.Replay(func(r []Record) error { got = append(got, r...); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			if rn, _ := s.Len(); rn == 0 {
				return got
			}
		}
	}
}

func TestOrderAndRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 1<<30, FsyncBatch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(recs(0, 500)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A restarted sensor finds what was spooled and appends after it.
	s2, err := Open(dir, 1<<30, FsyncBatch)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := s2.Len(); n != 500 {
		t.Fatalf("after restart %d records waiting", n)
	}
	s2.Append(recs(500, 500))
	got := drain(t, s2)
	want := recs(0, 1000)
	if len(got) != len(want) {
		t.Fatalf("%d records replayed, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Value, want[i].Value) || !bytes.Equal(got[i].Key, want[i].Key) ||
			!bytes.Equal(got[i].Meta, want[i].Meta) || got[i].Kind != want[i].Kind {
			t.Fatalf("record %d out of order or changed", i)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("%d files left after replay", len(ents))
	}
}

func TestLimit(t *testing.T) {
	s, _ := Open(t.TempDir(), 10_000, FsyncNever)
	n, err := s.Append(recs(0, 1000))
	if !errors.Is(err, ErrFull) || n == 0 || n >= 1000 {
		t.Fatalf("wrote %d, err %v", n, err)
	}
	if _, b := s.Len(); b > 10_000 {
		t.Fatalf("%d bytes over the limit", b)
	}
}

func TestFailedSendKeepsRecords(t *testing.T) {
	s, _ := Open(t.TempDir(), 1<<30, FsyncAlways)
	s.Append(recs(0, 10))
	if _, err := s.Replay(func([]Record) error { return errors.New("broker down") }); err == nil {
		t.Fatal("error lost")
	}
	if n, _ := s.Len(); n != 10 {
		t.Fatalf("%d records after a failed send", n)
	}
	if got := drain(t, s); len(got) != 10 {
		t.Fatalf("%d replayed", len(got))
	}
}

func TestCorruptTail(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, 1<<30, FsyncBatch)
	s.Append(recs(0, 20))
	s.Close()
	seg := filepath.Join(dir, fmt.Sprintf("%020d.seg", 1))
	b, _ := os.ReadFile(seg)
	b[len(b)-10] ^= 0xff // flip a byte in the last record
	os.WriteFile(seg, b, 0o600)
	s2, _ := Open(dir, 1<<30, FsyncBatch)
	got := drain(t, s2)
	if len(got) != 19 || s2.Corrupt != 1 {
		t.Fatalf("%d good records, %d corrupt", len(got), s2.Corrupt)
	}
}

func FuzzSegment(f *testing.F) {
	f.Add([]byte{0, 0, 0, 6, 1, 2, 3, 4, 1, 0, 0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.seg", 1)), b, 0o600)
		s, err := Open(dir, 1<<30, FsyncNever)
		if err != nil {
			t.Fatal(err)
		}
		s.Replay(func([]Record) error { return nil })
	})
}

func BenchmarkAppend(b *testing.B) {
	s, _ := Open(b.TempDir(), 1<<40, FsyncBatch)
	batch := recs(0, 100)
	b.ReportAllocs()
	b.SetBytes(int64(100 * 130))
	for i := 0; i < b.N; i++ {
		s.Append(batch)
	}
}

// A damaged record in the middle of a segment costs that record only:
// replay goes on at the next record that checks out, in order.
func TestCorruptMiddle(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, 1<<30, FsyncBatch)
	want := recs(0, 20)
	s.Append(want)
	s.Close()
	seg := filepath.Join(dir, fmt.Sprintf("%020d.seg", 1))
	b, _ := os.ReadFile(seg)
	// Find record 5's frame and flip a byte of its payload.
	pos := 0
	for i := 0; i < 5; i++ {
		pos += 8 + int(binary.BigEndian.Uint32(b[pos:pos+4]))
	}
	b[pos+20] ^= 0xff
	os.WriteFile(seg, b, 0o600)
	s2, _ := Open(dir, 1<<30, FsyncBatch)
	got := drain(t, s2)
	if len(got) != 19 || s2.CorruptRecords() != 1 {
		t.Fatalf("%d good records, %d corrupt; want 19 and 1", len(got), s2.CorruptRecords())
	}
	for i, j := 0, 0; i < len(want); i++ {
		if i == 5 {
			continue
		}
		if !bytes.Equal(got[j].Value, want[i].Value) {
			t.Fatalf("record %d out of order after the damaged one", i)
		}
		j++
	}
}
