package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrFull is returned by Batcher.Add when the buffer holds its maximum and
// the rows waiting could not be written: the caller keeps its rows and
// stops consuming until a write succeeds (backpressure, nothing dropped).
var ErrFull = errors.New("storage: write buffer full")

// Batcher collects rows for one table and writes them in batches: as soon
// as Size rows wait, and when the oldest waiting row has waited Interval.
// A write that fails leaves its rows buffered, in order, so the next
// attempt sends the same rows (and, cut the same way, the same batches and
// tokens). It buffers at most MaxRows.
//
// Call order: Add any number of times (from one goroutine or several);
// Run in its own goroutine for the time-based flush, or Flush yourself;
// Flush once more before stopping. Rows are stored when the Add that
// reached Size, or a Flush, returned nil: commit source offsets only after
// that (Pending reports 0).
type Batcher[T any] struct {
	write    func(context.Context, []T) error
	size     int
	interval time.Duration
	maxRows  int

	mu      sync.Mutex // held across writes: one write at a time, in order
	buf     []T
	since   time.Time // when the oldest waiting row arrived (writer's clock)
	lastErr error
}

// NewBatcher returns a batcher that calls write. size defaults to 50,000
// rows, interval to 1s, maxRows to 4×size (the memory held while the
// store is down).
func NewBatcher[T any](write func(context.Context, []T) error, size int, interval time.Duration, maxRows int) *Batcher[T] {
	if size <= 0 {
		size = 50000
	}
	if interval <= 0 {
		interval = time.Second
	}
	if maxRows < size {
		maxRows = 4 * size
	}
	return &Batcher[T]{write: write, size: size, interval: interval, maxRows: maxRows}
}

// Add buffers rows and writes the buffer when it reaches the batch size.
// It returns nil when it took the rows (buffered, perhaps written), and an
// error wrapping ErrFull when it did not: the buffer is at its bound and
// writing it failed. Then the caller keeps its rows, pauses and offers
// them again. A failed write of a batch that still fits is not an error
// of Add (its rows stay buffered and are written later); LastError says
// what went wrong.
func (b *Batcher[T]) Add(ctx context.Context, rows ...T) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(rows) > b.maxRows {
		return fmt.Errorf("%w: %d rows in one call, more than the %d the buffer holds", ErrFull, len(rows), b.maxRows)
	}
	if len(b.buf)+len(rows) > b.maxRows {
		if err := b.flushLocked(ctx); err != nil {
			return fmt.Errorf("%w (%d rows waiting): %w", ErrFull, len(b.buf), err)
		}
	}
	if len(b.buf) == 0 {
		b.since = time.Now()
	}
	b.buf = append(b.buf, rows...)
	if len(b.buf) >= b.size {
		_ = b.flushLocked(ctx) // on failure the rows stay; LastError has it
	}
	return nil
}

// LastError is the error of the latest write, nil once one succeeded.
func (b *Batcher[T]) LastError() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastErr
}

// Flush writes every waiting row.
func (b *Batcher[T]) Flush(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked(ctx)
}

func (b *Batcher[T]) flushLocked(ctx context.Context) error {
	if len(b.buf) == 0 {
		return nil
	}
	if err := b.write(ctx, b.buf); err != nil {
		b.lastErr = err
		return err
	}
	b.lastErr = nil
	clear(b.buf) // drop references for the garbage collector
	b.buf = b.buf[:0]
	return nil
}

// Pending is the number of rows not yet stored.
func (b *Batcher[T]) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

// due reports whether the oldest row has waited the interval.
func (b *Batcher[T]) due(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf) > 0 && now.Sub(b.since) >= b.interval
}

// Run flushes rows that waited Interval until ctx ends; a failed flush is
// reported to onError (may be nil) and tried again on the next tick.
func (b *Batcher[T]) Run(ctx context.Context, onError func(error)) {
	t := time.NewTicker(max(b.interval/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if !b.due(now) {
				continue
			}
			if err := b.Flush(ctx); err != nil && onError != nil {
				onError(err)
			}
		}
	}
}
