package tlsmeta

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// Secrets are the key-log entries of one TLS session, keyed by its client
// random.
type Secrets struct {
	// MasterSecret (TLS 1.2, label CLIENT_RANDOM).
	MasterSecret []byte
	// TLS 1.3 traffic secrets.
	ClientHandshake, ServerHandshake []byte
	ClientTraffic0, ServerTraffic0   []byte
}

// KeyLog reads an NSS key-log file (the SSLKEYLOGFILE format written by
// browsers, curl, Go's tls.Config.KeyLogWriter and most TLS libraries).
// Clients append to it while the sensor runs, moments before the
// handshake they log crosses the wire, so a lookup that misses reads
// whatever was appended since the last read (a stat when nothing was):
// a throttle here would miss every session that starts soon after another.
type KeyLog struct {
	path     string
	mu       sync.Mutex
	byRandom map[string]*Secrets
	// size is the offset up to which whole lines have been read.
	size int64
	// Lines counts entries read; BadLines counts lines that were skipped.
	Lines, BadLines int
}

// OpenKeyLog reads path now, so that a missing or unreadable file fails
// at start with a clear error.
func OpenKeyLog(path string) (*KeyLog, error) {
	k := &KeyLog{path: path, byRandom: map[string]*Secrets{}}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// reload reads the lines appended since the last read; a file that shrank
// (rotated or truncated) is read again from the start.
func (k *KeyLog) reload() error {
	f, err := os.Open(k.path)
	if err != nil {
		return fmt.Errorf("key log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("key log: %w", err)
	}
	if st.Size() < k.size {
		k.size, k.Lines, k.BadLines = 0, 0, 0
	}
	if _, err := f.Seek(k.size, io.SeekStart); err != nil {
		return fmt.Errorf("key log: %w", err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		raw, err := br.ReadString('\n')
		if err != nil {
			// A last line without its newline is still being written:
			// it is read whole next time.
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("key log: %w", err)
		}
		k.size += int64(len(raw))
		k.parse(raw)
	}
}

func (k *KeyLog) parse(raw string) {
	line := strings.TrimSpace(raw)
	if line == "" || line[0] == '#' {
		return
	}
	fields := strings.Fields(line)
	if len(fields) != 3 {
		k.BadLines++
		return
	}
	cr, err1 := hex.DecodeString(fields[1])
	secret, err2 := hex.DecodeString(fields[2])
	if err1 != nil || err2 != nil || len(cr) != 32 {
		k.BadLines++
		return
	}
	s := k.byRandom[string(cr)]
	if s == nil {
		s = &Secrets{}
		k.byRandom[string(cr)] = s
	}
	switch fields[0] {
	case "CLIENT_RANDOM":
		s.MasterSecret = secret
	case "CLIENT_HANDSHAKE_TRAFFIC_SECRET":
		s.ClientHandshake = secret
	case "SERVER_HANDSHAKE_TRAFFIC_SECRET":
		s.ServerHandshake = secret
	case "CLIENT_TRAFFIC_SECRET_0":
		s.ClientTraffic0 = secret
	case "SERVER_TRAFFIC_SECRET_0":
		s.ServerTraffic0 = secret
	default:
		return // other labels (EXPORTER_SECRET, early data) are not needed
	}
	k.Lines++
}

// Lookup returns the secrets of the session with this client random
// known now, after reading what was appended to the file since the last
// call: a client logs each secret as it derives it, so a session's entry
// fills in over its handshake. The copy is the caller's; workers share
// the KeyLog.
func (k *KeyLog) Lookup(clientRandom []byte) (Secrets, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if st, err := os.Stat(k.path); err == nil && st.Size() != k.size {
		_ = k.reload() // a read error keeps what was known
	}
	s, ok := k.byRandom[string(clientRandom)]
	if !ok {
		return Secrets{}, false
	}
	return *s, true // reload replaces slices, never writes into them
}
