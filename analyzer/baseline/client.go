package baseline

import (
	"hash/maphash"
	"slices"
	"strings"
	"time"
)

// Caps on per-client memory; beyond them a client's sets stop growing
// (the counters still count).
const (
	MaxObjectEndpoints = 32   // endpoints with object-id tracking per client
	MaxObjectIDs       = 2048 // distinct object ids remembered per endpoint
	MaxReturnedIDs     = 4096 // ids remembered as returned to the client
)

// Client is what is known of one client identity (credential fingerprint,
// else address) on one service. Totals are since first sight; W* fields
// are the current client window.
type Client struct {
	ID        string
	Service   string
	Principal string
	Kind      string // see KindOf
	First     time.Time
	Last      time.Time
	Calls     int64
	Errors    int64
	Bytes     int64
	// Frozen counts open incidents on this client: while it is non-zero
	// the client's windows are not learned.
	Frozen int

	WinStart                   time.Time
	WCount, WAuthFail, WErrors int
	WBytes                     int64
	// Objects tracks object ids per endpoint (BOLA enumeration).
	Objects map[EndpointKey]*ObjectSet
	// Returned holds hashes of ids that responses returned to this client.
	Returned map[uint64]struct{}

	// JWT caches what was parsed from the client's token (the identity is
	// the credential fingerprint, so the token does not change).
	JWTParsed  bool
	JWTAlg     string
	JWTExpires time.Time

	prev, next *Client // LRU list, most recent at the head
}

// ObjectSet is the object ids one client touched on one endpoint.
type ObjectSet struct {
	IDs      map[uint64]struct{}
	WinStart time.Time
	// NewIDs counts ids in the window never touched before and never
	// returned to the client; Seq counts those adjacent (±1) to the
	// previous numeric id.
	NewIDs, Seq int
	LastNum     int64
	HasNum      bool
	Evidence    []string
}

// KindOf names the kind of a client for function-level authorisation:
// its sorted role claims, else its authentication kind.
func KindOf(roles []string, auth string) string {
	switch len(roles) {
	case 0:
		return "auth:" + auth
	case 1:
		return "role:" + roles[0]
	}
	r := slices.Clone(roles)
	slices.Sort(r)
	return "role:" + strings.Join(r, ",")
}

// Kind is the learned behaviour of one client kind.
type Kind struct {
	First   time.Time
	Learned int64
}

var seed = maphash.MakeSeed()

// hashID hashes an object id for the id sets. The seed is per process:
// sets are never persisted or compared across processes.
func hashID(s string) uint64 { return maphash.String(seed, s) }

// NoteReturned remembers ids a response returned to the client.
func (c *Client) NoteReturned(ids []string) {
	if len(ids) == 0 {
		return
	}
	if c.Returned == nil {
		c.Returned = make(map[uint64]struct{}, len(ids))
	}
	for _, id := range ids {
		if len(c.Returned) >= MaxReturnedIDs {
			return
		}
		c.Returned[hashID(id)] = struct{}{}
	}
}

// TouchObject records that the client touched object id on endpoint k at
// packet time t, rolling the set's window when needed. It returns the set
// and whether the id was new and never returned to the client. onRoll is
// called with the finished window's new-id count before a roll. The
// transaction id (txid) is kept as evidence for new ids beyond the
// evidenceFrom-th of a window, so that ordinary clients cost no id.
func (c *Client) TouchObject(k EndpointKey, id string, t time.Time, window time.Duration, txid func() string, evidenceFrom int, onRoll func(newIDs int)) (*ObjectSet, bool) {
	os := c.Objects[k]
	if os == nil {
		if c.Objects == nil {
			c.Objects = make(map[EndpointKey]*ObjectSet, 2)
		}
		if len(c.Objects) >= MaxObjectEndpoints {
			return nil, false
		}
		os = &ObjectSet{IDs: make(map[uint64]struct{}, 4), WinStart: t.Truncate(window)}
		c.Objects[k] = os
	}
	if t.Sub(os.WinStart) >= window {
		onRoll(os.NewIDs)
		os.WinStart = t.Truncate(window)
		os.NewIDs, os.Seq = 0, 0
		os.Evidence = os.Evidence[:0]
	}
	h := hashID(id)
	if _, seen := os.IDs[h]; seen {
		return os, false
	}
	if len(os.IDs) < MaxObjectIDs {
		os.IDs[h] = struct{}{}
	}
	if _, ret := c.Returned[h]; ret {
		return os, false
	}
	os.NewIDs++
	if n, ok := parseInt(id); ok {
		if os.HasNum && (n-os.LastNum == 1 || os.LastNum-n == 1) {
			os.Seq++
		}
		os.LastNum, os.HasNum = n, true
	}
	if os.NewIDs > evidenceFrom && len(os.Evidence) < 3 {
		os.Evidence = append(os.Evidence, txid())
	}
	return os, true
}

func parseInt(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
