package alert

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// memoryCap bounds a receiver's queue when there is no outbox directory;
// beyond it the oldest events are dropped and counted.
const memoryCap = 10000

// queue is one receiver's outbox: a FIFO of events, mirrored one file per
// event in dir/<receiver>/ when dir is set. A file is written (to a
// temporary name, synced, then renamed) before push returns and removed
// after delivery, so a crash at any point leaves either no file or a
// whole one; a duplicate delivery after a crash is possible and receivers
// deduplicate by event id.
type queue struct {
	dir  string // "" for memory only
	mu   sync.Mutex
	seq  uint64
	q    []*item
	wake chan struct{}
}

type item struct {
	seq   uint64
	file  string
	first time.Time // wall clock of queueing, for alerts.max_age
	ev    Event
}

func openQueue(base, name string) (*queue, error) {
	q := &queue{wake: make(chan struct{}, 1)}
	if base == "" {
		return q, nil
	}
	q.dir = filepath.Join(base, name)
	if err := os.MkdirAll(filepath.Join(q.dir, "dead"), 0o750); err != nil {
		return nil, fmt.Errorf("alerts.outbox_dir: %w", err)
	}
	ents, err := os.ReadDir(q.dir)
	if err != nil {
		return nil, fmt.Errorf("alerts.outbox_dir: %w", err)
	}
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".json") {
			if strings.HasSuffix(n, ".tmp") {
				_ = os.Remove(filepath.Join(q.dir, n)) // a write cut by a crash
			}
			continue
		}
		seqStr, _, _ := strings.Cut(n, "-")
		seq, err := strconv.ParseUint(seqStr, 10, 64)
		if err != nil {
			continue
		}
		path := filepath.Join(q.dir, n)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("alert outbox: %w", err)
		}
		var ev Event
		if err := json.Unmarshal(b, &ev); err != nil {
			// Unreadable: keep it for a person, out of the way.
			_ = os.Rename(path, filepath.Join(q.dir, "dead", n))
			continue
		}
		first := time.Now()
		if info, err := e.Info(); err == nil {
			first = info.ModTime()
		}
		q.q = append(q.q, &item{seq: seq, file: path, first: first, ev: ev})
		q.seq = max(q.seq, seq)
	}
	slices.SortFunc(q.q, func(a, b *item) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	return q, nil
}

// push appends ev; it returns how many old events were dropped to make
// room (memory mode only).
func (q *queue) push(ev *Event) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seq++
	it := &item{seq: q.seq, first: time.Now(), ev: *ev}
	dropped := 0
	if q.dir != "" {
		b, err := json.Marshal(ev)
		if err != nil {
			return 0, err
		}
		it.file = filepath.Join(q.dir, fmt.Sprintf("%020d-%s.json", it.seq, ev.ID))
		if err := writeFileSync(it.file, b); err != nil {
			return 0, err
		}
	} else if len(q.q) >= memoryCap {
		dropped = len(q.q) - memoryCap + 1
		q.q = q.q[dropped:]
	}
	q.q = append(q.q, it)
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return dropped, nil
}

func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func (q *queue) peek() (*item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) == 0 {
		return nil, false
	}
	return q.q[0], true
}

func (q *queue) remove(it *item) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := slices.Index(q.q, it); i >= 0 {
		q.q = slices.Delete(q.q, i, i+1)
	}
	if it.file != "" {
		_ = os.Remove(it.file)
	}
}

func (q *queue) deadLetter(it *item) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := slices.Index(q.q, it); i >= 0 {
		q.q = slices.Delete(q.q, i, i+1)
	}
	if it.file == "" {
		return nil
	}
	return os.Rename(it.file, filepath.Join(q.dir, "dead", filepath.Base(it.file)))
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.q)
}

func (q *queue) snapshot() []Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]Event, 0, len(q.q))
	for _, it := range q.q {
		out = append(out, it.ev)
	}
	return out
}
