// Package baseline learns what normal traffic looks like, in packet time:
// per endpoint its rate with daily and weekly rhythm, latency quantiles
// (DDSketch), 4xx and 5xx ratios, request and response sizes, status
// codes, parameters and body fields, who calls it; per client identity its
// rate, distinct objects per endpoint, errors and bytes.
//
// It is pure logic: no I/O, no goroutines, time comes from the records.
// Learning is gated: an endpoint or client learns only from clean capture
// (no loss on the transaction, the sensor not blind) and while no incident
// that stops learning is open on it, so an ongoing attack never becomes
// the new normal. Judging the windows is the detectors' job.
//
// Call order: Observe for each transaction (packet time non-decreasing up
// to a small disorder), CloseWindows when packet time passes a window
// boundary, ReturnedIDs after the detectors have looked at a transaction.
package baseline

import (
	"errors"
	"math"
	"strings"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiscout/apiscout/analyzer/inventory"
	"github.com/apiscout/apiscout/wire"
)

// Config is the learning policy.
type Config struct {
	// Learning is the packet time an endpoint (or client kind) is learned
	// before it may alert; MinSupport the calls it needs.
	Learning   time.Duration
	MinSupport int
	// MaxClients caps tracked client identities; the least recently seen
	// is evicted (and counted) beyond it.
	MaxClients int
	// Window and ClientWindow are the tumbling windows of endpoint and
	// client statistics.
	Window, ClientWindow time.Duration
	// SizeZ is the z-score of log response size that marks an outlier.
	SizeZ float64
}

// Call is one transaction as the baseline and detectors see it, derived
// once from the observation.
type Call struct {
	Obs           *inventory.Observation
	Time          time.Time
	Status        int
	Latency       time.Duration
	RespBytes     int64
	ReqBytes      int64
	Lossy         bool
	Authenticated bool
	LoginLike     bool
	AuthFailed    bool
	Client        string
	SizeZ         float64
	txid          string
}

// TxID is the transaction id, built on first use (it allocates).
func (c *Call) TxID() string {
	if c.txid == "" && c.Obs.Tx != nil {
		c.txid = c.Obs.Tx.ID()
	}
	return c.txid
}

// Lossy reports whether the sensor missed bytes of tx: such transactions
// are judged but never learned from.
func Lossy(tx *wire.Transaction) bool {
	return tx.Flags&wire.FlagGap != 0 || tx.CaptureLoss > 0
}

// Store holds all baselines.
type Store struct {
	cfg   Config
	eps   map[EndpointKey]*Endpoint
	order []*Endpoint // creation order, so that window closes are deterministic

	clients    map[ClientKey]*Client
	head, tail *Client

	// kinds profiles client kinds over every service the store sees.
	kinds map[string]*Kind

	// Client-window distributions learned over all clients: requests and
	// response bytes per client window, decayed hourly.
	clientReq, clientBytes *ddsketch.DDSketch
	P99Req, P99Bytes       float64

	// Blind is set while the sensor is blind: nothing is learned.
	Blind bool

	call Call

	evicted   prometheus.Counter
	clientsG  prometheus.Gauge
	endpoints prometheus.Gauge
}

// New returns an empty store; metrics go to reg.
func New(cfg Config, reg prometheus.Registerer) *Store {
	s := &Store{
		cfg:         cfg,
		eps:         make(map[EndpointKey]*Endpoint),
		clients:     make(map[ClientKey]*Client),
		kinds:       make(map[string]*Kind),
		clientReq:   newSketch(),
		clientBytes: newSketch(),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apiscout_baseline_clients_evicted_total",
			Help: "Client identities evicted from the baselines because analyzer.max_clients was reached.",
		}),
		clientsG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apiscout_baseline_clients",
			Help: "Client identities tracked by the baselines.",
		}),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apiscout_baseline_endpoints",
			Help: "Endpoints tracked by the baselines.",
		}),
	}
	s.evicted = register(reg, s.evicted)
	s.clientsG = register(reg, s.clientsG)
	s.endpoints = register(reg, s.endpoints)
	return s
}

// register registers c with reg, or returns the collector already
// registered under the same name, so that several instances (one per
// partition) can share one registry and its counters.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing
			}
		}
		panic(err) // a name clash with another kind of metric: a programming error
	}
	return c
}

// Config returns the learning policy.
func (s *Store) Config() Config { return s.cfg }

// Call derives the Call of obs. The returned Call is reused by the next
// Call or Observe.
func (s *Store) Call(obs *inventory.Observation) *Call {
	tx := obs.Tx
	c := &s.call
	*c = Call{Obs: obs, Time: obs.Time, Client: obs.Identity, SizeZ: s.cfg.SizeZ,
		LoginLike: obs.LoginLike, AuthFailed: obs.AuthFailed,
		Authenticated: obs.Auth != "" && obs.Auth != "none"}
	if tx != nil {
		c.Status = tx.Status
		c.RespBytes = tx.ResponseBodyLen
		c.ReqBytes = tx.RequestBodyLen
		c.Lossy = Lossy(tx)
		if !tx.ResponseStart.IsZero() && tx.ResponseStart.After(tx.RequestEnd) {
			c.Latency = tx.ResponseStart.Sub(tx.RequestEnd)
		}
	}
	return c
}

