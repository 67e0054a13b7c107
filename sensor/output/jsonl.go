// Package output writes the sensor's transactions where people and
// scripts read them: JSON lines, one transaction per line, with the field
// names documented in the README ("Transaction record (jsonl)").
package output

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/apiscout/apiscout/wire"
)

// JSONL writes records as JSON lines. It implements sensor.Sink.
type JSONL struct {
	w     *bufio.Writer
	c     io.Closer
	enc   *json.Encoder
	lines int64
}

// NewJSONL writes to path, or stdout when path is "-" or empty.
func NewJSONL(path string) (*JSONL, error) {
	var w io.Writer = os.Stdout
	var c io.Closer
	if path != "" && path != "-" {
		f, err := os.Create(path)
		if err != nil {
			return nil, fmt.Errorf("jsonl output: %w", err)
		}
		w, c = f, f
	}
	return NewJSONLWriter(w, c), nil
}

// NewJSONLWriter writes to w and closes c (which may be nil) on Close.
func NewJSONLWriter(w io.Writer, c io.Closer) *JSONL {
	bw := bufio.NewWriterSize(w, 256<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &JSONL{w: bw, c: c, enc: enc}
}

// Write implements sensor.Sink. Each batch is flushed, so a live sensor
// piped into another tool shows transactions as they come.
func (j *JSONL) Write(_ context.Context, recs []*wire.Transaction) error {
	for _, tx := range recs {
		if err := j.enc.Encode(tx); err != nil {
			return fmt.Errorf("jsonl output: %w", err)
		}
		j.lines++
	}
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("jsonl output: %w", err)
	}
	return nil
}

// Lines is the number of records written.
func (j *JSONL) Lines() int64 { return j.lines }

// Close flushes and closes the file.
func (j *JSONL) Close() error {
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("jsonl output: %w", err)
	}
	if j.c != nil {
		return j.c.Close()
	}
	return nil
}

// ReadJSONL reads records written by JSONL, calling fn for each; a bad
// line is an error naming its number.
func ReadJSONL(r io.Reader, fn func(*wire.Transaction) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	n := 0
	for sc.Scan() {
		n++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var tx wire.Transaction
		if err := json.Unmarshal(sc.Bytes(), &tx); err != nil {
			return fmt.Errorf("jsonl line %d: %w", n, err)
		}
		if err := fn(&tx); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Discard drops every record (sensor.output none: metrics only).
type Discard struct{}

// Write implements sensor.Sink.
func (Discard) Write(context.Context, []*wire.Transaction) error { return nil }

// Close implements sensor.Sink.
func (Discard) Close() error { return nil }
