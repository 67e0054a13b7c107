// Package spool is the sensor's bounded on-disk queue for records that
// cannot reach Kafka right now. Records are appended to segment files,
// each framed with its length and a CRC-32C, replayed in order when Kafka
// is back, and a restarted sensor resumes what its predecessor left.
// Past the size limit new records are refused (the caller drops and
// counts them): the spool never fills the disk.
package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Fsync policies.
const (
	FsyncAlways = "always" // after every record: slowest, loses nothing on power loss
	FsyncBatch  = "batch"  // after every Append call
	FsyncNever  = "never"  // leave it to the OS
)

// Record is one spooled Kafka message.
type Record struct {
	Key   []byte
	Value []byte
	// Meta is kept with the record and handed back on replay, opaque to
	// the spool (the producer keeps its origin header there); at most 255
	// bytes.
	Meta []byte
	// Kind tells transactions from heartbeats (the content type); below
	// 0x80.
	Kind byte
}

// withMeta marks a record framed with its Meta (kind | withMeta, key
// length, key, meta length, meta, value); records without it are framed
// as the first version of the format wrote them.
const withMeta = 0x80

// ErrFull is returned when the spool is at its size limit.
var ErrFull = errors.New("spool full")

// segmentBytes caps one segment file, so replayed segments can be
// deleted while the rest waits.
const segmentBytes = 16 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Spool is safe for one writer and one reader at a time.
type Spool struct {
	dir   string
	limit int64
	fsync string

	mu      sync.Mutex
	segs    []int64 // segment numbers on disk, oldest first
	sizes   map[int64]int64
	total   int64
	w       *os.File
	bw      *bufio.Writer
	wseg    int64
	records int64 // records on disk
	Corrupt int64 // records skipped on replay because their checksum failed
}

// Open opens (or creates) a spool directory and counts what it holds.
func Open(dir string, limit int64, fsync string) (*Spool, error) {
	switch fsync {
	case FsyncAlways, FsyncBatch, FsyncNever:
	default:
		return nil, fmt.Errorf("spool fsync policy %q is not always, batch or never", fsync)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{dir: dir, limit: limit, fsync: fsync, sizes: map[int64]int64{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	for _, e := range ents {
		var n int64
		if _, err := fmt.Sscanf(e.Name(), "%020d.seg", &n); err != nil || !strings.HasSuffix(e.Name(), ".seg") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		s.segs = append(s.segs, n)
		s.sizes[n] = info.Size()
		s.total += info.Size()
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i] < s.segs[j] })
	for _, n := range s.segs {
		c, _ := s.count(n)
		s.records += c
	}
	return s, nil
}

func (s *Spool) path(n int64) string { return filepath.Join(s.dir, fmt.Sprintf("%020d.seg", n)) }

// Len returns the records and bytes waiting.
func (s *Spool) Len() (records, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records, s.total
}

// Append writes records at the end. When the limit would be passed, it
// writes what fits and returns ErrFull with the number written.
func (s *Spool) Append(recs []Record) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range recs {
		if len(r.Meta) > 255 || r.Kind >= withMeta {
			return i, fmt.Errorf("spool: record kind %d or %d bytes of meta out of range", r.Kind, len(r.Meta))
		}
		size := int64(8 + 1 + 4 + len(r.Key) + len(r.Value))
		if r.Meta != nil {
			size += int64(1 + len(r.Meta))
		}
		if s.total+size > s.limit {
			s.sync()
			return i, ErrFull
		}
		if s.w == nil || s.sizes[s.wseg] >= segmentBytes {
			if err := s.rotate(); err != nil {
				return i, err
			}
		}
		payload := make([]byte, 0, size-8)
		kind := r.Kind
		if r.Meta != nil {
			kind |= withMeta
		}
		payload = append(payload, kind)
		payload = binary.BigEndian.AppendUint32(payload, uint32(len(r.Key)))
		payload = append(payload, r.Key...)
		if r.Meta != nil {
			payload = append(payload, byte(len(r.Meta)))
			payload = append(payload, r.Meta...)
		}
		payload = append(payload, r.Value...)
		var hdr [8]byte
		binary.BigEndian.PutUint32(hdr[:4], uint32(len(payload)))
		binary.BigEndian.PutUint32(hdr[4:], crc32.Checksum(payload, castagnoli))
		if _, err := s.bw.Write(hdr[:]); err != nil {
			return i, fmt.Errorf("spool: %w", err)
		}
		if _, err := s.bw.Write(payload); err != nil {
			return i, fmt.Errorf("spool: %w", err)
		}
		s.sizes[s.wseg] += size
		s.total += size
		s.records++
		if s.fsync == FsyncAlways {
			if err := s.sync(); err != nil {
				return i + 1, err
			}
		}
	}
	return len(recs), s.sync()
}