// Observe folds obs into the endpoint's window and the client's state
// and learns from it when allowed. The returned Call is reused by the
// next Observe.
func (s *Store) Observe(obs *inventory.Observation) (*Endpoint, *Client, *Call) {
	c := s.Call(obs)
	ep, cl := s.Fold(c)
	return ep, cl, c
}

// Fold is Observe for a Call already derived with Call.
func (s *Store) Fold(c *Call) (*Endpoint, *Client) {
	obs := c.Obs
	k := EndpointKey{obs.Service, obs.Method, obs.Path}
	ep := s.eps[k]
	if ep == nil {
		// Copies: the names may be substrings of a transaction decoded in
		// place, whose whole Kafka record they would pin.
		k = EndpointKey{strings.Clone(k.Service), strings.Clone(k.Method), strings.Clone(k.Path)}
		ep = &Endpoint{Key: k, First: obs.Time}
		s.eps[k] = ep
		s.order = append(s.order, ep)
		s.endpoints.Inc()
	}
	ep.observe(c)
	learn := !c.Lossy && !s.Blind && ep.Frozen == 0
	if learn {
		ep.learnCall(c)
		for _, f := range obs.NewFields {
			ptr, typ := splitField(f)
			if ep.Fields == nil {
				ep.Fields = make(map[string]string)
			}
			if _, ok := ep.Fields[ptr]; !ok && len(ep.Fields) < MaxFields {
				ep.Fields[ptr] = typ
			}
		}
		if len(obs.PathParams) > 0 && len(ep.PathParams) == 0 {
			for name := range obs.PathParams {
				ep.PathParams = append(ep.PathParams, name)
			}
		}
		unauthOK := !c.Authenticated && c.Status >= 200 && c.Status < 300
		for _, cls := range obs.ResponseSensitive {
			if !contains(ep.Sensitive, cls) && len(ep.Sensitive) < 64 {
				ep.Sensitive = append(ep.Sensitive, cls)
			}
			if unauthOK && !contains(ep.UnauthSensitive, cls) && len(ep.UnauthSensitive) < 64 {
				ep.UnauthSensitive = append(ep.UnauthSensitive, cls)
			}
		}
	}

	var cl *Client
	if obs.Identity != "" {
		cl = s.ClientOf(obs)
		s.observeClient(cl, c, ep, learn)
	}
	return ep, cl
}

func (s *Store) observeClient(cl *Client, c *Call, ep *Endpoint, learnEp bool) {
	if c.Time.Sub(cl.WinStart) >= s.cfg.ClientWindow {
		s.rollClient(cl)
		cl.WinStart = c.Time.Truncate(s.cfg.ClientWindow)
	}
	cl.Last = c.Time
	cl.Calls++
	cl.WCount++
	cl.Bytes += c.RespBytes
	cl.WBytes += c.RespBytes
	if c.Status >= 400 {
		cl.Errors++
		cl.WErrors++
	}
	if c.LoginLike && c.AuthFailed {
		cl.WAuthFail++
	}
	if learnEp && cl.Frozen == 0 && c.Status >= 200 && c.Status < 400 && c.Authenticated {
		kd := s.kinds[cl.Kind]
		if kd == nil {
			kd = &Kind{First: c.Time}
			s.kinds[cl.Kind] = kd
		}
		kd.Learned++
		if ep.Kinds == nil {
			ep.Kinds = make(map[string]int64, 2)
		}
		ep.Kinds[cl.Kind]++
	}
}

// rollClient ends a client's window, learning the distribution of
// requests and bytes per client window from clients not under incident.
func (s *Store) rollClient(cl *Client) {
	if cl.WCount > 0 && cl.Frozen == 0 && !s.Blind {
		_ = s.clientReq.Add(float64(cl.WCount))
		if cl.WBytes > 0 {
			_ = s.clientBytes.Add(float64(cl.WBytes))
		}
	}
	cl.WCount, cl.WAuthFail, cl.WErrors, cl.WBytes = 0, 0, 0, 0
}

// KindOf returns the learned profile of a client kind, over all services:
// a kind is known once it has been seen anywhere, so that its first call
// to a service it never used (an ordinary user on the admin API) can be
// judged.
func (s *Store) KindOf(kind string) *Kind { return s.kinds[kind] }

// LearnBOLA folds a finished object window into the endpoint's learned
// maximum of new ids per client window.
func (s *Store) LearnBOLA(ep *Endpoint, cl *Client, newIDs int) {
	if ep.Frozen != 0 || cl.Frozen != 0 || s.Blind {
		return
	}
	ep.BOLAMax = math.Max(ep.BOLAMax*0.99, float64(newIDs))
}

