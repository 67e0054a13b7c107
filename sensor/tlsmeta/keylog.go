package tlsmeta

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
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
// Clients append to it while the sensor runs, so a lookup that misses
// re-reads the file when it has grown, at most once per second.
type KeyLog struct {
	path     string
	mu       sync.Mutex
	byRandom map[string]*Secrets
	size     int64
	lastRead time.Time
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
	k.size = st.Size()
	k.lastRead = time.Now()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1<<20)
	k.Lines, k.BadLines = 0, 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			k.BadLines++
			continue
		}
		cr, err1 := hex.DecodeString(fields[1])
		secret, err2 := hex.DecodeString(fields[2])
		if err1 != nil || err2 != nil || len(cr) != 32 {
			k.BadLines++
			continue
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
			continue // other labels (EXPORTER_SECRET, early data) are not needed
		}
		k.Lines++
	}
	return sc.Err()
}

// Lookup returns the secrets of the session with this client random.
func (k *KeyLog) Lookup(clientRandom []byte) (*Secrets, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s, ok := k.byRandom[string(clientRandom)]; ok {
		return s, true
	}
	if time.Since(k.lastRead) < time.Second {
		return nil, false
	}
	if st, err := os.Stat(k.path); err == nil && st.Size() != k.size {
		_ = k.reload() // a read error keeps what was known
	}
	k.lastRead = time.Now()
	s, ok := k.byRandom[string(clientRandom)]
	return s, ok
}
