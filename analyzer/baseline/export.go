package baseline

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/pb/sketchpb"
	"google.golang.org/protobuf/proto"
)

// saved is what a checkpoint keeps of an endpoint's baseline: what was
// learned, not the current window (it starts again) nor the incidents
// that froze learning (the detectors carry those and freeze again).
type saved struct {
	Key           EndpointKey       `json:"key"`
	First         time.Time         `json:"first"`
	Last          time.Time         `json:"last"`
	Seen          int64             `json:"seen"`
	Learned       int64             `json:"learned"`
	Rate          Rhythm            `json:"rate"`
	PerHour       uint16            `json:"per_hour"`
	Latency       []byte            `json:"latency,omitempty"` // DDSketch protobuf
	LatP95        float64           `json:"lat_p95"`
	Err4xx        EWMA              `json:"err_4xx"`
	Err5xx        EWMA              `json:"err_5xx"`
	LoginFail     EWMA              `json:"login_fail"`
	RespSize      MeanVar           `json:"resp_size"`
	ReqSize       MeanVar           `json:"req_size"`
	Status        StatusSet         `json:"status"`
	Fields        map[string]string `json:"fields,omitempty"`
	PathParams    []string          `json:"path_params,omitempty"`
	AuthOK        int64             `json:"auth_ok"`
	UnauthOK      int64             `json:"unauth_ok"`
	Sensitive     []string          `json:"sensitive,omitempty"`
	UnauthSens    []string          `json:"unauth_sensitive,omitempty"`
	Kinds         map[string]int64  `json:"kinds,omitempty"`
	BOLAMax       float64           `json:"bola_max"`
	LowWindows    int               `json:"low_windows"`
	Notes         uint32            `json:"notes"`
	learnedSketch *ddsketch.DDSketch
}

// Export serialises the learned baselines of the named services'
// endpoints, for a checkpoint. Client baselines are not kept: clients
// come and go, and a client's picture is relearned in one window.
func (s *Store) Export(services []string) ([]byte, error) {
	out := []saved{}
	for _, ep := range s.order {
		if !slices.Contains(services, ep.Key.Service) {
			continue
		}
		sv := saved{Key: ep.Key, First: ep.First, Last: ep.Last, Seen: ep.Seen, Learned: ep.Learned,
			Rate: ep.Rate, PerHour: ep.Rate.perHour, LatP95: ep.LatP95, Err4xx: ep.Err4xx, Err5xx: ep.Err5xx,
			LoginFail: ep.LoginFail, RespSize: ep.RespSize, ReqSize: ep.ReqSize, Status: ep.Status, Fields: ep.Fields,
			PathParams: ep.PathParams, AuthOK: ep.AuthOK, UnauthOK: ep.UnauthOK, Sensitive: ep.Sensitive, UnauthSens: ep.UnauthSensitive,
			Kinds: ep.Kinds, BOLAMax: ep.BOLAMax, LowWindows: ep.LowWindows, Notes: ep.Notes}
		if ep.Latency != nil {
			b, err := proto.Marshal(ep.Latency.ToProto())
			if err != nil {
				return nil, fmt.Errorf("baseline %v: latency: %w", ep.Key, err)
			}
			sv.Latency = b
		}
		out = append(out, sv)
	}
	return json.Marshal(out)
}

// Import loads baselines Export wrote; an endpoint already tracked is
// replaced by its saved baseline.
func (s *Store) Import(b []byte) error {
	var in []saved
	if err := json.Unmarshal(b, &in); err != nil {
		return fmt.Errorf("baselines: %w", err)
	}
	for i := range in {
		sv := &in[i]
		if sv.Latency != nil {
			var pb sketchpb.DDSketch
			if err := proto.Unmarshal(sv.Latency, &pb); err != nil {
				return fmt.Errorf("baseline %v: latency: %w", sv.Key, err)
			}
			decoded, err := ddsketch.FromProto(&pb)
			if err != nil {
				return fmt.Errorf("baseline %v: latency: %w", sv.Key, err)
			}
			// Into a sketch of the usual kind, so it stays bounded.
			sv.learnedSketch = newSketch()
			if err := sv.learnedSketch.MergeWith(decoded); err != nil {
				return fmt.Errorf("baseline %v: latency: %w", sv.Key, err)
			}
		}
	}
	for i := range in {
		sv := &in[i]
		ep := s.eps[sv.Key]
		if ep == nil {
			ep = &Endpoint{}
			s.eps[sv.Key] = ep
			s.order = append(s.order, ep)
			s.endpoints.Inc()
		}
		*ep = Endpoint{Key: sv.Key, First: sv.First, Last: sv.Last, Seen: sv.Seen, Learned: sv.Learned,
			Rate: sv.Rate, Latency: sv.learnedSketch, LatP95: sv.LatP95, Err4xx: sv.Err4xx, Err5xx: sv.Err5xx,
			LoginFail: sv.LoginFail, RespSize: sv.RespSize, ReqSize: sv.ReqSize, Status: sv.Status, Fields: sv.Fields,
			PathParams: sv.PathParams, AuthOK: sv.AuthOK, UnauthOK: sv.UnauthOK, Sensitive: sv.Sensitive, UnauthSensitive: sv.UnauthSens,
			Kinds: sv.Kinds, BOLAMax: sv.BOLAMax, LowWindows: sv.LowWindows, Notes: sv.Notes}
		ep.Rate.perHour = sv.PerHour
		if sv.UnauthSens == nil && sv.UnauthOK > 0 {
			// Saved before unauthenticated classes were kept apart:
			// assume any learned class may have been served without
			// credentials rather than report them all again.
			ep.UnauthSensitive = slices.Clone(sv.Sensitive)
		}
	}
	return nil
}

// Forget drops the named services' endpoint baselines.
func (s *Store) Forget(services []string) {
	kept := s.order[:0]
	for _, ep := range s.order {
		if slices.Contains(services, ep.Key.Service) {
			delete(s.eps, ep.Key)
			s.endpoints.Dec()
			continue
		}
		kept = append(kept, ep)
	}
	clear(s.order[len(kept):])
	s.order = kept
}