func (s *Spool) sync() error {
	if s.bw == nil {
		return nil
	}
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if s.fsync != FsyncNever {
		if err := s.w.Sync(); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	return nil
}

func (s *Spool) rotate() error {
	if err := s.closeWriter(); err != nil {
		return err
	}
	next := int64(1)
	if len(s.segs) > 0 {
		next = s.segs[len(s.segs)-1] + 1
	}
	f, err := os.OpenFile(s.path(next), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.w, s.bw, s.wseg = f, bufio.NewWriterSize(f, 256<<10), next
	s.segs = append(s.segs, next)
	s.sizes[next] = 0
	return nil
}

func (s *Spool) closeWriter() error {
	if s.w == nil {
		return nil
	}
	err := s.sync()
	if cerr := s.w.Close(); err == nil {
		err = cerr
	}
	s.w, s.bw = nil, nil
	return err
}

// Replay hands the oldest segment's records to send, in order; when send
// succeeds the segment is deleted. It returns the records replayed, 0 when
// the spool is empty. A record whose checksum fails is skipped (counted
// in Corrupt) and replay goes on at the next record that checks out.
func (s *Spool) Replay(send func([]Record) error) (int, error) {
	s.mu.Lock()
	if len(s.segs) == 0 {
		s.mu.Unlock()
		return 0, nil
	}
	n := s.segs[0]
	if n == s.wseg && s.w != nil {
		// The oldest segment is the one being written: close it so new
		// records go to a fresh one and this one can be replayed whole.
		if err := s.closeWriter(); err != nil {
			s.mu.Unlock()
			return 0, err
		}
	}
	s.mu.Unlock()

	recs, corrupt, err := s.read(n)
	if err != nil {
		return 0, err
	}
	if len(recs) > 0 {
		if err := send(recs); err != nil {
			return 0, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Corrupt += corrupt
	if err := os.Remove(s.path(n)); err != nil && !os.IsNotExist(err) {
		return 0, fmt.Errorf("spool: %w", err)
	}
	s.total -= s.sizes[n]
	s.records -= int64(len(recs)) + corrupt
	if s.records < 0 {
		s.records = 0
	}
	delete(s.sizes, n)
	s.segs = s.segs[1:]
	return len(recs), nil
}

func (s *Spool) count(n int64) (int64, error) {
	recs, corrupt, err := s.read(n)
	return int64(len(recs)) + corrupt, err
}

func (s *Spool) read(n int64) ([]Record, int64, error) {
	b, err := os.ReadFile(s.path(n))
	if err != nil {
		return nil, 0, fmt.Errorf("spool: %w", err)
	}
	var out []Record
	var corrupt int64
	for pos := 0; pos < len(b); {
		if rec, size, ok := frame(b[pos:]); ok {
			out = append(out, rec)
			pos += size
			continue
		}
		// A damaged frame (or a write cut short at the end): count it, and
		// go on at the next offset where a frame checks out, so one bad
		// record does not cost the rest of the segment.
		corrupt++
		next := -1
		for q := pos + 1; q+8 <= len(b); q++ {
			if _, _, ok := frame(b[q:]); ok {
				next = q
				break
			}
		}
		if next < 0 {
			break
		}
		pos = next
	}
	return out, corrupt, nil
}

// frame reads the record framed at the start of b: its length, checksum
// and payload must all check out.
func frame(b []byte) (Record, int, bool) {
	if len(b) < 8 {
		return Record{}, 0, false
	}
	size := binary.BigEndian.Uint32(b[:4])
	if size < 5 || uint64(size) > uint64(len(b)-8) {
		return Record{}, 0, false
	}
	payload := b[8 : 8+size : 8+size]
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(b[4:8]) {
		return Record{}, 0, false
	}
	klen := binary.BigEndian.Uint32(payload[1:5])
	if uint64(klen) > uint64(len(payload)-5) {
		return Record{}, 0, false
	}
	rec := Record{Kind: payload[0] &^ withMeta, Key: payload[5 : 5+klen : 5+klen]}
	rest := payload[5+klen:]
	if payload[0]&withMeta != 0 {
		if len(rest) < 1 || int(rest[0]) > len(rest)-1 {
			return Record{}, 0, false
		}
		m := int(rest[0])
		rec.Meta, rest = rest[1:1+m:1+m], rest[1+m:]
	}
	rec.Value = rest
	return rec, 8 + int(size), true
}

// CorruptRecords counts records skipped on replay because their checksum
// or framing failed.
func (s *Spool) CorruptRecords() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Corrupt
}

// Close flushes and closes the segment being written.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeWriter()
}
