package sensor

import (
	"fmt"
	"os"
	"time"
)

// progress prints one line on a terminal while files are read: packets,
// bytes, rate, ETA. It prints nothing when stderr is not a terminal.
type progress struct {
	on      bool
	read    func() (int64, int64)
	start   time.Time
	last    time.Time
	printed bool
}

func newProgress(enabled bool, read func() (int64, int64)) *progress {
	on := false
	if enabled {
		if st, err := os.Stderr.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			on = true
		}
	}
	now := time.Now()
	return &progress{on: on, read: read, start: now, last: now}
}

func (p *progress) update(packets, txs uint64) {
	if !p.on || time.Since(p.last) < time.Second {
		return
	}
	p.last = time.Now()
	done, total := p.read()
	el := time.Since(p.start).Seconds()
	rate := float64(done) / el
	eta := "?"
	if rate > 0 && total > done {
		eta = (time.Duration(float64(total-done)/rate) * time.Second / time.Second).Round(time.Second).String()
	}
	pct := 0.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	fmt.Fprintf(os.Stderr, "\r%5.1f%%  %d packets  %d transactions  %.1f MB  %.1f MB/s  ETA %s   ",
		pct, packets, txs, float64(done)/1e6, rate/1e6, eta)
	p.printed = true
}

func (p *progress) done() {
	if p.printed {
		fmt.Fprintln(os.Stderr)
	}
}