// ClientKey identifies a client: its identity on one service. A client
// is judged per service, like the incidents about it, so that its
// picture does not depend on which services share a partition (the
// service is the partition key): an identity's calls to one service do
// not count towards another's thresholds.
type ClientKey struct{ Service, ID string }

// ClientOf finds or creates the client of obs (its identity on its
// service), keeping the LRU order and the cap. Detectors that judge a
// call before it is folded in get the client this way, so that a
// client's first call to a service is judged like the others.
func (s *Store) ClientOf(obs *inventory.Observation) *Client {
	k := ClientKey{obs.Service, obs.Identity}
	cl := s.clients[k]
	if cl != nil {
		if s.head != cl {
			s.unlink(cl)
			s.pushFront(cl)
		}
		return cl
	}
	if s.cfg.MaxClients > 0 && len(s.clients) >= s.cfg.MaxClients {
		old := s.tail
		s.unlink(old)
		delete(s.clients, ClientKey{old.Service, old.ID})
		s.evicted.Inc()
		s.clientsG.Dec()
	}
	k = ClientKey{strings.Clone(obs.Service), strings.Clone(obs.Identity)} // kept: see Fold
	cl = &Client{ID: k.ID, Service: k.Service, Principal: strings.Clone(obs.Principal), Kind: KindOf(obs.Roles, obs.Auth),
		First: obs.Time, WinStart: obs.Time.Truncate(s.cfg.ClientWindow)}
	s.clients[k] = cl
	s.pushFront(cl)
	s.clientsG.Inc()
	return cl
}

func (s *Store) pushFront(c *Client) {
	c.prev, c.next = nil, s.head
	if s.head != nil {
		s.head.prev = c
	}
	s.head = c
	if s.tail == nil {
		s.tail = c
	}
}

func (s *Store) unlink(c *Client) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		s.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		s.tail = c.prev
	}
	c.prev, c.next = nil, nil
}

// Client returns the tracked client identity id on service, or nil.
func (s *Store) Client(service, id string) *Client { return s.clients[ClientKey{service, id}] }

// Endpoint returns a tracked endpoint or nil.
func (s *Store) Endpoint(k EndpointKey) *Endpoint { return s.eps[k] }

// Clients is the number of tracked clients.
func (s *Store) Clients() int { return len(s.clients) }

// Endpoints lists the endpoints in creation order.
func (s *Store) Endpoints() []*Endpoint { return s.order }

// CloseWindow closes the window [start, end) of every endpoint and calls
// judge with each endpoint's statistics before they are learned. An
// endpoint learns the window unless the sensor is blind, it is frozen by
// an incident, or judge returns false (the window itself is anomalous).
func (s *Store) CloseWindow(start, end time.Time, judge func(ep *Endpoint, ws *WindowStats) (learn bool)) {
	perHour := int(time.Hour / s.cfg.Window)
	if perHour < 1 {
		perHour = 1
	}
	hourly := end.Truncate(time.Hour).Equal(end)
	for _, ep := range s.order {
		if !ep.First.Before(end) {
			continue // born after this window
		}
		learn := !s.Blind && ep.Frozen == 0 && ep.W.Lossy*10 <= ep.W.Count
		// Judge first with the expectation learned so far; closeWindow
		// learns only when the judge agrees.
		ws := WindowStats{Start: start, End: end, Window: ep.W, Expected: ep.Rate.Expected(start)}
		if ep.W.Lat != nil && ep.W.Lat.GetCount() > 0 {
			ws.LatP95, _ = ep.W.Lat.GetValueAtQuantile(0.95)
		}
		if !judge(ep, &ws) {
			learn = false
		}
		ep.closeWindow(start, learn, perHour, hourly)
	}
	if hourly {
		for _, sk := range []*ddsketch.DDSketch{s.clientReq, s.clientBytes} {
			if sk.GetCount() > 1000 {
				_ = sk.Reweight(0.97)
			}
		}
	}
	if s.clientReq.GetCount() > 0 {
		s.P99Req, _ = s.clientReq.GetValueAtQuantile(0.99)
	}
	if s.clientBytes.GetCount() > 0 {
		s.P99Bytes, _ = s.clientBytes.GetValueAtQuantile(0.99)
	}
}

// ClientSupport is the number of client windows learned.
func (s *Store) ClientSupport() float64 { return s.clientReq.GetCount() }

func splitField(f string) (ptr, typ string) {
	for i := len(f) - 1; i >= 0; i-- {
		if f[i] == ':' {
			return f[:i], f[i+1:]
		}
	}
	return f, ""
}

// SplitField splits an inventory field "ptr:type".
func SplitField(f string) (ptr, typ string) { return splitField(f) }

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
